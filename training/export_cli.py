"""``sonolens export``: a checkpoint (or a random-init student) → ONNX with fused Grad-CAM, optionally INT8.

The work is done by ``models.onnx_export`` and ``models.quantize``; this command only resolves its inputs,
including the calibration images, which may come from a dataset split CSV (``training.data``). That is why it
lives in ``training/``: ``models/`` never imports ``training/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sonolens.pipeline.errors import ConfigError


def calibration_files(folder: str | Path, split_csv: str | Path | None = None) -> list[Path]:
    """Images used for INT8 calibration: with ``split_csv`` its ``train`` rows (resolved against ``folder``; never
    the test set the INT8 model is then scored on), else every image file under ``folder`` (masks excluded)."""
    from .data import is_image_file, read_split_csv

    if split_csv is not None:
        files = [s.path for s in read_split_csv(split_csv, folder, "train")]
    else:
        files = [p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p)]
    if not files:
        raise ConfigError(f"no images found under {str(folder)!r} for INT8 calibration")
    return sorted(files)


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
    from sonolens.models.checkpoint import load_checkpoint
    from sonolens.models.onnx_export import export_onnx
    from sonolens.models.quantize import images_calibration, quantize_int8
    from sonolens.models.random_student import build_random_student, is_random_init

    args = _parser().parse_args(argv)
    if args.calib_split and not args.calib:
        raise ConfigError("--calib-split needs --calib DIR (the dataset root its rows are relative to)")
    if args.random:
        model = build_random_student(seed=args.seed)
        spec = export_onnx(model, args.out, opset=args.opset,
                           meta_overrides={"trained": False, "version": f"random-{args.seed}"})
    else:
        model = load_checkpoint(args.checkpoint)
        prov = model.sonolens_spec.provenance
        spec = export_onnx(model, args.out, opset=args.opset,
                           meta_overrides={"trained": not is_random_init(model),
                                           "version": str(prov.get("version", "1")),
                                           "provenance": {"checkpoint": Path(args.checkpoint).name}})
    print(f"wrote {args.out}: {spec.arch}, classes {', '.join(spec.class_names)}, input {spec.input_size}, "
          f"trained={spec.trained}")
    if args.int8:
        calib = (images_calibration(calibration_files(args.calib, args.calib_split), spec) if args.calib
                 else None)
        quantize_int8(args.out, args.int8, calibration=calib)
        print(f"wrote {args.int8}: INT8 (static QDQ, pointwise convolutions), "
              f"calibrated on {'images from ' + args.calib if args.calib else 'synthetic speckle'}"
              f"{' (train split of ' + args.calib_split + ')' if args.calib_split else ''}")
    return 0
