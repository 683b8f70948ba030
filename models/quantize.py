"""Static INT8 quantisation of an exported model, and the calibration data it needs.

Calibration inputs are float32 ``[1, 3, H, W]`` arrays exactly like the runtime's (``pipeline.preprocess``):
real images (``images_calibration``) or, when none are given, speckle-like synthetic frames
(``synthetic_calibration``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import ModelSpec
from sonolens.pipeline.preprocess import preprocess_image

from .adapters import adapter_for_arch
from .onnx_export import read_spec, write_spec


class ArrayCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over float32 ``[1, 3, H, W]`` arrays (input ``image``)."""

    def __init__(self, arrays: Iterable[np.ndarray]):
        self._it: Iterator[np.ndarray] = iter(arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {"image": np.ascontiguousarray(x, dtype=np.float32)}


def synthetic_calibration(spec: ModelSpec, n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """``n`` speckle-like grey images normalised with the spec's mean/std, float32 ``[1, 3, H, W]`` each: a
    stand-in when no real images are given.

    Real frames calibrate better (``--calib DIR``); this keeps activations in a plausible range, which plain
    N(0, 1) noise in normalised space does not (it is far brighter and noisier than any ultrasound frame).
    Blocks of 16 px with uniform brightness times Rayleigh(σ=0.5) speckle, clipped to [0, 1].
    """
    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    out = []
    for _ in range(n):
        coarse = rng.random((h // 16 + 1, w // 16 + 1), dtype=np.float32)
        base = np.kron(coarse, np.ones((16, 16), np.float32))[:h, :w]
        grey = np.clip(base * rng.rayleigh(0.5, (h, w)).astype(np.float32), 0.0, 1.0)
        img = np.repeat(grey[None], 3, axis=0)
        out.append(((img - mean) / std)[None].astype(np.float32))
    return out


def images_calibration(files: Sequence[str | os.PathLike], spec: ModelSpec, n: int = 32) -> list[np.ndarray]:
    """Up to ``n`` of ``files`` (evenly spaced over the sorted list), each preprocessed by
    ``pipeline.preprocess.preprocess_image`` — exactly what the runtime feeds. Choosing the files (e.g. only a
    split's training rows: calibrate on training data, never on the test set the INT8 model is then scored on)
    is the caller's job. Unreadable files are skipped; none readable is a ``ModelError``."""
    import cv2

    paths = sorted(Path(p) for p in files)
    step = max(1, len(paths) // max(1, n))
    out = []
    for p in paths[::step][:n]:
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is not None:
            out.append(preprocess_image(gray, spec))
    if not out:
        raise ModelError(f"no readable images for INT8 calibration ({len(paths)} file(s) given)")
    return out


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, *,
                  calibration: Iterable[np.ndarray] | None = None) -> ModelSpec:
    """Static INT8 (QDQ; uint8 activations, per-channel int8 weights, MinMax calibration) of the *pointwise*
    convolutions of the ONNX model ``src``, written to ``dst``; depthwise convolutions, the head, the fused-CAM
    branch and the convolutions the student's adapter keeps float (``int8_keep_float``) stay float32.
    ``calibration``: input arrays (default ``synthetic_calibration``). Returns the spec
    written: ``src``'s, provenance marked ``"quantized": "int8"``.

    Choices measured on MobileNetV3-Small with ORT 1.32 on a 2-core AVX-512/VNNI CPU (batch 1, 1 thread):
    dynamic quantisation turns Conv into ConvInteger and is 3-6x *slower* than fp32; static QDQ of all
    convolutions is ~30 % slower than fp32 (every hardswish/SE stays float, so each small conv pays a
    quantise/dequantise pair); pointwise-only is the fastest INT8 variant (~10-15 % slower than fp32) and
    moves the CAM least. This network is too small for INT8 to pay off on such a CPU — the file is for
    CPUs/runtimes where it does, and for the benchmark table.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    spec = read_spec(src)
    arrays = list(calibration) if calibration is not None else synthetic_calibration(spec)
    if not arrays:
        raise ModelError("INT8 calibration needs at least one image")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        # Shape inference ORT recommends before quantising. Its graph optimisation step is skipped: it
        # splits HardSwish into HardSigmoid + Mul, which only adds nodes here.
        quant_pre_process(str(src), str(pre), skip_optimization=True)
        keep_float = adapter_for_arch(spec.arch).int8_keep_float
        depthwise = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"
                     and (any(a.name == "group" and a.i > 1 for a in n.attribute) or n.name.startswith(keep_float))]
        quantize_static(
            str(pre), str(dst), ArrayCalibrationReader(arrays),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], nodes_to_exclude=depthwise,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    q_spec = replace(spec, provenance={
        **spec.provenance, "quantized": "int8",
        "quantization": "static QDQ, pointwise convs, u8 activations / per-channel s8 weights",
        "calibration": f"{len(arrays)} given images" if calibration is not None else "synthetic speckle"})
    proto = onnx.load(str(dst))
    write_spec(proto, q_spec)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))
    return q_spec
