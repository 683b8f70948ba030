"""``sonolens clip-report [--model M] CLIP...``: what a model says on each sample clip.

Runs the real pipeline (``pipeline.stream.build``, every frame, ``--max-rate``) and prints a Markdown table of the
mean class probabilities and the share of frames each class is on top. The samples' README quotes this table; the
numbers show how far the simulator is from the training data, and nothing is tuned to make them look good.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sonolens.pipeline.errors import SourceError
from sonolens.pipeline.stream import PipelineConfig, build, run_to_end


def clip_stats(clip: str, model: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The model's class names and its probabilities on every frame of ``clip``, shape ``(frames, classes)``.

    Raises a ``SonolensError`` (``SourceError``, ``ModelError``) for a clip or model that cannot be opened, the
    pipeline's own error if decoding fails midway, and ``SourceError`` if no frame was processed.
    """
    probs: list[np.ndarray] = []
    pipe = build(PipelineConfig(source=clip, model=model, realtime=False, cam=False),
                 [lambda r: probs.append(r.raw_probs)])
    run_to_end(pipe)
    if pipe.error:
        raise pipe.error
    if not probs:
        raise SourceError(f"{clip}: no frame was processed")
    assert pipe.engine is not None  # clip_stats always runs a model
    return pipe.engine.meta.class_names, np.stack(probs)


def markdown_table(rows: list[tuple[str, int, np.ndarray, np.ndarray]], names: tuple[str, ...]) -> str:
    """Rows of ``(clip name, frames, mean probability per class, share of frames on top per class)`` as Markdown."""
    lines = ["| clip | frames | " + " | ".join(f"mean P({n})" for n in names) + " | "
             + " | ".join(f"{n} on top" for n in names) + " |",
             "|---|---|" + "---|" * (2 * len(names))]
    for name, n, mean, top in rows:
        lines.append(f"| {name} | {n} | " + " | ".join(f"{v:.2f}" for v in mean) + " | "
                     + " | ".join(f"{100 * v:.0f}%" for v in top) + " |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens clip-report",
        description="Run every frame of each clip through the real pipeline (--max-rate, no CAM) and print a "
                    "Markdown table of the mean class probabilities and how often each class is on top.")
    p.add_argument("clips", nargs="+", metavar="CLIP", help="video files (or any source 'sonolens run' accepts)")
    p.add_argument("--model", default="busi", help="bundled model name or ONNX file (default: busi)")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    rows: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    names: tuple[str, ...] = ()
    for clip in args.clips:
        names, p = clip_stats(clip, args.model)
        top = np.bincount(p.argmax(axis=1), minlength=len(names)) / len(p)
        rows.append((Path(clip).name, len(p), p.mean(axis=0), top))
    print(markdown_table(rows, names))
    return 0


if __name__ == "__main__":  # the old ``python -m sonolens.training.clip_report`` still works
    from sonolens.cli import main

    sys.exit(main(["clip-report", *sys.argv[1:]]))
