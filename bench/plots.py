"""The benchmark's PNG plots, drawn from the assembled report: the per-stage latency CDF of the key clip's
realtime run (from its per-frame CSV), the scaling plot (frame size, concurrent streams) and the many-streams plot
(one process against N processes). Figures measured under
contention are left out, as they are from the Markdown.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.contention import NOT_A_RESULT
from sonolens.pipeline.messages import STAGES

from .cells import lookup
from .entries import contended

STAGE_ORDER = STAGES  # the pipeline's one definition (pipeline.messages.STAGES, Timings.stage_ms)


def stage_latencies_from_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Per-stage milliseconds of the processed frames in a ``sonolens run --csv`` file."""
    cols = ("t_captured_ns", "t_enqueued_ns", "t_dequeued_ns", "t_preprocessed_ns", "t_inferred_ns", "t_delivered_ns")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("status") == "processed":
                rows.append([int(row[c]) for c in cols])
    if not rows:
        return {s: np.empty(0) for s in STAGE_ORDER}
    cap, enq, deq, pre, inf, dlv = np.asarray(rows, dtype=np.int64).T
    return {"queue_wait": (deq - enq) / 1e6, "preprocess": (pre - deq) / 1e6, "inference": (inf - pre) / 1e6,
            "deliver": (dlv - inf) / 1e6, "capture_to_result": (dlv - cap) / 1e6}


def write_plots(body: dict[str, Any], cdf_csv: Path | None, out_dir: Path) -> dict[str, str]:
    """Write ``latency_cdf.png`` (from the key realtime run's per-frame CSV), ``scaling.png`` and
    ``multi_stream.png``; return ``{name: path}`` of what was written."""
    import matplotlib

    matplotlib.use("Agg")
    written: dict[str, str] = {}
    if cdf_csv is not None:
        path = _latency_cdf_plot(lookup(body, "pipeline", "key") or {}, cdf_csv, out_dir)
        if path is not None:
            written["latency_cdf"] = path
    sc = body.get("scaling")
    if sc:
        path = _scaling_plot(sc, out_dir)
        if path is not None:
            written["scaling"] = path
    ms = body.get("multi_stream")
    if ms:
        path = _multi_stream_plot(ms, out_dir)
        if path is not None:
            written["multi_stream"] = path
    return written


def _latency_cdf_plot(key: dict[str, Any], cdf_csv: Path, out_dir: Path) -> str | None:
    """``latency_cdf.png``: the CDF of every stage of the key clip's realtime run; None when it has no frame."""
    import matplotlib.pyplot as plt

    stages = stage_latencies_from_csv(cdf_csv)
    if not any(len(v) for v in stages.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for s in STAGE_ORDER:
        v = np.sort(stages[s])
        if v.size:
            v = np.maximum(v, 1e-3)  # log axis: a 0-ms queue wait is drawn at 1 µs
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post",
                    label=f"{s} (p99 {np.percentile(v, 99):.2f} ms)")
    ax.axvline(15.0, color="grey", ls="--", lw=1)
    ax.text(14.0, 0.03, "15 ms target (capture→result p99) ", color="grey", fontsize=8, ha="right")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of frames ≤ x")
    n = len(stages["capture_to_result"])
    flag = f" — {NOT_A_RESULT}" if contended(key.get("realtime_cam")) else ""
    ax.set_title(f"Per-stage latency CDF: {key.get('clip', '?')}, --realtime, CAM on, {n} frames{flag}",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out_dir / "latency_cdf.png"
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _scaling_plot(sc: dict[str, Any], out_dir: Path) -> str | None:
    """``scaling.png``: max-rate fps against frame size and against concurrent streams; None when neither has an
    uncontended figure (contended figures are not results: they are left out of the plots too)."""
    import matplotlib.pyplot as plt

    sizes = [(row["size"], lookup(row, "max_rate_cam", "fps_processed")) for row in sc.get("frame_size", [])
             if not contended(row.get("max_rate_cam"))]
    sizes = [(s, v) for s, v in sizes if v is not None]
    streams = [(row["streams"], lookup(row, "max_rate_cam", "aggregate_fps"),
                lookup(row, "max_rate_cam", "per_stream_fps_min")) for row in sc.get("streams", [])
               if not contended(row.get("max_rate_cam"))]
    streams = [t for t in streams if t[1] is not None]
    if not (sizes or streams):
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    if sizes:
        a1.bar([s for s, _ in sizes], [v for _, v in sizes], color="tab:blue")
        a1.axhline(250, color="grey", ls="--", lw=1, label="250 fps target (SonoSite clip)")
        a1.legend(fontsize=8, loc="upper right")
        a1.set_title("--max-rate fps vs frame size (CAM on)", fontsize=10)
        a1.set_ylabel("processed frames/s")
        a1.tick_params(axis="x", labelsize=8)
    if streams:
        xs = [n for n, _, _ in streams]
        a2.plot(xs, [a for _, a, _ in streams], "o-", label="aggregate")
        a2.plot(xs, [p for _, _, p in streams], "s--", label="slowest stream")
        a2.set_xticks(xs)
        a2.set_ylim(bottom=0)
        a2.set_xlabel("concurrent streams (1 ORT thread each)")
        a2.set_ylabel("processed frames/s")
        a2.set_title("--max-rate fps vs concurrent streams", fontsize=10)
        a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
    fig.tight_layout()
    path = out_dir / "scaling.png"
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _multi_stream_plot(ms: dict[str, Any], out_dir: Path) -> str | None:
    """``multi_stream.png``: the worst stream's capture→result p99 and the frames dropped against the count of
    simultaneous streams, one process beside N processes; None when no figure is a result (contended figures and
    failed runs are left out)."""
    import matplotlib.pyplot as plt

    sides = {}
    for side, label in (("one_process", "one process"), ("processes", "N separate processes")):
        pts = [(row["streams"], lookup(row, side, "capture_to_result_ms", "worst_stream", "p99"),
                lookup(row, side, "frames_dropped")) for row in ms.get("rows", [])
               if not contended(row.get(side)) and not lookup(row, side, "error")]
        pts = [t for t in pts if t[1] is not None]
        if pts:
            sides[label] = pts
    if not sides:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for (label, pts), style in zip(sides.items(), ("o-", "s--")):
        xs = [n for n, _, _ in pts]
        a1.plot(xs, [p for _, p, _ in pts], style, label=label)
        a2.plot(xs, [d for _, _, d in pts], style, label=label)
    limit = (ms.get("rule") or {}).get("p99_max_ms")
    if limit is not None:
        a1.axhline(limit, color="grey", ls="--", lw=1, label=f"{limit:g} ms target")
    src = ms.get("source") or {}
    a1.set_title(f"capture→result p99, worst stream ({src.get('width')}×{src.get('height')}, 30 Hz each)",
                 fontsize=10)
    a1.set_ylabel("ms")
    a2.set_title("frames dropped, all streams", fontsize=10)
    a2.set_ylabel("frames")
    for a in (a1, a2):
        a.set_xlabel("simultaneous streams")
        a.set_xticks(sorted({n for pts in sides.values() for n, _, _ in pts}))
        a.set_ylim(bottom=0)
        a.grid(True, alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "multi_stream.png"
    fig.savefig(path)
    plt.close(fig)
    return str(path)
