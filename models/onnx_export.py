"""ONNX export: the model plus its fused Grad-CAM output, with the ``ModelSpec`` JSON as metadata.

The written file follows ``pipeline.modelfile``'s contract: input ``image`` float32 [N, 3, H, W] (N dynamic),
outputs ``logits`` [N, C] and ``cam`` [N, C, h, w] (``models.cam_fusion``, the recipe of the student's
adapter), metadata ``sonolens`` =
``ModelSpec.to_json()``. ``read_spec`` reads that metadata back (the runtime uses ``pipeline.engines``).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import META_KEY, ModelSpec

from .cam_fusion import cam_wrapper
from .random_student import build_random_student
from .registry import spec_of

DATASET_CITATIONS = {
    "busi": "W. Al-Dhabyani, M. Gomaa, H. Khaled, A. Fahmy, Dataset of breast ultrasound images, Data in Brief "
            "28:104863, 2020, doi:10.1016/j.dib.2019.104863 (CC BY 4.0)",
    "chest_xray_kermany": "D. Kermany et al., Cell 172(5):1122-1131, 2018; data doi:10.17632/rscbjbr9sj.2 (CC BY 4.0)",
    "bus_uclm": "N. Vallez, G. Bueno, O. Deniz, M. A. Rienda, C. Pastor, BUS-UCLM: Breast ultrasound lesion "
                "segmentation dataset, Scientific Data 12:242, 2025, doi:10.1038/s41597-025-04562-3; data "
                "doi:10.17632/7fvgj4jsp7 (research, non-commercial use)",
}


def data_citation(dataset: str) -> str | None:
    """The citation of a training dataset label: one name (``busi``) or several joined by "+" (``bus_uclm+busi``,
    from ``training.run_dir.data_provenance``), each cited; ``None`` if any part is unknown."""
    parts = [DATASET_CITATIONS.get(name) for name in str(dataset).split("+")]
    return None if not parts or None in parts else "; ".join(p for p in parts if p)


def build_spec(model: nn.Module, overrides: dict[str, Any] | None = None, *, opset: int = 17) -> ModelSpec:
    """The spec an export of ``model`` carries: the model's ``sonolens_spec`` with ``has_cam=True``,
    ``trained=False`` (unless overridden) and exporter versions prepended to its provenance; ``overrides``
    replaces fields, except ``provenance``, which is merged (exporter info ← model's ← overrides')."""
    import timm

    import sonolens

    spec = spec_of(model)
    overrides = dict(overrides or {})
    provenance = {
        "exported_by": f"sonolens {sonolens.__version__}",
        "torch": torch.__version__.split("+")[0],
        "timm": timm.__version__,
        "opset": opset,
        "cam": "fused Grad-CAM (closed form, all classes)",
    }
    provenance.update(spec.provenance)
    provenance.update(overrides.pop("provenance", None) or {})
    citation = data_citation(provenance.get("dataset", ""))
    if citation:  # derived weights carry their data's citation
        provenance.setdefault("data_citation", citation)
    return replace(replace(spec, has_cam=True, trained=False, provenance=provenance), **overrides)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, meta_overrides: dict[str, Any] | None = None,
                opset: int = 17) -> ModelSpec:
    """Write ``model`` (+ fused CAM) as ONNX to ``path``; returns the spec written (``build_spec``).

    ``meta_overrides`` must not change the input size or number of classes (``ValueError``). Uses the
    TorchScript-based exporter (``dynamo=False``): for this small static graph it gives a compact graph with
    constant folding; the result is checked with ``onnx.checker`` before it replaces ``path``.
    """
    import onnx

    spec = build_spec(model, meta_overrides, opset=opset)
    own = spec_of(model)
    if tuple(spec.input_size) != tuple(own.input_size) or spec.num_classes != own.num_classes:
        raise ValueError("meta_overrides must not change input_size or the number of classes of the model")
    model = model.eval()
    wrapper = cam_wrapper(model).eval()
    h, w = spec.input_size
    dummy = torch.zeros(1, 3, h, w)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _torch_to_onnx(wrapper, dummy, tmp, opset)
        proto = onnx.load(str(tmp))
        _fix_cam_shape(proto, wrapper)
        _inline_shared_initializers(proto)
        write_spec(proto, spec)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return spec


def export_random_student(path: str | os.PathLike, seed: int = 0, **cfg: Any) -> ModelSpec:
    """Export ``random_student.build_random_student(seed, **cfg)`` (``trained=False``, version ``random-SEED``) —
    for tests and benchmarks, never diagnosis."""
    model = build_random_student(seed=seed, **cfg)
    return export_onnx(model, path, meta_overrides={"trained": False, "version": f"random-{seed}"})


def write_spec(proto: Any, spec: ModelSpec) -> None:
    """Set ``proto``'s ``sonolens`` metadata to ``spec.to_json()`` (replacing any) and its doc string."""
    kept = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, spec.to_json()
    proto.doc_string = f"sonolens {spec.arch} ({', '.join(spec.class_names)}); research use only"


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The ``ModelSpec`` stored in an ONNX file (export-side helper; the runtime uses ``pipeline.engines``);
    ``ModelError`` when the file has none."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == META_KEY:
            return ModelSpec.from_json(p.value)
    raise ModelError(f"{path}: no '{META_KEY}' metadata")


def _torch_to_onnx(wrapper: nn.Module, dummy: torch.Tensor, path: Path, opset: int) -> None:
    """TorchScript-based exporter first: on this graph it gives the same ops as the dynamo exporter (and the
    same ORT speed) in ~1 s instead of ~20 s. It is deprecated in torch >= 2.9, so when it is gone or fails,
    fall back to ``dynamo=True``."""
    names = {"input_names": ["image"], "output_names": ["logits", "cam"]}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(wrapper, (dummy,), str(path), dynamo=False, opset_version=opset,
                              do_constant_folding=True, **names,
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "cam": {0: "batch"}})
        return
    except Exception:  # noqa: BLE001 - any failure of the legacy path: try the supported exporter
        pass
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        torch.onnx.export(wrapper, (dummy,), str(path), dynamo=True, opset_version=max(opset, 18),
                          dynamic_shapes={"image": {0: batch}}, external_data=False, optimize=True,
                          verbose=False, **names)


def _inline_shared_initializers(proto: Any) -> None:
    """The TorchScript exporter stores parameters with identical values once and feeds the others through
    ``Identity`` nodes (common in a random init: zero SE biases). Give each its own initializer again so
    every Conv has constant weights/bias — ORT's quantiser skips a bias that is not an initializer."""
    inits = {t.name: t for t in proto.graph.initializer}
    keep = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = proto.graph.initializer.add()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
        else:
            keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)


def _fix_cam_shape(proto: Any, wrapper: Any) -> None:
    """Declare ``cam`` as [batch, C, h, w]: the tracer leaves the non-batch dims symbolic after a reshape."""
    for out in proto.graph.output:
        if out.name == "cam":
            dims = out.type.tensor_type.shape.dim
            for dim, value in zip(dims[1:], (wrapper.num_classes, wrapper.feat_h, wrapper.feat_w)):
                dim.Clear()
                dim.dim_value = value
