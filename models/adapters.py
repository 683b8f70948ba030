"""The student adapter: every fact generic code needs about a student architecture, in one record registered beside
its builder — timm's idea (``_cfg(first_conv=, classifier=, pool_size=)`` and ``feature_info`` live in the model
file; generic code reads them).

A student's model module (``models/student.py``, ``models/student_lite.py``, or a user's own module) calls
``register_student(StudentAdapter(...))`` next to its ``@register_model`` builder. Then

* ``models.cam_fusion`` picks the Grad-CAM recipe that goes into the graph (``cam_recipe``);
* ``models.random_student`` calibrates a random init through that recipe;
* ``models.onnx_export`` and ``models.quantize`` export and quantise it (``int8_keep_float``);
* ``models.ood_graph`` finds the gate's feature tensors in an exported graph (``stages``: ONNX scope prefixes);
* ``training.ood`` builds its candidate table from the stage names (``stages``, ``gate_stages``).

Nothing else names a student's layers. This module needs neither torch nor onnx (the gate's graph surgery reads
it with ``onnx`` only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import ModelSpec

from .registry import IMAGENET_MEAN, IMAGENET_STD, default_spec

__all__ = ["CAM_RECIPES", "Stage", "StudentAdapter", "register_student", "student_adapter", "list_students",
           "adapter_for_arch", "DEFAULT_STUDENT"]

# ``hardswish_head``: the CAM layer feeds global average pooling, then a 1x1 conv head, hardswish and a Linear
# classifier (MobileNetV3): the gradient is closed form (``cam_fusion.FusedCamWrapper``).
# ``linear``: the CAM layer feeds global average pooling and a Linear classifier directly (EfficientNet-Lite,
# ResNet-style heads): Grad-CAM is then the classic CAM, linear in the features (``cam_fusion.LinearCamWrapper``).
CAM_RECIPES = ("hardswish_head", "linear")
DEFAULT_STUDENT = "mobilenetv3_small_100"  # files without an ``arch`` (none are known) are read as this one


@dataclass(frozen=True)
class Stage:
    """A feature stage the out-of-domain gate may read: its gate name (``stem``, ``blocks.2``), the torch module
    path whose output it is, and the scope prefix the TorchScript ONNX exporter gives that module's nodes."""

    name: str
    module: str
    onnx_prefix: str


@dataclass(frozen=True)
class StudentAdapter:
    """What generic code reads about one student architecture (registry name ``arch``).

    ``cam_recipe`` (one of ``CAM_RECIPES``) and ``cam_layer`` (the module whose output the CAM is computed on);
    ``stages``: the backbone's feature stages in forward order; ``gate_stages``: how many of the first stages the
    gate's channel-statistics candidates combine (early, scanner-sensitive features); ``prelogits_width``: the
    width of the vector the classifier reads; ``input_size``, ``mean``, ``std``: the default input;
    ``int8_keep_float``: ONNX scope prefixes whose convolutions stay float32 in the INT8 file.
    """

    arch: str
    cam_recipe: str
    cam_layer: str
    stages: tuple[Stage, ...]
    prelogits_width: int
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    gate_stages: int = 4
    int8_keep_float: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.cam_recipe not in CAM_RECIPES:
            raise ValueError(f"{self.arch}: unknown CAM recipe {self.cam_recipe!r} (known: {', '.join(CAM_RECIPES)})")
        names = [s.name for s in self.stages]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{self.arch}: stage names must be unique and at least one")
        if set(names) & set(HEAD_FEATURES):
            raise ValueError(f"{self.arch}: a stage may not be named {', '.join(HEAD_FEATURES)}")
        if not 1 <= self.gate_stages <= len(names):
            raise ValueError(f"{self.arch}: gate_stages must lie in [1, {len(names)}]")

    def default_spec(self) -> ModelSpec:
        """The spec the builder starts from: BUSI's classes, this student's CAM layer, input size and normalisation."""
        return replace(default_spec(self.arch, self.cam_layer), input_size=self.input_size, mean=self.mean,
                       std=self.std)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature name the gate may read on this student: its stages, then the head's tensors."""
        return self.stage_names + HEAD_FEATURES


# The head tensors every student's graph has (found from the classifier, whatever the architecture).
HEAD_FEATURES = ("pooled", "prelogits", "logits")

_ADAPTERS: dict[str, StudentAdapter] = {}


def register_student(adapter: StudentAdapter) -> StudentAdapter:
    """Register ``adapter`` under its ``arch``; a second registration of the same name is a ``ValueError``."""
    if adapter.arch in _ADAPTERS and _ADAPTERS[adapter.arch] != adapter:
        raise ValueError(f"student {adapter.arch!r} registered twice")
    _ADAPTERS[adapter.arch] = adapter
    return adapter


def unregister_student(arch: str) -> None:
    """Remove a registration (tests that register a toy student clean up with it)."""
    _ADAPTERS.pop(arch, None)


def list_students() -> list[str]:
    return sorted(_ADAPTERS)


def student_adapter(arch: str) -> StudentAdapter:
    """The adapter of ``arch``; an architecture without one is a ``ModelError`` naming the students there are."""
    try:
        return _ADAPTERS[arch]
    except KeyError:
        raise ModelError(f"{arch!r} is not a registered student (students: {', '.join(sorted(_ADAPTERS))}); "
                         f"register a StudentAdapter beside its builder (sonolens.models.adapters)") from None


def adapter_for_arch(arch: str | None) -> StudentAdapter:
    """``student_adapter(arch)``, with a file that names no architecture read as the default student."""
    return student_adapter(arch or DEFAULT_STUDENT)


def backbone_stages(stem_module: str, n_blocks: int) -> tuple[Stage, ...]:
    """The stages of a timm ``EfficientNet``-family backbone (MobileNetV3, EfficientNet-Lite…): the stem's
    activation (``stem_module``, e.g. ``bn1``) and ``blocks.0`` … ``blocks.{n_blocks - 1}``."""
    stem = Stage("stem", stem_module, f"/{stem_module}/")
    return (stem,) + tuple(Stage(f"blocks.{i}", f"blocks.{i}", f"/blocks/blocks.{i}/") for i in range(n_blocks))
