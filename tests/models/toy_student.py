"""A toy third student, registered from a test-only module: its builder and its adapter, nothing else.

Not a timm model: its stages are named ``stem``, ``stage1``, ``stage2`` (module paths and ONNX scopes unlike the
EfficientNet family's ``blocks.i``), its CAM layer ``head`` feeds average pooling and a Linear classifier (the
``linear`` recipe). If sonolens needed any other file touched to export, explain, quantise, gate or run it, the
tests in ``test_student_adapters.py`` would fail.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sonolens.models.adapters import Stage, StudentAdapter, register_student, unregister_student
from sonolens.models.registry import _REGISTRY, register_model, with_overrides

TOY_ARCH = "toy_student_for_tests"

ADAPTER = StudentAdapter(
    arch=TOY_ARCH,
    cam_recipe="linear",
    cam_layer="head",
    stages=(Stage("stem", "stem", "/stem/"), Stage("stage1", "stage1", "/stage1/"),
            Stage("stage2", "stage2", "/stage2/")),
    prelogits_width=32,
    input_size=(64, 64),
    gate_stages=2,
)


class ToyNet(nn.Module):
    """conv stem → two conv stages → 1x1 head (the CAM layer) → average pooling → Linear."""

    def __init__(self, num_classes: int):
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = block(3, 8, 2)
        self.stage1 = block(8, 16, 2)
        self.stage2 = block(16, 24, 2)
        self.head = nn.Sequential(nn.Conv2d(24, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.global_pool.pool_type = "avg"  # what timm's SelectAdaptivePool2d says of itself
        self.classifier = nn.Linear(32, num_classes)

    def forward_features(self, x):
        return self.head(self.stage2(self.stage1(self.stem(x))))

    def forward(self, x):
        return self.classifier(self.global_pool(self.forward_features(x)).flatten(1))


def register() -> None:
    """Register the toy's builder and adapter (idempotent)."""
    register_student(ADAPTER)
    if TOY_ARCH not in _REGISTRY:
        @register_model(TOY_ARCH)
        def toy_student_for_tests(**cfg: Any) -> nn.Module:
            spec, _ = with_overrides(ADAPTER.default_spec(), **cfg)
            model = ToyNet(spec.num_classes)
            model.sonolens_spec = spec
            return model


def unregister() -> None:
    unregister_student(TOY_ARCH)
    _REGISTRY.pop(TOY_ARCH, None)
