"""``sonolens temporal-stability CLIP... --ema 0 0.8``: how often the overlay's top class flips on video.

Each clip runs through the real pipeline (``sonolens run CLIP --max-rate --queue block --no-cam --csv``: every
frame decoded, ROI found automatically, the model, the post-processing chain with ``--ema`` smoothing and the
state gate), once per smoothing factor. From the per-frame CSV:

* ``changes`` — frames whose top class differs from the previous frame's: the model's top class on every frame, as
  the CSV records it even where the state gate hides the overlay (frames with no class at all are skipped);
* ``changes_shown`` — the same between frames whose state is ``ok``, i.e. what the viewer actually draws (a clip
  the out-of-domain gate rejects shows no class, hence no flip);
* ``changes_per_s`` — ``changes`` over the clip's duration (frames / fps from the frame timestamps);
* ``mean_abs_dp`` — mean over consecutive frames of Σ_c |p_c(t) − p_c(t−1)| (L1 change of the shown
  probabilities): smoothing lowers it even when the top class never flips;
* frames per top class and per state.

The sample clips are SIMULATED (``assets/sample_videos``, the project's B-mode phantom), not patient data.
Outputs: ``--json`` (everything, with the dataset/clip as a column) and ``--md`` (the table).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError


def _flips(top: Sequence[int]) -> int:
    return int(sum(a != b for a, b in zip(top, top[1:])))


def stability_from_rows(rows: Sequence[dict[str, str]], class_names: Sequence[str]) -> dict[str, Any]:
    """The measures above from the rows of ``sonolens run --csv``.

    ``changes`` counts the model's top class on every processed frame (the CSV keeps it even where the state gate
    hides the overlay); ``changes_shown`` only between frames whose state is ``ok`` (what a user sees)."""
    processed = [r for r in rows if r.get("status", "processed") == "processed"]
    pts = [float(r["pts_s"]) for r in processed if r.get("pts_s") not in (None, "")]
    predicted = [r for r in processed if r.get("top_class", "") != ""]
    top = [int(float(r["top_class"])) for r in predicted]
    shown = [int(float(r["top_class"])) for r in predicted if (r.get("state") or "ok") == "ok"]
    prob_cols = [f"p_{c}" for c in class_names]
    probs = np.array([[float(r[c]) for c in prob_cols] for r in predicted], float) if predicted else np.zeros((0, 0))
    changes, changes_shown = _flips(top), _flips(shown)
    if len(pts) >= 2:
        step = float(np.median(np.diff(sorted(pts))))
        duration = max(pts) - min(pts) + step
    else:
        duration = float("nan")
    states: dict[str, int] = {}
    for r in processed:
        states[r.get("state") or "ok"] = states.get(r.get("state") or "ok", 0) + 1
    return {
        "frames": len(processed),
        "frames_predicted": len(predicted),
        "frames_shown": len(shown),
        "duration_s": duration,
        "changes": changes,
        "changes_per_s": changes / duration if duration and duration > 0 else float("nan"),
        "changes_shown": changes_shown,
        "mean_abs_dp": float(np.abs(np.diff(probs, axis=0)).sum(axis=1).mean()) if len(probs) >= 2 else 0.0,
        "frames_by_top_class": {c: top.count(k) for k, c in enumerate(class_names)},
        "frames_by_state": states,
    }


def run_clip(clip: str | Path, model: str, ema: float, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``sonolens run`` of ``clip``; returns (stability measures, the run's JSON report)."""
    from sonolens.pipeline.run_cli import cli_main as run_main

    tag = f"{Path(clip).stem}_ema{ema:g}"
    csv_path, json_path = workdir / f"{tag}.csv", workdir / f"{tag}.json"
    argv = [str(clip), "--model", model, "--max-rate", "--queue", "block", "--no-cam", "--ema", str(ema),
            "--csv", str(csv_path), "--json", str(json_path), "--quiet", "--threads", "1"]
    rc = run_main(argv)
    if rc not in (0, None):
        raise ConfigError(f"sonolens run {clip} exited with {rc}")
    report = json.loads(json_path.read_text(encoding="utf-8"))
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classes = [c[2:] for c in (rows[0].keys() if rows else []) if c.startswith("p_")]
    return stability_from_rows(rows, classes), report


def markdown_table(result: dict[str, Any]) -> str:
    lines = ["| dataset | clip | EMA | frames | seconds | top-class changes | changes / s | mean Σ|Δp| per frame | "
             "frames per top class | frames shown (state ok) | changes between shown frames |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        s = r["stability"]
        by = ", ".join(f"{k} {v}" for k, v in s["frames_by_top_class"].items() if v)
        lines.append(f"| {r['dataset']} | {r['clip']} | {r['ema']:g} | {s['frames']} | {s['duration_s']:.1f} | "
                     f"{s['changes']} | "
                     f"{s['changes_per_s']:.2f} | {s['mean_abs_dp']:.4f} | {by} | {s['frames_shown']} | "
                     f"{s['changes_shown']} |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens temporal-stability",
        description="Top-class changes per second (and frame-to-frame probability change) of a model on clips, "
                    "through the real pipeline, for each EMA smoothing factor. Research use only.")
    p.add_argument("clips", nargs="+", help="video files")
    p.add_argument("--model", default="busi", help="ONNX model file or bundled name (default: busi)")
    p.add_argument("--ema", nargs="+", type=float, default=[0.0, 0.8], help="smoothing factors (default: 0 0.8)")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    p.add_argument("--keep-csv", default=None, help="folder to keep the per-frame CSVs in")
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    for e in args.ema:
        if not 0.0 <= e < 1.0:
            raise ConfigError(f"--ema {e}: a smoothing factor is in [0, 1)")
    result: dict[str, Any] = {"model": args.model, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep_csv) if args.keep_csv else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for clip in args.clips:
            if not Path(clip).is_file():
                raise ConfigError(f"clip {clip} not found")
            for ema in args.ema:
                stab, report = run_clip(clip, args.model, ema, work)
                result["runs"].append({"clip": Path(clip).name, "dataset": "sample_videos (simulated)", "ema": ema,
                                       "stability": stab, "predictions": report.get("predictions"),
                                       "roi": report.get("roi"), "gate": report.get("gate")})
    table = markdown_table(result)
    print(table, end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
