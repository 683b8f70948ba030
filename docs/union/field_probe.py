"""A gate idea tried after the pick and dropped (MODEL_CARD.md, "Looked at"): flag a frame whose field of view is
a fan (a convex or sector probe) rather than a linear probe's rectangle. Two field-shape measures on the default
model's own input (the runtime's preprocessing; the ROI found automatically for clips, none and auto for images):

* corners: both top corners (top 1/7 of the rows, outer 1/8 of the columns, every 4th pixel) black — 95th
  percentile below 12 grey levels — while the top middle holds echoes (>= 30): a fan's dark corners;
* sag: how much lower the image starts (first lit row, 3×3 mean >= 12) at ±35 % of the width from the middle
  than in the middle, as a share of the height: a convex probe's arc.

Training rows (BUSI + BUS-UCLM union train split) say what a rule would cost on the training hospitals; the Polish
lesions, the breast cine clips and the lung and eye clips are read for the report only.

    python docs/union/field_probe.py        (≈ 1 minute; ../shared beside the checkout)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np

from sonolens.pipeline.engines import load_engine
from sonolens.training.external_eval import model_inputs
from sonolens.training.ood import clip_frames

SHARED = Path(__file__).resolve().parents[3] / "shared"
DARK, ECHO = 12.0, 30.0


def grey(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (x[0, 0] * std + mean) * 255.0


def corners(g: np.ndarray) -> bool:
    q = g[::4, ::4]
    r, c = q.shape[0] // 7, q.shape[1] // 8
    mid = q[:r, q.shape[1] // 2 - c:q.shape[1] // 2 + c]
    return bool(max(np.percentile(q[:r, :c], 95), np.percentile(q[:r, -c:], 95)) < DARK
                and np.percentile(mid, 95) >= ECHO)


def sag(g: np.ndarray) -> float:
    h, w = g.shape
    lit = cv2.blur(g.astype(np.float32), (3, 3))[: h // 2] >= DARK
    top = np.where(lit.any(0), lit.argmax(0), h // 2).astype(float)
    c, d = w // 2, int(round(0.35 * w))
    side = (np.median(top[c - d - 2:c - d + 3]) + np.median(top[c + d - 2:c + d + 3])) / 2
    return float((side - np.median(top[c - 2:c + 3])) / h)


def sets(spec):
    videos = SHARED / "videos"
    for p in sorted(videos.glob("*.mp4")):
        yield p.stem, clip_frames(p, spec, stride=5)
    yield "breast cine (every 30th frame)", (x for p in sorted(videos.glob("breast_cine/*/*.mp4"))
                                             for x in clip_frames(p, spec, stride=30))
    rows = list(csv.DictReader(open(Path(__file__).resolve().parents[2] / "training/split_csv/busi_uclm.csv")))
    data = SHARED / "datasets"
    for mode in ("none", "auto"):
        yield f"union train rows, ROI {mode}", (model_inputs(cv2.imread(str(data / r["file"]), 0), spec, mode)[0]
                                               for r in rows if r["split"] == "train")
        polish = [p for p in sorted((data / "breast_lesions_usg").glob("*/*.png")) if "mask" not in p.name]
        yield f"Polish lesions, ROI {mode}", (model_inputs(cv2.imread(str(p), 0), spec, mode)[0] for p in polish)


def main() -> int:
    spec = load_engine("busi").meta
    print("| set | frames or images | dark top corners | sag at ±35 % ≥ 2 % of the height |\n|---|---|---|---|")
    for name, xs in sets(spec):
        gs = [grey(x, spec.mean[0], spec.std[0]) for x in xs]
        c = np.mean([corners(g) for g in gs])
        s = np.mean([sag(g[::2, ::2]) >= 0.02 for g in gs])
        print(f"| {name} | {len(gs)} | {100 * c:.1f} % | {100 * s:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
