"""A model registry and ``create_model`` factory in timm's style.

Model modules register their builders on import (``@register_model("name")``); ``models/__init__.py`` imports
them, so the registry is full whenever ``sonolens.models`` is imported and this module names no model module.

Each builder returns an ``nn.Module`` carrying its ``pipeline.modelfile.ModelSpec`` as ``model.sonolens_spec``
(input size, mean/std, class names, Grad-CAM layer, builder arguments, provenance). That one spec travels from
training through checkpoints (``models.checkpoint``) and export (``models.onnx_export``) into the ONNX
metadata the runtime reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sonolens.pipeline.modelfile import ModelSpec, spec_field_names

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BUSI_CLASSES = ("normal", "benign", "malignant")

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(**kwargs) -> nn.Module`` under ``name``; a second registration is a ``ValueError``."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any):
    """Build a registered model.

    ``kwargs``: ``ModelSpec`` fields override the builder's default spec (``class_names``, ``input_size``,
    ``mean``…; a checkpoint passes all of them back); anything else goes to the builder (``pretrained``,
    ``pretrained_file``, builder parameters). Unknown ``name`` is a ``KeyError``.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def default_spec(arch: str, cam_layer: str | None = None) -> ModelSpec:
    """The spec a builder starts from: BUSI's classes, 224×224, ImageNet mean/std."""
    return ModelSpec(arch=arch, class_names=BUSI_CLASSES, input_size=(224, 224), mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, cam_layer=cam_layer)


def with_overrides(base: ModelSpec, **kwargs: Any) -> tuple[ModelSpec, dict[str, Any]]:
    """Split ``kwargs`` into ``ModelSpec`` fields (applied to ``base``; ``None`` keeps the base value) and the rest
    (builder-specific keyword arguments), returned as ``(spec, rest)``."""
    names = set(spec_field_names())
    changes = {k: v for k, v in kwargs.items() if k in names and v is not None}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return replace(base, **changes), rest


def spec_of(model: Any) -> ModelSpec:
    """``model.sonolens_spec``; a model not built by ``create_model`` is a ``ModelError``."""
    from sonolens.pipeline.errors import ModelError

    spec = getattr(model, "sonolens_spec", None)
    if not isinstance(spec, ModelSpec):
        raise ModelError("model has no sonolens_spec; build it with sonolens.models.create_model")
    return spec
