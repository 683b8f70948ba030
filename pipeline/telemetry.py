"""Per-frame timestamps in, per-stage statistics out — live (sliding window) and at the end (all frames).

Memory is bounded whatever the length of a run: the end-of-run percentiles come from one log-bucketed histogram
per stage (``stats.LatencyHistogram``, within 0.5 %; count, mean and max exact), the live numbers from a fixed
window of the last frames. Every number the HUD or a report shows comes from here, computed from the frames' own
monotonic timestamps, so a displayed FPS is the real one. ``fps_processed`` is results delivered per second over
the span of the run; ``fps_in`` is frames captured per second. Dropped frames come from the queue's own counter.
"""

from __future__ import annotations

import csv
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ConfigError, SonolensError, reason
from .messages import STAGES, Result, Timings
from .outputs import unlinked, vanished_message
from .stats import LatencyHistogram

CSV_FIELDS = ("index", "status", "pts_s", "t_captured_ns", "t_enqueued_ns", "t_dequeued_ns", "t_preprocessed_ns",
              "t_inferred_ns", "t_delivered_ns", "top_class", "top_prob")
CSV_TAIL = ("cam_class", "ood_score", "state", "no_image", "file")
"""After ``CSV_FIELDS`` come ``p_<class>`` (each class's probability) and ``CSV_TAIL``."""


def csv_header(class_names: Sequence[str]) -> tuple[str, ...]:
    return (*CSV_FIELDS, *(f"p_{c}" for c in class_names), *CSV_TAIL)


def percentiles(values: np.ndarray | list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        nan = float("nan")
        return {"p50": nan, "p95": nan, "p99": nan, "max": nan, "mean": nan}
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
    """One processed frame as telemetry keeps it: its timings, every class's probability, the top class
    (-1 / NaN without a model), the CAM class, the out-of-domain score and the frame state."""

    index: int
    timings: Timings
    top_class: int = -1
    top_prob: float = float("nan")
    probs: tuple[float, ...] = ()
    cam_class: int = -1
    ood_score: float | None = None
    state: str = "ok"
    no_image: str | None = None
    file: str | None = None

    @classmethod
    def of(cls, r: Result) -> FrameRow:
        return cls(index=r.index, timings=r.timings, top_class=r.top_class, top_prob=r.top_prob,
                   probs=tuple(float(p) for p in r.probs), cam_class=r.cam_class, ood_score=r.ood_score,
                   state=r.state, no_image=r.no_image, file=r.file)

    def csv_row(self, n_classes: int) -> tuple:
        t = self.timings
        probs = self.probs if len(self.probs) == n_classes else ("",) * n_classes
        return (self.index, "processed", t.pts_s, t.t_captured_ns, t.t_enqueued_ns, t.t_dequeued_ns,
                t.t_preprocessed_ns, t.t_inferred_ns, t.t_delivered_ns, self.top_class, self.top_prob, *probs,
                self.cam_class, "" if self.ood_score is None else self.ood_score, self.state, self.no_image or "",
                self.file or "")


def stage_arrays(rows: Sequence[FrameRow]) -> dict[str, np.ndarray]:
    """{stage: float64 [N] milliseconds} over ``rows``, from ``Timings.stage_ms`` (the one definition)."""
    per_row = [r.timings.stage_ms() for r in rows]
    return {s: np.fromiter((d[s] for d in per_row), dtype=np.float64, count=len(per_row)) for s in STAGES}


class Telemetry:
    """Thread-safe collector. ``record`` is called by the worker once per delivered frame."""

    def __init__(self, window: int = 120, csv_path: str | Path | None = None,
                 class_names: Sequence[str] = ()) -> None:
        self._lock = threading.Lock()
        # end-of-run statistics in bounded memory: a histogram per stage, counts and the span of delivery times
        self._hist: dict[str, LatencyHistogram] = {s: LatencyHistogram() for s in STAGES}
        self._n = 0
        self.class_names = tuple(class_names)
        # prediction summary, bounded: frames per state, frames per top class and summed probabilities (ok frames)
        self._states: dict[str, int] = {}
        self._top_counts = np.zeros(len(self.class_names), dtype=np.int64)
        self._prob_sums = np.zeros(len(self.class_names), dtype=np.float64)
        self._n_ok = 0
        self._first_delivered_ns: int | None = None
        self._last_delivered_ns: int | None = None
        self._window: deque[FrameRow] = deque(maxlen=window)
        self._csv_file: IO[str] | None = None
        self._csv: Any = None
        self.csv_path = Path(csv_path) if csv_path is not None else None
        if self.csv_path is not None:
            try:
                self._csv_file = open(self.csv_path, "w", newline="", encoding="utf-8")
                self._csv = csv.writer(self._csv_file)
                self._csv.writerow(csv_header(self.class_names))
            except OSError as exc:
                raise ConfigError(f"cannot write the per-frame CSV to {self.csv_path}: {reason(exc)}") from None
        self._capture_times: deque[int] = deque(maxlen=window)
        self.extra_stages: dict[str, LatencyHistogram] = {}

    def record(self, row: FrameRow) -> None:
        """Called by the worker once per delivered frame."""
        stages = row.timings.stage_ms()
        with self._lock:
            for name, ms in stages.items():
                self._hist[name].add(ms)
            self._n += 1
            t = row.timings.t_delivered_ns
            if self._first_delivered_ns is None:
                self._first_delivered_ns = t
            self._last_delivered_ns = t
            self._states[row.state] = self._states.get(row.state, 0) + 1
            if row.state == "ok" and len(row.probs) == len(self.class_names) and row.top_class >= 0:
                self._n_ok += 1
                self._top_counts[row.top_class] += 1
                self._prob_sums += row.probs
            self._window.append(row)
            if self._csv is not None:
                # flushed every 30 rows: a crash loses at most a second of rows
                self._write_csv(row.csv_row(len(self.class_names)), flush=self._n % 30 == 0)

    def record_drop(self, index: int, pts_s: float | None, t_captured_ns: int, t_enqueued_ns: int,
                    file: str | None = None) -> None:
        """A frame the ``latest`` queue evicted: it gets a CSV row too, so no frame vanishes from the record."""
        with self._lock:
            if self._csv is not None:
                blanks = ("",) * (len(CSV_FIELDS) - 5 + len(self.class_names) + len(CSV_TAIL) - 1)
                self._write_csv((index, "dropped", pts_s, t_captured_ns, t_enqueued_ns, *blanks, file or ""))

    def _write_csv(self, row: tuple, flush: bool = False) -> None:
        """Write one CSV row (lock held). A write error (full disk) closes the CSV and raises one line."""
        try:
            self._csv.writerow(row)
            if flush and self._csv_file is not None:
                self._csv_file.flush()
                self._check_linked()
        except OSError as exc:
            self._abandon_csv()
            raise SonolensError(f"writing the per-frame CSV to {self.csv_path} failed: {reason(exc)}") from None

    def _check_linked(self) -> None:
        """The CSV still has a name (its folder was not removed while it was written), else one line."""
        f = self._csv_file
        if f is not None and unlinked(f.fileno()):
            self._abandon_csv()
            raise SonolensError(vanished_message("per-frame CSV", self.csv_path or "", f"its {self._n} rows are lost"))

    def _abandon_csv(self) -> None:
        f, self._csv_file, self._csv = self._csv_file, None, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def note_capture(self, t_captured_ns: int) -> None:
        """Capture times of *all* frames (dropped included), for the live input FPS."""
        with self._lock:
            self._capture_times.append(t_captured_ns)

    def add_sample(self, stage: str, ms: float) -> None:
        """Latency measured outside the worker (e.g. capture→pixels from the viewer)."""
        with self._lock:
            self.extra_stages.setdefault(stage, LatencyHistogram()).add(ms)

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
        """All-frames stats for the end-of-run report (percentiles to within 0.5 %, see ``stats``)."""
        with self._lock:
            lat = {name: h.summary() for name, h in self._hist.items()}
            lat.update({name: h.summary() for name, h in self.extra_stages.items()})
            n, t0, t1 = self._n, self._first_delivered_ns, self._last_delivered_ns
            predictions = self._prediction_summary()
        fps = (n - 1) / ((t1 - t0) / 1e9) if n >= 2 and t0 is not None and t1 is not None and t1 > t0 else 0.0
        return {"frames_processed": n, "fps_processed": fps, "latency_ms": lat, "predictions": predictions}

    def _prediction_summary(self) -> dict | None:
        """Frames per state, and over the frames with a prediction: frames per top class and mean probabilities."""
        if not self.class_names:
            return None
        ok = self._n_ok
        return {
            "frames_by_state": {s: self._states.get(s, 0) for s in ("ok", "out_of_domain", "no_image")},
            "frames_by_top_class": {c: int(k) for c, k in zip(self.class_names, self._top_counts)},
            "mean_prob": {c: (float(v / ok) if ok else None) for c, v in zip(self.class_names, self._prob_sums)},
        }

    def close(self) -> None:
        """Flush and close the CSV (idempotent); a failing flush (full disk) raises one line."""
        with self._lock:
            f = self._csv_file
            if f is None:
                return
            try:
                f.flush()
                self._check_linked()
            except OSError as exc:
                self._abandon_csv()
                raise SonolensError(f"writing the per-frame CSV to {self.csv_path} failed: {reason(exc)}") from None
            self._abandon_csv()
