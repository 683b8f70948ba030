"""What a model says on each sample clip: ``python -m sonolens.training.clip_report [--model M] CLIP...``.

Runs the real pipeline (``pipeline.stream.build``, every frame, ``--max-rate``) and prints a Markdown table of the
mean class probabilities and the share of frames each class is on top. The samples' README quotes this table; the
numbers show how far the simulator is from the training data, and nothing is tuned to make them look good.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sonolens.pipeline.stream import PipelineConfig, build, run_to_end


def clip_stats(clip: str, model: str) -> tuple[tuple[str, ...], np.ndarray]:
    probs: list[np.ndarray] = []
    pipe = build(PipelineConfig(source=clip, model=model, realtime=False, cam=False),
                 [lambda r: probs.append(r.raw_probs)])
    run_to_end(pipe)
    if pipe.error:
        raise pipe.error
    return pipe.engine.meta.class_names, np.stack(probs)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m sonolens.training.clip_report")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--model", default="busi")
    args = ap.parse_args(argv)
    rows, names = [], ()
    for clip in args.clips:
        names, p = clip_stats(clip, args.model)
        top = np.bincount(p.argmax(axis=1), minlength=len(names)) / len(p)
        rows.append((Path(clip).name, len(p), p.mean(axis=0), top))
    print("| clip | frames | " + " | ".join(f"mean P({n})" for n in names) + " | "
          + " | ".join(f"{n} on top" for n in names) + " |")
    print("|---|---|" + "---|" * (2 * len(names)))
    for name, n, mean, top in rows:
        print(f"| {name} | {n} | " + " | ".join(f"{v:.2f}" for v in mean) + " | "
              + " | ".join(f"{100 * v:.0f}%" for v in top) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
