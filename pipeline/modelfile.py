"""The model file is the contract between training and runtime.

A sonolens model is an ONNX file with

* input ``image``: float32 ``[N, 3, H, W]``, already normalised with the file's mean/std;
* output ``logits``: float32 ``[N, C]``;
* output ``cam`` (optional): float32 ``[N, C, h, w]`` — the Grad-CAM map of *every* class at the CAM layer's
  resolution, ReLU applied, not yet normalised or upsampled (see ``pipeline.cam``);
* metadata property ``sonolens`` holding the JSON of ``ModelSpec``.

The runtime reads class names, input size, mean/std and everything else from here: nothing is hard-coded,
so a model trained on another dataset runs without code changes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "sonolens-model/1"
META_KEY = "sonolens"


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_layer: str | None = None  # module path of the Grad-CAM layer, e.g. "blocks.5"
    has_cam: bool = True
    version: str = "0"
    trained: bool = False  # False for randomly initialised exports (tests, benchmarks)
    provenance: dict[str, Any] = field(default_factory=dict)  # dataset, citation, split, config hash, commit…
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise ValueError(f"unsupported model format {d.get('format')!r} (expected {FORMAT!r})")
        d["class_names"] = tuple(d["class_names"])
        d["input_size"] = tuple(int(v) for v in d["input_size"])
        d["mean"] = tuple(float(v) for v in d["mean"])
        d["std"] = tuple(float(v) for v in d["std"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
