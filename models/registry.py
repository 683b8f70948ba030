"""A model registry and ``create_model`` factory in timm's style.

Each registered function builds an ``nn.Module`` and attaches a ``ModelConfig`` as ``model.sonolens_cfg``;
that config (input size, mean/std, class names, Grad-CAM layer) travels from training through export
into the ONNX metadata the runtime reads (``pipeline.modelfile.ModelSpec``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BUSI_CLASSES = ("normal", "benign", "malignant")


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    class_names: tuple[str, ...] = BUSI_CLASSES
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    cam_layer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def create_model(name: str, **cfg: Any):
    """Build a registered model. Keyword arguments override its default config (class_names, input_size…)."""
    _import_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**cfg)


def with_overrides(base: ModelConfig, **cfg: Any) -> tuple[ModelConfig, dict[str, Any]]:
    """Split ``cfg`` into ModelConfig fields (applied to ``base``) and the rest (builder-specific)."""
    fields = {k: v for k, v in cfg.items() if k in ModelConfig.__dataclass_fields__}
    for key in ("class_names", "input_size", "mean", "std"):
        if key in fields and fields[key] is not None:
            fields[key] = tuple(fields[key])
    rest = {k: v for k, v in cfg.items() if k not in fields}
    return replace(base, **fields), rest


def _import_builtin() -> None:
    # Importing the modules registers their models (the way timm populates its registry).
    from . import student  # noqa: F401

    try:
        from . import teacher  # noqa: F401
    except ImportError:  # teacher module not present in a minimal checkout
        pass
