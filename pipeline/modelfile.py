"""The model file is the contract between training and runtime; ``ModelSpec`` is its one description.

A sonolens model is an ONNX file with

* input ``image``: float32 ``[N, 3, H, W]``, already normalised with the file's mean/std (``pipeline.preprocess``);
* output ``logits``: float32 ``[N, C]``;
* output ``cam`` (optional): float32 ``[N, C, h, w]`` — the Grad-CAM map of *every* class at the CAM layer's
  resolution, ReLU applied, not yet normalised or upsampled (see ``pipeline.cam``);
* output ``ood_score`` (optional): float32 ``[N]`` — how far the image lies outside the training data (higher is
  further; method and threshold in ``ModelSpec.ood``), computed inside the graph from the same forward pass;
* metadata property ``sonolens`` holding ``ModelSpec.to_json()``.

The same ``ModelSpec`` is attached to every torch model the registry builds (``model.sonolens_spec``), stored in
training checkpoints and written into the ONNX metadata, so a field is added in exactly one place: here. The
runtime reads class names, input size, mean/std and everything else from the file: nothing is hard-coded, so a
model trained on another dataset runs without code changes.

Compatibility rules (format ``sonolens-model/1``): ``from_dict`` ignores keys it does not know and gives every
optional field its default when the key is missing, so files written before a field existed keep loading, and
so do files written by a newer sonolens that added optional fields (calibration, out-of-domain thresholds…).
A new field must therefore come with a default. Only an incompatible change bumps ``FORMAT``.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

FORMAT = "sonolens-model/1"
META_KEY = "sonolens"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build, feed, explain and describe one model.

    Fields (units and shapes):

    * ``arch`` — registry name of the architecture (``sonolens.models.create_model``), e.g. ``mobilenetv3_small_100``;
    * ``class_names`` — output classes in logit order, lowercase (``C = len(class_names)``);
    * ``input_size`` — ``(H, W)`` in pixels of the network input;
    * ``mean``, ``std`` — per-channel normalisation of ``[0, 1]`` grey values: ``x = (v/255 - mean[c]) / std[c]``;
    * ``cam_layer`` — module path of the Grad-CAM layer (e.g. ``"blocks.5"``), ``None`` if the model has none;
    * ``has_cam`` — the ONNX file has a ``cam`` output;
    * ``version`` — free-form model version;
    * ``trained`` — ``False`` for randomly initialised models (tests, benchmarks: never for diagnosis);
    * ``provenance`` — dataset, citation, split, config hash, commit, exporter versions… (JSON values);
    * ``builder_args`` — keyword arguments of the registered builder beyond these fields (a teacher's
      ``vit_dim``…), so a checkpoint rebuilds the same architecture; JSON values;
    * ``temperature`` — probability calibration by temperature scaling (Guo et al., ICML 2017):
      ``p = softmax(logits / temperature)``; 1.0 = uncalibrated;
    * ``ood`` — the out-of-domain gate: ``{"method": "...", "threshold": float, ...}``; a frame whose graph output
      ``ood_score`` exceeds ``threshold`` is outside the model's training domain. Empty: no gate (older files);
    * ``format`` — ``FORMAT``.

    Sequences are normalised to tuples of the right type on construction, so ``replace(spec, mean=[...])`` and
    ``from_dict`` give equal specs; a malformed field raises ``ValueError``/``TypeError``.
    """

    arch: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_layer: str | None = None
    has_cam: bool = True
    version: str = "0"
    trained: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    builder_args: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    ood: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("class_names", tuple(str(c) for c in self.class_names))
        put("input_size", tuple(int(v) for v in self.input_size))
        put("mean", tuple(float(v) for v in self.mean))
        put("std", tuple(float(v) for v in self.std))
        put("provenance", dict(self.provenance or {}))
        put("builder_args", dict(self.builder_args or {}))
        put("ood", dict(self.ood or {}))
        put("temperature", float(self.temperature))
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive finite number, got {self.temperature}")
        if self.ood and (isinstance(self.ood.get("threshold"), bool)
                         or not isinstance(self.ood.get("threshold"), (int, float))):
            raise ValueError("ood needs a numeric 'threshold'")
        if self.ood and not math.isfinite(self.ood["threshold"]):
            raise ValueError(f"ood.threshold must be a finite number, got {self.ood['threshold']}")
        if not self.class_names:
            raise ValueError("class_names is empty")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (H, W) with positive sides, not {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {len(self.mean)} and {len(self.std)}")
        if not all(math.isfinite(v) for v in self.mean):
            raise ValueError(f"mean must be finite numbers, got {self.mean}")
        if not all(s > 0 and math.isfinite(s) for s in self.std):
            raise ValueError(f"std must be positive finite numbers, got {self.std}")

    @property
    def num_classes(self) -> int:
        """``C``, the number of output classes."""
        return len(self.class_names)

    # ---- serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists) of every field; ``from_dict(to_dict())`` equals ``self``."""
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            d[f.name] = list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, dict)
                                                                       else value)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """The spec stored in ``d``. Unknown keys are ignored and missing optional keys take their defaults;
        a missing ``format`` is taken as the current one (checkpoints), another format is a ``ValueError``,
        a missing required field a ``KeyError``."""
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"unsupported model format {fmt!r} (expected {FORMAT!r})")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("arch", "class_names", "input_size", "mean", "std") if k not in d]
        if missing:
            raise KeyError(f"model spec lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> str:
        """``to_dict`` as compact, key-sorted JSON: the ONNX metadata value under ``META_KEY``."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of ``to_json``; the ONNX metadata must state ``format`` explicitly."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"model metadata is a JSON {type(d).__name__}, not an object")
        if d.get("format") != FORMAT:
            raise ValueError(f"unsupported model format {d.get('format')!r} (expected {FORMAT!r})")
        return cls.from_dict(d)

    def with_fields(self, **changes: Any) -> ModelSpec:
        """``dataclasses.replace`` with ``provenance``, ``builder_args`` and ``ood`` *merged* into the current dicts."""
        for key in ("provenance", "builder_args", "ood"):
            if key in changes:
                changes[key] = {**getattr(self, key), **(changes[key] or {})}
        return replace(self, **changes)


def spec_field_names() -> tuple[str, ...]:
    """Names of ``ModelSpec``'s fields, in declaration order (used to split builder keyword arguments)."""
    return tuple(f.name for f in fields(ModelSpec))
