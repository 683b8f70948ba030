"""``sonolens clip-report [--model M] CLIP...``: what a model says on each sample clip.

Runs the real pipeline (``pipeline.stream.build``, every frame, ``--max-rate``) and prints a Markdown table of the
mean class probabilities and the share of frames each class is on top. The samples' README quotes this table; the
numbers show how far the simulator is from the training data, and nothing is tuned to make them look good.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonolens.pipeline.errors import ConfigError, SourceError
from sonolens.pipeline.stream import PipelineConfig, build, run_to_end


@dataclass(frozen=True)
class ClipFrames:
    """Every frame of a clip through the real pipeline: class names, raw and shown ``[frames, classes]``
    probabilities, the state and the shown class of each frame."""

    names: tuple[str, ...]
    raw: np.ndarray
    shown: np.ndarray
    states: list[str]
    shown_top: list[int]


def clip_stats(clip: str, model: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The model's class names and its probabilities on every frame of ``clip``, shape ``(frames, classes)``.

    Raises a ``SonolensError`` (``SourceError``, ``ModelError``) for a clip or model that cannot be opened, the
    pipeline's own error if decoding fails midway, and ``SourceError`` if no frame was processed.
    """
    frames = clip_frames(clip, model)
    return frames.names, frames.raw


def clip_frames(clip: str | Path, model: str, *, ema: float = 0.0, decision_s: float = 0.0,
                decision_margin: float = 0.15) -> ClipFrames:
    """Every frame of ``clip`` through ``pipeline.stream.build`` (``--max-rate``, no CAM); ``ema``, ``decision_s``,
    ``decision_margin``: the smoothing the shown probabilities get (``PipelineConfig``'s fields)."""
    raw: list[np.ndarray] = []
    shown: list[np.ndarray] = []
    states: list[str] = []
    top: list[int] = []

    def sink(r) -> None:
        raw.append(r.raw_probs)
        shown.append(r.probs)
        states.append(r.state)
        top.append(r.top_class)

    cfg = PipelineConfig(source=str(clip), model=model, realtime=False, cam=False, ema=ema, decision_s=decision_s,
                         decision_margin=decision_margin)
    pipe = build(cfg, [sink])
    run_to_end(pipe)
    if pipe.error:
        raise pipe.error
    if not raw:
        raise SourceError(f"{clip}: no frame was processed")
    assert pipe.engine is not None  # clip_frames always runs a model
    return ClipFrames(pipe.engine.meta.class_names, np.stack(raw), np.stack(shown), states, top)


def markdown_table(rows: list[tuple[str, int, np.ndarray, np.ndarray]], names: tuple[str, ...],
                   shown: list[float] | None = None) -> str:
    """Rows of ``(clip name, frames, mean probability per class, share of frames on top per class)`` as Markdown;
    ``shown``: per row, the share of frames the gate let through (a column when given)."""
    extra = " shown (gate) |" if shown is not None else ""
    lines = ["| clip | frames |" + extra + " " + " | ".join(f"mean P({n})" for n in names) + " | "
             + " | ".join(f"{n} on top" for n in names) + " |",
             "|---|---|" + ("---|" if shown is not None else "") + "---|" * (2 * len(names))]
    for i, (name, n, mean, top) in enumerate(rows):
        cell = f" {100 * shown[i]:.0f}% |" if shown is not None else ""
        lines.append(f"| {name} | {n} |{cell} " + " | ".join(f"{v:.2f}" for v in mean) + " | "
                     + " | ".join(f"{100 * v:.0f}%" for v in top) + " |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens clip-report",
        description="Run every frame of each clip through the real pipeline (--max-rate, no CAM) and print a "
                    "Markdown table of the mean class probabilities and how often each class is on top.")
    p.add_argument("clips", nargs="+", metavar="CLIP", help="video files (or any source 'sonolens run' accepts)")
    p.add_argument("--model", default="busi", help="bundled model name or ONNX file (default: busi)")
    p.add_argument("--segments", type=int, default=1,
                   help="split each clip into N equal parts, one row each (e.g. one per still of busi_demo.mp4)")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.segments < 1:
        raise ConfigError(f"--segments must be at least 1, got {args.segments}")
    rows: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    shown: list[float] = []
    names: tuple[str, ...] = ()
    for clip in args.clips:
        frames = clip_frames(clip, args.model)
        names, probs, states = frames.names, frames.raw, frames.states
        bounds = np.linspace(0, len(probs), args.segments + 1).round().astype(int)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            p = probs[a:b]
            top = np.bincount(p.argmax(axis=1), minlength=len(names)) / max(1, len(p))
            label = Path(clip).name if args.segments == 1 else f"{Path(clip).name} part {k + 1}"
            rows.append((label, len(p), p.mean(axis=0), top))
            shown.append(float(np.mean([s == "ok" for s in states[a:b]])))
    print(markdown_table(rows, names, shown))
    return 0


if __name__ == "__main__":  # the old ``python -m sonolens.training.clip_report`` still works
    from sonolens.cli import main

    sys.exit(main(["clip-report", *sys.argv[1:]]))
