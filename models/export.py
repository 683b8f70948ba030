"""ONNX export with a fused Grad-CAM output, INT8 quantisation, checkpoints, and ``sonolens export``.

Why a fused CAM: the student's CAM layer (``blocks.5``) feeds *global average pooling*, so the gradient of
a logit with respect to the CAM activations is the same at every spatial position:

    d logit_c / d A_k(i, j) = g_ck = 1/(h*w) * sum_m W_conv[m, k] * hardswish'(z_m) * W_lin[c, m]

with ``z = conv_head(avgpool(A))`` (pre-activation). Grad-CAM's channel weights are the spatial mean of
that gradient, i.e. ``g_c`` itself, so ``cam_c = ReLU(sum_k g_ck A_k)`` for *all* classes costs two small
matrix products in the forward graph — no backward pass, no autograd at runtime, and the runtime
(``pipeline/``) only needs ONNX Runtime. Tests check it against pytorch-grad-cam's ``GradCAM``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import META_KEY, ModelSpec

from .registry import ModelConfig, create_model
from .student import STUDENT_ARCH

RANDOM_PROVENANCE = "random init, not a trained model"
CHECKPOINT_KEYS = ("model_name", "model_cfg", "state_dict")


# --------------------------------------------------------------------------------------------------------
# The fused Grad-CAM wrapper
# --------------------------------------------------------------------------------------------------------
class FusedCamWrapper(nn.Module):
    """``forward(image) -> (logits [N, C], cam [N, C, h, w])``; ``cam`` is raw Grad-CAM (ReLU applied).

    Works for timm MobileNetV3-style heads: ``forward_features`` ending at the CAM layer →
    ``global_pool`` (avg) → ``conv_head`` (1x1) → ``norm_head`` (Identity) → ``act2`` (hardswish) →
    ``classifier`` (Linear). Anything else is refused at construction, not silently mis-explained.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        _check_fusable(model)
        self.model = model
        # Static sizes, so the exported graph has a fixed [N, C, h, w] cam shape instead of shape arithmetic.
        h, w = model.sonolens_cfg.input_size
        was_training = model.training
        model.eval()  # a probe in train mode would update BatchNorm running statistics
        with torch.no_grad():
            feat = model.forward_features(torch.zeros(1, 3, int(h), int(w)))
        model.train(was_training)
        self.channels, self.feat_h, self.feat_w = (int(v) for v in feat.shape[1:])
        self.num_classes = int(model.classifier.out_features)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        k, h, w = self.channels, self.feat_h, self.feat_w
        feat = m.forward_features(image)  # = output of the CAM layer, [N, K, h, w]
        if not torch.jit.is_tracing() and tuple(feat.shape[1:]) != (k, h, w):
            raise ValueError(f"input {tuple(image.shape)} does not match the model's input_size "
                             f"{tuple(m.sonolens_cfg.input_size)}")
        flat = feat.reshape(-1, k, h * w)
        w_conv = m.conv_head.weight.reshape(m.conv_head.out_channels, k)  # [M, K]
        w_lin = m.classifier.weight  # [C, M]
        # Head, written out so the ONNX graph shares conv_head/classifier weights with the CAM branch.
        pooled = flat.mean(dim=2)  # global average pooling, [N, K]
        z = F.linear(pooled, w_conv, m.conv_head.bias)  # conv_head pre-activation, [N, M]
        logits = F.linear(F.hardswish(z), w_lin, m.classifier.bias)  # [N, C]
        dact = hardswish_grad(z)  # [N, M]
        grads = torch.matmul(dact.unsqueeze(1) * w_lin, w_conv)  # [N, C, K] = h*w * d logit_c / d A_k
        cam = torch.relu(torch.matmul(grads, flat) * (1.0 / (h * w)))  # [N, C, h*w]
        return logits, cam.reshape(-1, self.num_classes, h, w)


def hardswish_grad(z: torch.Tensor) -> torch.Tensor:
    """d hardswish / dz exactly as torch's autograd computes it: 0 for z <= -3, z/3 + 1/2 for -3 < z < 3,
    1 for z >= 3. Note it is *not* a clamp: it dips to -1/2 just above -3 and jumps from 3/2 to 1 at 3."""
    zero, one = torch.zeros((), dtype=z.dtype), torch.ones((), dtype=z.dtype)
    return torch.where(z <= -3.0, zero, torch.where(z >= 3.0, one, z / 3.0 + 0.5))


def _check_fusable(model: nn.Module) -> None:
    cfg: ModelConfig | None = getattr(model, "sonolens_cfg", None)
    if cfg is None:
        raise ModelError("model has no sonolens_cfg; build it with sonolens.models.create_model")
    blocks = getattr(model, "blocks", None)
    problems = []
    if blocks is None or cfg.cam_layer != f"blocks.{len(blocks) - 1}":
        problems.append(f"cam_layer {cfg.cam_layer!r} is not the last block feeding global pooling")
    pool = getattr(model, "global_pool", None)
    if getattr(pool, "pool_type", None) != "avg":
        problems.append("global_pool is not average pooling")
    conv = getattr(model, "conv_head", None)
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1) or conv.groups != 1:
        problems.append("conv_head is not a 1x1 convolution")
    if not isinstance(getattr(model, "norm_head", nn.Identity()), nn.Identity):
        problems.append("norm_head is not Identity")
    if not isinstance(getattr(model, "act2", None), nn.Hardswish):
        problems.append("act2 is not hardswish")
    if not isinstance(getattr(model, "classifier", None), nn.Linear):
        problems.append("classifier is not a Linear layer")
    if problems:
        raise ModelError(f"cannot fuse Grad-CAM into {cfg.arch}: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------------------
# Metadata and ONNX export
# --------------------------------------------------------------------------------------------------------
DATASET_CITATIONS = {
    "busi": "W. Al-Dhabyani, M. Gomaa, H. Khaled, A. Fahmy, Dataset of breast ultrasound images, Data in Brief "
            "28:104863, 2020, doi:10.1016/j.dib.2019.104863 (CC BY 4.0)",
    "chest_xray_kermany": "D. Kermany et al., Cell 172(5):1122-1131, 2018; data doi:10.17632/rscbjbr9sj.2 (CC BY 4.0)",
}


def build_meta(model: nn.Module, meta_overrides: dict[str, Any] | None = None, *, opset: int = 17) -> ModelSpec:
    """``ModelSpec`` from the model's ``sonolens_cfg``; ``meta_overrides`` replaces fields (provenance is merged)."""
    import timm

    import sonolens

    cfg: ModelConfig = model.sonolens_cfg
    overrides = dict(meta_overrides or {})
    provenance = {
        "exported_by": f"sonolens {sonolens.__version__}",
        "torch": torch.__version__.split("+")[0],
        "timm": timm.__version__,
        "opset": opset,
        "cam": "fused Grad-CAM (closed form, all classes)",
    }
    provenance.update(getattr(model, "sonolens_provenance", None) or {})
    provenance.update(overrides.pop("provenance", None) or {})
    if provenance.get("dataset") in DATASET_CITATIONS:  # derived weights carry their data's citation
        provenance.setdefault("data_citation", DATASET_CITATIONS[provenance["dataset"]])
    meta = ModelSpec(
        arch=cfg.arch,
        class_names=tuple(cfg.class_names),
        input_size=(int(cfg.input_size[0]), int(cfg.input_size[1])),
        mean=tuple(float(v) for v in cfg.mean),
        std=tuple(float(v) for v in cfg.std),
        cam_layer=cfg.cam_layer,
        has_cam=True,
        trained=False,
        provenance=provenance,
    )
    return dataclasses.replace(meta, **overrides)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, meta_overrides: dict[str, Any] | None = None,
                opset: int = 17) -> ModelSpec:
    """Write ``model`` (+ fused CAM) as ONNX: input ``image`` [N, 3, H, W] (N dynamic), outputs ``logits``
    and ``cam``, metadata ``sonolens`` = ``ModelSpec`` JSON. Returns the metadata written.

    Uses the TorchScript-based exporter (``dynamo=False``): for this small static graph it gives a compact
    graph with constant folding; the result is checked with ``onnx.checker`` before it replaces ``path``.
    """
    import onnx

    meta = build_meta(model, meta_overrides, opset=opset)
    cfg: ModelConfig = model.sonolens_cfg
    if tuple(meta.input_size) != tuple(cfg.input_size) or len(meta.class_names) != cfg.num_classes:
        raise ValueError("meta_overrides must not change input_size or the number of classes of the model")
    model = model.eval()
    wrapper = FusedCamWrapper(model).eval()
    h, w = meta.input_size
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
        _set_meta(proto, meta)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


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


def _fix_cam_shape(proto: Any, wrapper: FusedCamWrapper) -> None:
    """Declare ``cam`` as [batch, C, h, w]: the tracer leaves the non-batch dims symbolic after a reshape."""
    for out in proto.graph.output:
        if out.name == "cam":
            dims = out.type.tensor_type.shape.dim
            for dim, value in zip(dims[1:], (wrapper.num_classes, wrapper.feat_h, wrapper.feat_w)):
                dim.Clear()
                dim.dim_value = value


def _set_meta(proto: Any, meta: ModelSpec) -> None:
    kept = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    proto.doc_string = f"sonolens {meta.arch} ({', '.join(meta.class_names)}); research use only"


def read_meta(path: str | os.PathLike) -> ModelSpec:
    """The ``ModelSpec`` stored in an ONNX file (export-side helper; the runtime uses ``pipeline.engines``)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == META_KEY:
            return ModelSpec.from_json(p.value)
    raise ModelError(f"{path}: no '{META_KEY}' metadata")


def build_random_student(seed: int = 0, **cfg: Any) -> nn.Module:
    """A randomly initialised student in eval mode whose outputs depend on the input like a trained net's.

    With timm's init (BN running mean 0 / var 1, identity affine) the signal shrinks ~50x through the
    blocks and the logits and CAMs barely change with the input. So, seeded: BN affine parameters are
    drawn around identity, then the running statistics are re-estimated on a few smooth random images
    (data-dependent init), which puts every block back at unit scale. Still random weights: the metadata
    says ``trained=false`` — for tests (parity must not pass on a flat CAM) and benchmarks only.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = create_model(cfg.pop("arch", STUDENT_ARCH), **cfg)
    h, w = model.sonolens_cfg.input_size
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(1.0 + 0.25 * torch.randn(c, generator=gen))
                mod.bias.copy_(0.25 * torch.randn(c, generator=gen))
                mod.reset_running_stats()
                mod.momentum = None  # cumulative average over the calibration batches
        nn.init.normal_(model.classifier.weight, std=0.1, generator=gen)
        model.train()
        model(_calibration_batch(8, h, w, gen))
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = 0.1
        model.eval()
        # Spread conv_head's pre-activation z to std ~2 so all branches of hardswish' (z <= -3, the dip
        # just above -3, the middle, z >= 3) occur, as they can in a trained head.
        z = model.conv_head(model.forward_features(_calibration_batch(8, h, w, gen)).mean((2, 3), keepdim=True))
        scale = 2.0 / float(z.std())
        model.conv_head.weight.mul_(scale)
        model.conv_head.bias.mul_(scale)
    model.sonolens_provenance = {"weights": RANDOM_PROVENANCE, "seed": seed}
    return model.eval()


def _calibration_batch(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Half smooth blobs (image-like), half white noise: inputs spanning what tests and benchmarks feed."""
    coarse = torch.randn(n - n // 2, 3, max(1, h // 16), max(1, w // 16), generator=gen)
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    smooth = smooth + 0.3 * torch.randn(smooth.shape, generator=gen)
    return torch.cat([smooth, torch.randn(n // 2, 3, h, w, generator=gen)])


def export_random_student(path: str | os.PathLike, seed: int = 0, **cfg: Any) -> ModelSpec:
    """Export a randomly initialised student (``trained=False``) — for tests and benchmarks, never diagnosis."""
    model = build_random_student(seed=seed, **cfg)
    return export_onnx(model, path, meta_overrides={"trained": False, "version": f"random-{seed}"})


# --------------------------------------------------------------------------------------------------------
# Checkpoints (the format the training loop writes)
# --------------------------------------------------------------------------------------------------------
def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, model_name: str | None = None,
                    provenance: dict[str, Any] | None = None) -> None:
    """``torch.save({"model_name", "model_cfg", "state_dict", "provenance"})`` — what ``load_checkpoint`` reads."""
    cfg: ModelConfig = model.sonolens_cfg
    payload = {
        "model_name": model_name or cfg.arch,
        "model_cfg": _cfg_to_dict(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "provenance": dict(provenance if provenance is not None else getattr(model, "sonolens_provenance", {})),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, str(path))


def _cfg_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    for key in ("class_names", "input_size", "mean", "std"):
        d[key] = list(d[key])
    return d


def is_random_init(model: nn.Module) -> bool:
    """True for ``build_random_student`` models and checkpoints saved from them (their provenance says so)."""
    return (getattr(model, "sonolens_provenance", None) or {}).get("weights") == RANDOM_PROVENANCE


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model saved by ``save_checkpoint`` / the training loop (eval mode, on CPU).

    The checkpoint's ``provenance`` dict is attached as ``model.sonolens_provenance`` so an export of it
    carries dataset, split and config hash into the ONNX metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise ModelError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise ModelError(f"{path}: not a sonolens checkpoint (needs keys {', '.join(CHECKPOINT_KEYS)})")
    cfg = dict(ckpt["model_cfg"])
    try:
        model = create_model(ckpt["model_name"], **cfg)
    except KeyError as exc:
        raise ModelError(f"{path}: {exc.args[0]}") from exc
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: weights do not fit {ckpt['model_name']}: {first}") from exc
    model.sonolens_provenance = dict(ckpt.get("provenance") or {})
    return model.eval()


# --------------------------------------------------------------------------------------------------------
# INT8
# --------------------------------------------------------------------------------------------------------
class _ArrayReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a list of [1, 3, H, W] float32 arrays."""

    def __init__(self, arrays: list[np.ndarray]):
        self._it: Iterator[np.ndarray] = iter(arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {"image": np.ascontiguousarray(x, dtype=np.float32)}


def synthetic_calibration(meta: ModelSpec, n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Speckle-like grey images normalised with the model's mean/std: a stand-in when no real images are given.

    Real frames calibrate better (``--calib DIR``); this keeps activations in a plausible range, which plain
    N(0, 1) noise in normalised space does not (it is far brighter and noisier than any ultrasound frame).
    """
    rng = np.random.default_rng(seed)
    h, w = meta.input_size
    mean = np.asarray(meta.mean, np.float32)[:, None, None]
    std = np.asarray(meta.std, np.float32)[:, None, None]
    out = []
    for _ in range(n):
        coarse = rng.random((h // 16 + 1, w // 16 + 1), dtype=np.float32)
        base = np.kron(coarse, np.ones((16, 16), np.float32))[:h, :w]
        grey = np.clip(base * rng.rayleigh(0.5, (h, w)).astype(np.float32), 0.0, 1.0)
        img = np.repeat(grey[None], 3, axis=0)
        out.append(((img - mean) / std)[None].astype(np.float32))
    return out


def images_calibration(folder: str | os.PathLike, meta: ModelSpec, n: int = 32,
                       split_csv: str | os.PathLike | None = None, split: str = "train") -> list[np.ndarray]:
    """Up to ``n`` images from ``folder``, preprocessed exactly as the runtime does (grayscale → INTER_AREA
    resize → normalise). With ``split_csv`` only that split's images are used (calibrate on training data, never
    on the test set the INT8 model is then scored on)."""
    import cv2

    from sonolens.pipeline.preprocess import normalisation_lut, preprocess_gray

    if split_csv is not None:
        from sonolens.training.data import read_split_csv

        files = sorted(Path(s.path) for s in read_split_csv(split_csv, folder, split))
    else:
        files = sorted(p for p in Path(folder).rglob("*")
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp") and "_mask" not in p.stem)
    if not files:
        raise ModelError(f"no images found under {str(folder)!r} for INT8 calibration")
    step = max(1, len(files) // n)
    lut = normalisation_lut(meta.mean, meta.std)
    out = []
    for p in files[::step][:n]:
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is not None:
            out.append(preprocess_gray(gray, meta.input_size, lut))
    return out


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, *,
                  calibration: Iterable[np.ndarray] | None = None) -> ModelSpec:
    """Static INT8 (QDQ; uint8 activations, per-channel int8 weights, MinMax calibration) of the *pointwise*
    convolutions; depthwise convolutions, the head and the fused-CAM branch stay float32.

    Choices measured on MobileNetV3-Small with ORT 1.32 on a 2-core AVX-512/VNNI CPU (batch 1, 1 thread):
    dynamic quantisation turns Conv into ConvInteger and is 3-6x *slower* than fp32; static QDQ of all
    convolutions is ~30 % slower than fp32 (every hardswish/SE stays float, so each small conv pays a
    quantise/dequantise pair); pointwise-only is the fastest INT8 variant (~10-15 % slower than fp32) and
    moves the CAM least. This network is too small for INT8 to pay off on such a CPU — the file is for
    CPUs/runtimes where it does, and for the benchmark table. Metadata is copied, marked
    ``"quantized": "int8"``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    meta = read_meta(src)
    arrays = list(calibration) if calibration is not None else synthetic_calibration(meta)
    if not arrays:
        raise ModelError("INT8 calibration needs at least one image")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        # Shape inference ORT recommends before quantising. Its graph optimisation step is skipped: it
        # splits HardSwish into HardSigmoid + Mul, which only adds nodes here.
        quant_pre_process(str(src), str(pre), skip_optimization=True)
        depthwise = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"
                     and any(a.name == "group" and a.i > 1 for a in n.attribute)]
        quantize_static(
            str(pre), str(dst), _ArrayReader(arrays),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], nodes_to_exclude=depthwise,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    q_meta = dataclasses.replace(meta, provenance={
        **meta.provenance, "quantized": "int8",
        "quantization": "static QDQ, pointwise convs, u8 activations / per-channel s8 weights",
        "calibration": f"{len(arrays)} given images" if calibration is not None else "synthetic speckle"})
    proto = onnx.load(str(dst))
    _set_meta(proto, q_meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))
    return q_meta


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens export",
        description="Export a trained checkpoint (or a random-init student for testing) to ONNX with a fused "
                    "Grad-CAM output and sonolens metadata; optionally also an INT8 copy.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="torch checkpoint written by 'sonolens train'")
    src.add_argument("--random", action="store_true",
                     help="a randomly initialised student (tests/benchmarks only; metadata says trained=false)")
    p.add_argument("--out", required=True, metavar="PATH", help="output .onnx file")
    p.add_argument("--int8", metavar="OUT", help="also write a static-INT8 copy here")
    p.add_argument("--calib", metavar="DIR", help="images used to calibrate INT8 (default: synthetic speckle)")
    p.add_argument("--calib-split", metavar="CSV", help="with --calib: use only the 'train' rows of this split CSV")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.random:
        model = build_random_student(seed=args.seed)
        meta = export_onnx(model, args.out, opset=args.opset,
                           meta_overrides={"trained": False, "version": f"random-{args.seed}"})
    else:
        model = load_checkpoint(args.checkpoint)
        prov = getattr(model, "sonolens_provenance", {}) or {}
        meta = export_onnx(model, args.out, opset=args.opset,
                           meta_overrides={"trained": not is_random_init(model),
                                           "version": str(prov.get("version", "1")),
                                           "provenance": {"checkpoint": Path(args.checkpoint).name}})
    print(f"wrote {args.out}: {meta.arch}, classes {', '.join(meta.class_names)}, input {meta.input_size}, "
          f"trained={meta.trained}")
    if args.int8:
        calib = images_calibration(args.calib, meta, split_csv=args.calib_split) if args.calib else None
        quantize_int8(args.out, args.int8, calibration=calib)
        print(f"wrote {args.int8}: INT8 (static QDQ, pointwise convolutions), "
              f"calibrated on {'images from ' + args.calib if args.calib else 'synthetic speckle'}"
              f"{' (train split of ' + args.calib_split + ')' if args.calib_split else ''}")
    return 0
