"""Per-frame timestamps in, per-stage statistics out — live (sliding window) and at the end (all frames).

Every number the HUD or a report shows comes from here, computed from the frames' own monotonic timestamps,
so a displayed FPS is the real one. ``fps_processed`` is results delivered per second over the span of the run;
``fps_in`` is frames captured per second. Dropped frames come from the queue's own counter.
"""

from __future__ import annotations

import csv
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .messages import STAGES, Timings

CSV_FIELDS = ("index", "status", "pts_s", "t_captured_ns", "t_enqueued_ns", "t_dequeued_ns", "t_preprocessed_ns",
              "t_inferred_ns", "t_delivered_ns", "top_class", "top_prob")


def percentiles(values: np.ndarray | list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan"), "mean": float("nan")}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max()), "mean": float(a.mean())}


def rate(t_ns: np.ndarray | list[int]) -> float:
    """Events per second over a span of monotonic timestamps: (n-1)/(last-first)."""
    a = np.asarray(t_ns, dtype=np.int64)
    if a.size < 2 or a[-1] <= a[0]:
        return 0.0
    return float((a.size - 1) / ((a[-1] - a[0]) / 1e9))


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRow:
    """One processed frame as telemetry keeps it: its timings and the top class (-1 / NaN without a model)."""

    index: int
    timings: Timings
    top_class: int = -1
    top_prob: float = float("nan")

    def csv_row(self) -> tuple:
        t = self.timings
        return (self.index, "processed", t.pts_s, t.t_captured_ns, t.t_enqueued_ns, t.t_dequeued_ns,
                t.t_preprocessed_ns, t.t_inferred_ns, t.t_delivered_ns, self.top_class, self.top_prob)


def stage_arrays(rows: Sequence[FrameRow]) -> dict[str, np.ndarray]:
    """{stage: float64 [N] milliseconds} over ``rows``, from ``Timings.stage_ms`` (the one definition)."""
    per_row = [r.timings.stage_ms() for r in rows]
    return {s: np.fromiter((d[s] for d in per_row), dtype=np.float64, count=len(per_row)) for s in STAGES}


class Telemetry:
    """Thread-safe collector. ``record`` is called by the worker once per delivered frame."""

    def __init__(self, window: int = 120, csv_path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._rows: list[FrameRow] = []  # every frame, for end-of-run stats
        self._window: deque[FrameRow] = deque(maxlen=window)
        self._csv_file: IO[str] | None = None
        self._csv = None
        if csv_path is not None:
            self._csv_file = open(csv_path, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(CSV_FIELDS)
        self._capture_times: deque[int] = deque(maxlen=window)
        self.extra_stages: dict[str, list[float]] = {}

    def record(self, row: FrameRow) -> None:
        """Called by the worker once per delivered frame."""
        with self._lock:
            self._rows.append(row)
            self._window.append(row)
            if self._csv is not None:
                self._csv.writerow(row.csv_row())
                if len(self._rows) % 30 == 0:  # a crash loses at most a second of rows
                    self._csv_file.flush()

    def record_drop(self, index: int, pts_s: float | None, t_captured_ns: int, t_enqueued_ns: int) -> None:
        """A frame the ``latest`` queue evicted: it gets a CSV row too, so no frame vanishes from the record."""
        with self._lock:
            if self._csv is not None:
                self._csv.writerow((index, "dropped", pts_s, t_captured_ns, t_enqueued_ns, "", "", "", "", "", ""))

    def note_capture(self, t_captured_ns: int) -> None:
        """Capture times of *all* frames (dropped included), for the live input FPS."""
        with self._lock:
            self._capture_times.append(t_captured_ns)

    def add_sample(self, stage: str, ms: float) -> None:
        """Latency measured outside the worker (e.g. capture→pixels from the viewer)."""
        with self._lock:
            self.extra_stages.setdefault(stage, []).append(ms)

    def live(self) -> dict:
        """Sliding-window stats for a HUD: fps in/processed and p50/p95 per stage."""
        with self._lock:
            rows = list(self._window)
            caps = list(self._capture_times)
        stages = stage_arrays(rows)
        return {
            "fps_in": rate(caps),
            "fps_processed": rate([r.timings.t_delivered_ns for r in rows]),
            "latency_ms": {s: percentiles(v) for s, v in stages.items()},
        }

    def live_fps(self) -> float:
        """Processed frames per second over the sliding window — cheap enough to call on every frame."""
        with self._lock:
            if len(self._window) < 2:
                return 0.0
            first, last = self._window[0].timings.t_delivered_ns, self._window[-1].timings.t_delivered_ns
            n = len(self._window)
        return (n - 1) / ((last - first) / 1e9) if last > first else 0.0

    def summary(self) -> dict:
        """All-frames stats for the end-of-run report."""
        with self._lock:
            rows = list(self._rows)
            extra = {k: list(v) for k, v in self.extra_stages.items()}
        stages = stage_arrays(rows)
        lat = {s: percentiles(v) for s, v in stages.items()}
        lat.update({k: percentiles(v) for k, v in extra.items()})
        return {
            "frames_processed": len(rows),
            "fps_processed": rate([r.timings.t_delivered_ns for r in rows]),
            "latency_ms": lat,
        }

    def close(self) -> None:
        with self._lock:
            if self._csv_file is not None:
                self._csv_file.flush()
                self._csv_file.close()
                self._csv_file = None
                self._csv = None
