"""How well ``roi.detect_roi`` finds the ultrasound image: measured against boxes drawn by hand.

The boxes (``assets/roi_boxes.json``) were drawn by looking at frames of every shared clip (``../shared/videos``),
every sample clip (``assets/sample_videos``) and a few stills (BUSI, BUS-UCLM, BrEaST-Lesions-USG); they are ground
truth, not detector output. For each source the detector sees what the runtime gives it: a clip's first
``roi_frames`` (8) frames, like ``Preprocessor``, and also 8 frames from the middle of the clip (the ROI must not
depend on where a stream is joined); a still is one frame. Per source and window:

* IoU of the detected ROI with the hand box;
* ``lost``: the share of the hand box outside the detected ROI (anatomy cut away);
* ``extra``: the share of the detected ROI outside the hand box (UI kept);
* the detector's time (median of a few runs).

Targets (issue #13): mean IoU >= 0.9 and no window loses more than 5 % of its box. A clip's first frame alone
(``frame0``: the provisional ROI the runtime uses until 8 frames are in) is reported too, outside the targets.
Sources under ``shared:`` are skipped when ``../shared`` is absent. ``python -m sonolens.pipeline.roi_eval`` writes
``benchmarks/roi_accuracy.md`` and ``.json`` (``--detector FILE`` scores another ``detect_roi``, e.g. a previous
version from git, and ``--before`` puts its report next to this one); ``tests/pipeline/test_roi_accuracy.py``
checks the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .roi import Roi, detect_roi

REPO = Path(__file__).resolve().parents[1]  # the source checkout (editable install)
BOXES = REPO / "assets" / "roi_boxes.json"
MIN_MEAN_IOU = 0.9
MAX_LOST = 0.05
WINDOW = 8  # Preprocessor's default roi_frames


def default_shared() -> Path:
    return Path(os.environ.get("SONOLENS_SHARED", REPO.parent / "shared"))


@dataclass
class Row:
    name: str
    kind: str
    window: str  # "start" (frames 0-7), "middle" (8 frames from the middle), "still", or "frame0" (frame 0 alone)
    frame_size: tuple[int, int]
    box: Roi
    roi: Roi
    iou: float
    lost: float
    extra: float
    ms: float
    in_targets: bool = True  # False for "frame0", which is reported but not held to the targets


def load_boxes(path: Path = BOXES) -> list[dict]:
    return json.loads(Path(path).read_text())["sources"]


def resolve(spec: str, shared: Path, repo: Path = REPO) -> Path:
    where, _, rel = spec.partition(":")
    if where == "shared":
        return shared / rel
    if where == "repo":
        return repo / rel
    raise ValueError(f"path {spec!r} must start with 'shared:' or 'repo:'")


def area(r: Roi) -> int:
    return max(0, r[2]) * max(0, r[3])


def intersection(a: Roi, b: Roi) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def iou(a: Roi, b: Roi) -> float:
    i = intersection(a, b)
    return i / (area(a) + area(b) - i)


def lost(box: Roi, roi: Roi) -> float:
    """Share of the hand ``box`` that the detected ``roi`` cuts away."""
    return 1.0 - intersection(box, roi) / area(box)


def extra(box: Roi, roi: Roi) -> float:
    """Share of the detected ``roi`` outside the hand ``box`` (UI or background kept)."""
    return 1.0 - intersection(box, roi) / area(roi)


def clip_windows(path: Path, size: int = WINDOW) -> dict[str, list[np.ndarray]]:
    """The first ``size`` RGB frames of a clip and ``size`` frames from its middle (decoded in one pass)."""
    import av  # the runtime's decoder; imported here so the metrics above need nothing but numpy

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = int(stream.frames or 0)
        mid = max(size, total // 2 - size // 2) if total >= 2 * size else None
        start: list[np.ndarray] = []
        middle: list[np.ndarray] = []
        for i, frame in enumerate(container.decode(stream)):
            if i < size:
                start.append(frame.to_ndarray(format="rgb24"))
            elif mid is not None and mid <= i < mid + size:
                middle.append(frame.to_ndarray(format="rgb24"))
            elif i >= size and (mid is None or i >= mid + size):
                break
    out = {"start": start}
    if len(middle) == size:
        out["middle"] = middle
    return out


def still_frame(path: Path) -> np.ndarray:
    from .sources.stills import read_still  # the runtime's still reader (EXIF, 16-bit, gray)

    pixels = read_still(path)
    if pixels is None:
        raise ValueError(f"{path} is not a readable image")
    return pixels


def time_detect(frames: Sequence[np.ndarray], detector: Callable[[Sequence[np.ndarray]], Roi] = detect_roi,
                repeat: int = 5) -> tuple[Roi, float]:
    """The detector's ROI and its median wall time in ms over ``repeat`` runs (``0``: the one run that gives the
    ROI, cold)."""
    t0 = time.perf_counter()
    roi = detector(frames)
    times = [(time.perf_counter() - t0) * 1000.0] if repeat <= 0 else []
    for _ in range(repeat):
        t0 = time.perf_counter()
        detector(frames)
        times.append((time.perf_counter() - t0) * 1000.0)
    return tuple(int(v) for v in roi), statistics.median(times)  # type: ignore[return-value]


def evaluate(sources: list[dict] | None = None, shared: Path | None = None,
             detector: Callable[[Sequence[np.ndarray]], Roi] = detect_roi, repeat: int = 5, repo: Path = REPO
             ) -> tuple[list[Row], list[str]]:
    """Rows for every available source and window, and the names of the sources that were skipped. ``repo``: the
    checkout holding ``repo:`` paths (a non-editable install has no ``assets/``)."""
    sources = load_boxes() if sources is None else sources
    shared = default_shared() if shared is None else shared
    rows: list[Row] = []
    skipped: list[str] = []
    for src in sources:
        path = resolve(src["path"], shared, repo)
        if not path.exists():
            skipped.append(src["name"])
            continue
        bx, by, bw, bh = (int(v) for v in src["box"])
        box: Roi = (bx, by, bw, bh)
        windows = clip_windows(path) if src["kind"] == "clip" else {"still": [still_frame(path)]}
        if "start" in windows:
            windows["frame0"] = windows["start"][:1]
        for window, frames in windows.items():
            h, w = frames[0].shape[:2]
            if [w, h] != list(src["frame_size"]):
                raise ValueError(f"{src['name']}: frames are {w}x{h}, the box was drawn on {src['frame_size']}")
            roi, ms = time_detect(frames, detector, repeat)
            rows.append(Row(src["name"], src["kind"], window, (w, h), box, roi, iou(box, roi), lost(box, roi),
                            extra(box, roi), ms, window != "frame0"))
    return rows, skipped


def summary(all_rows: list[Row]) -> dict:
    """Target figures over the rows held to the targets (not ``frame0``), plus ``frame0``'s own means."""
    rows = [r for r in all_rows if r.in_targets]
    if not rows:
        return {"sources": 0}
    worst = max(rows, key=lambda r: r.lost)
    start_rows = [r for r in rows if r.window != "middle"]
    first = [r for r in all_rows if not r.in_targets]
    return {
        "sources": len({r.name for r in rows}),
        "windows": len(rows),
        "mean_iou": statistics.fmean(r.iou for r in rows),
        "mean_iou_runtime_window": statistics.fmean(r.iou for r in start_rows),
        "min_iou": min(r.iou for r in rows),
        "max_lost": worst.lost,
        "max_lost_at": f"{worst.name} ({worst.window})",
        "max_extra": max(r.extra for r in rows),
        "frame0_mean_iou": statistics.fmean(r.iou for r in first) if first else None,
        "frame0_max_lost": max(r.lost for r in first) if first else None,
        "targets": {"mean_iou_min": MIN_MEAN_IOU, "lost_max": MAX_LOST},
        "meets_targets": statistics.fmean(r.iou for r in rows) >= MIN_MEAN_IOU and worst.lost <= MAX_LOST,
    }


def _timing_960x720(shared: Path, detector: Callable[[Sequence[np.ndarray]], Roi] = detect_roi,
                    repeat: int = 20) -> dict | None:
    """Median and p90 time of the detector on 8 frames of the 960x720 SonoSite capture."""
    path = shared / "videos" / "itkpocus_sonosite-anon-eye1-video.mp4"
    if not path.exists():
        return None
    frames = clip_windows(path)["start"]
    detector(frames)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        detector(frames)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()  # the median is what a run sees; the minimum is the cost without other work on the cores
    return {"frames": len(frames), "size": "960x720", "median_ms": statistics.median(times),
            "p90_ms": times[int(0.9 * (len(times) - 1))], "min_ms": times[0], "runs": repeat}


def _fmt_roi(r: Sequence[int]) -> str:
    return "[" + ",".join(str(v) for v in r) + "]"


def markdown(rows: list[Row], skipped: list[str], summ: dict, timing: dict | None, before: dict | None) -> str:
    lines = [
        "# ROI detection accuracy",
        "",
        "Made by `python -m sonolens.pipeline.roi_eval` (issue #13). Ground truth: the hand-drawn boxes in",
        "`assets/roi_boxes.json` (how they were drawn is written there). A clip is scored on its first 8 frames (what",
        "`Preprocessor` uses: `start`) and on 8 frames from its middle (`middle`); a still on itself (`still`).",
        "`frame0`: a clip's first frame alone, the provisional ROI used until 8 frames are in; reported, not held to",
        "the targets. IoU: detected ROI vs hand box. Lost: share of the hand box outside the ROI (anatomy cut away).",
        "Extra: share of the ROI outside the hand box (UI or background kept). Targets: mean IoU >= "
        f"{MIN_MEAN_IOU} and lost <= {MAX_LOST:.0%} in every `start`/`middle`/`still` row.",
        "",
    ]
    if summ.get("sources"):
        lines.append(
            f"**Mean IoU {summ['mean_iou']:.3f}** (start and still rows only: {summ['mean_iou_runtime_window']:.3f}), "
            f"min IoU {summ['min_iou']:.3f}, **max lost {summ['max_lost']:.1%}** ({summ['max_lost_at']}), "
            f"max extra {summ['max_extra']:.1%} over {summ['windows']} windows of {summ['sources']} sources: "
            + ("targets met." if summ["meets_targets"] else "targets **not** met."))
        if summ.get("frame0_mean_iou") is not None:
            lines.append(f"`frame0` rows: mean IoU {summ['frame0_mean_iou']:.3f}, max lost "
                         f"{summ['frame0_max_lost']:.1%}.")
        lines.append("")
    if before and before.get("summary", {}).get("sources"):
        b = before["summary"]
        lines += [f"Before ({before.get('detector') or 'the previous detector'}): mean IoU {b['mean_iou']:.3f}, "
                  f"min IoU {b['min_iou']:.3f}, max lost {b['max_lost']:.1%} ({b['max_lost_at']})"
                  + (f"; `frame0` mean IoU {b['frame0_mean_iou']:.3f}, max lost {b['frame0_max_lost']:.1%}"
                     if b.get("frame0_mean_iou") is not None else "") + ".", ""]
    if timing:
        lines += [f"Time of `detect_roi` on {timing['frames']} frames of {timing['size']}: median "
                  f"{timing['median_ms']:.1f} ms, p90 {timing['p90_ms']:.1f} ms, min "
                  f"{timing.get('min_ms', float('nan')):.1f} ms ({timing['runs']} runs, "
                  f"{platform.machine()}, {os.cpu_count()} CPUs visible, other work running)."
                  + (f" Before: median {before['timing_960x720_8_frames']['median_ms']:.1f} ms, p90 "
                     f"{before['timing_960x720_8_frames']['p90_ms']:.1f} ms, min "
                     f"{before['timing_960x720_8_frames'].get('min_ms', float('nan')):.1f} ms."
                     if before and before.get("timing_960x720_8_frames") else ""), ""]
    head = ["source", "window", "frame", "hand box", "ROI", "IoU", "lost", "extra"]
    if before:
        head += ["before: ROI", "before: IoU", "before: lost"]
    head.append("ms")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    prev = {(r["name"], r["window"]): r for r in before.get("rows", [])} if before else {}
    for r in rows:
        cells = [r.name, r.window if r.in_targets else f"({r.window})", f"{r.frame_size[0]}x{r.frame_size[1]}",
                 _fmt_roi(r.box), _fmt_roi(r.roi), f"{r.iou:.3f}", f"{r.lost:.1%}", f"{r.extra:.1%}"]
        if before:
            b = prev.get((r.name, r.window))
            cells += [_fmt_roi(b["roi"]), f"{b['iou']:.3f}", f"{b['lost']:.1%}"] if b else ["-", "-", "-"]
        cells.append(f"{r.ms:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Skipped (file absent): " + ", ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def load_detector(path: str) -> Callable[[Sequence[np.ndarray]], Roi]:
    """``detect_roi`` of another version of ``roi.py`` (e.g. ``git show REV:pipeline/roi.py > old.py``), loaded
    inside this package so its relative imports resolve."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{__package__}._roi_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.detect_roi


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sonolens.pipeline.roi_eval",
                                description="Score detect_roi against the hand-drawn boxes (issue #13).")
    p.add_argument("--boxes", default=str(BOXES), help="hand-drawn boxes (default: the checkout's assets/)")
    p.add_argument("--shared", default=None, help="../shared (default: SONOLENS_SHARED or ../shared)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "roi_accuracy"),
                   help="report path without extension: writes .md and .json")
    p.add_argument("--detector", default=None, help="a roi.py file whose detect_roi to score instead")
    p.add_argument("--label", default=None, help="what the detector is, recorded in the report")
    p.add_argument("--before", default=None, help="a previous report's .json, shown next to this one")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per window")
    args = p.parse_args(argv)
    shared = Path(args.shared) if args.shared else default_shared()
    detector = load_detector(args.detector) if args.detector else detect_roi
    rows, skipped = evaluate(load_boxes(Path(args.boxes)), shared, detector, repeat=args.repeat)
    summ = summary(rows)
    timing = _timing_960x720(shared, detector)
    before = json.loads(Path(args.before).read_text()) if args.before else None
    report: dict = {"detector": args.label or (args.detector or "sonolens.pipeline.roi.detect_roi"),
                    "summary": summ, "timing_960x720_8_frames": timing, "skipped": skipped,
                    "rows": [asdict(r) for r in rows]}
    if before:
        report["before"] = {k: before.get(k) for k in ("detector", "summary", "timing_960x720_8_frames", "rows")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, skipped, summ, timing, before))
    print(f"mean IoU {summ.get('mean_iou', float('nan')):.3f}, max lost {summ.get('max_lost', float('nan')):.1%}"
          f" over {summ.get('windows', 0)} windows; skipped {len(skipped)}; wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
