"""The viewer's own measurements (display side) and the HUD text. No Qt here: plain numbers, testable anywhere.

The pipeline's telemetry measures up to the moment a result is handed to the sinks. What the user sees depends
on more: whether the GUI painted that frame at all, when, and when its pixels reached the window. ``DisplayStats``
records exactly that, from timestamps taken in the paint event and after the self-check grab.
"""

from __future__ import annotations

import csv
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from sonolens.pipeline.messages import Timings
from sonolens.pipeline.outputs import unlinked, vanished_message
from sonolens.pipeline.telemetry import percentiles, rate


class RateMeter:
    """Events per second over the last ``window`` events (and never older than ``max_age_s``)."""

    def __init__(self, window: int = 60, max_age_s: float = 2.0) -> None:
        self._t: deque[int] = deque(maxlen=window)
        self.max_age_ns = int(max_age_s * 1e9)

    def tick(self, t_ns: int | None = None) -> None:
        self._t.append(time.perf_counter_ns() if t_ns is None else t_ns)

    def rate(self, now_ns: int | None = None) -> float:
        now = time.perf_counter_ns() if now_ns is None else now_ns
        while self._t and now - self._t[0] > self.max_age_ns:
            self._t.popleft()
        return rate(list(self._t))

    def last_rate(self) -> float:
        """The rate as it was at the last event (what a HUD keeps showing once events stop: a pause, the end of a
        stream), without dropping anything."""
        if not self._t:
            return 0.0
        last = self._t[-1]
        return rate([t for t in self._t if last - t <= self.max_age_ns])


class CounterRate:
    """Rate of a monotonically increasing counter sampled now and then (e.g. ``capture.frames_in``)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._samples: deque[tuple[int, int]] = deque()
        self.window_ns = int(window_s * 1e9)

    def sample(self, count: int, t_ns: int | None = None) -> float:
        t = time.perf_counter_ns() if t_ns is None else t_ns
        self._samples.append((t, count))
        while len(self._samples) > 2 and t - self._samples[0][0] > self.window_ns:
            self._samples.popleft()
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / ((t1 - t0) / 1e9) if t1 > t0 else 0.0


@dataclass
class DisplayStats:
    """Everything the viewer measures about display, for the HUD (sliding) and the report (whole run)."""

    window: int = 120
    paint_times_ns: list[int] = field(default_factory=list)  # one per *new* frame painted
    frames_displayed: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)  # whole run, ms
    selfcheck_ok: int = 0
    selfcheck_failed: int = 0

    def __post_init__(self) -> None:
        self.meter = RateMeter(60)
        self._recent: dict[str, deque[float]] = {}

    def painted(self, t_ns: int) -> None:
        self.frames_displayed += 1
        self.paint_times_ns.append(t_ns)
        self.meter.tick(t_ns)

    def add(self, stage: str, ms: float) -> None:
        if ms is None or not math.isfinite(ms):
            return
        self.stages.setdefault(stage, []).append(float(ms))
        self._recent.setdefault(stage, deque(maxlen=self.window)).append(float(ms))

    def add_display(self, t: Timings, t_ready_ns: int, t_paint_ns: int) -> None:
        """The display-side stages of a painted frame: its timings, when the worker finished rendering it, when it
        was painted."""
        self.add("result_to_paint", (t_paint_ns - t.t_delivered_ns) / 1e6)
        self.add("render", (t_ready_ns - t.t_delivered_ns) / 1e6)  # worker side: blend, scale, QImage
        self.add("ready_to_paint", (t_paint_ns - t_ready_ns) / 1e6)  # signal delivery + paint
        self.add("capture_to_paint", (t_paint_ns - t.t_captured_ns) / 1e6)

    def live(self, stage: str) -> dict[str, float]:
        return percentiles(list(self._recent.get(stage, ())))

    @property
    def display_fps(self) -> float:
        """New frames painted per second over the whole run (first to last paint)."""
        return rate(self.paint_times_ns)

    def summary(self) -> dict:
        out = {k: dict(percentiles(v), n=len(v)) for k, v in self.stages.items()}
        return out


def fmt_ms(stats: dict[str, float]) -> str:
    p50, p95 = stats.get("p50", float("nan")), stats.get("p95", float("nan"))
    if not np.isfinite(p50):
        return "    –      –"
    return f"{p50:6.1f} {p95:6.1f}"


HUD_STAGES = (("queue wait", "queue_wait"), ("preprocess", "preprocess"), ("inference", "inference"),
              ("capture→result", "capture_to_result"))


def hud_lines(*, fps_in: float, fps_processed: float, fps_display: float, dropped_pipeline: int,
              skipped_display: int, pipeline_latency: dict[str, dict], display_latency: dict[str, dict],
              speed: float = 1.0) -> list[str]:
    """Monospace HUD rows: rates, drops, then per-stage p50/p95 (ms) over the sliding window."""
    lines = [
        f"fps  in {fps_in:5.1f}  proc {fps_processed:5.1f}  disp {fps_display:5.1f}",
        f"dropped {dropped_pipeline:d} (queue) + {skipped_display:d} (display)" + (f"   speed ×{speed:g}"
                                                                                  if speed != 1.0 else ""),
        "latency ms          p50    p95",
    ]
    for label, key in HUD_STAGES:
        if key in pipeline_latency:
            lines.append(f"  {label:<16}{fmt_ms(pipeline_latency[key])}")
    for label, key in (("result→paint", "result_to_paint"), ("capture→pixels", "capture_to_pixels")):
        if key in display_latency:
            lines.append(f"  {label:<16}{fmt_ms(display_latency[key])}")
    return lines


def fmt_p99(stats: dict[str, float] | None) -> str:
    """A stage's p99 in ms, "–" before there is one."""
    p99 = (stats or {}).get("p99", float("nan"))
    return f"{p99:.0f} ms" if np.isfinite(p99) else "–"


def stream_line(k: int, name: str, fps_display: float, dropped: int, capture_to_result: dict[str, float] | None
                ) -> str:
    """The line under a grid cell: the stream's number and name, display rate, frames dropped (queue + display)
    and capture→result p99 over the sliding window."""
    return (f"{k} · {name} · {fps_display:.1f} fps · dropped {dropped} · "
            f"capture→result p99 {fmt_p99(capture_to_result)}")


STREAM_HUD_HEADER = "latency ms".ljust(17) + "   p50    p95"  # over ``stream_hud_lines``' latency rows


def stream_hud_lines(k: int, name: str, *, fps_in: float, fps_processed: float, fps_display: float,
                     dropped_pipeline: int, skipped_display: int, pipeline_latency: dict[str, dict],
                     display_latency: dict[str, dict]) -> list[str]:
    """The grid's side panel, one stream: rates, drops and capture→result (and capture→pixels) p50/p95 in ms."""
    lines = [f"{k} {name}", f"  fps in {fps_in:4.1f} proc {fps_processed:4.1f} disp {fps_display:4.1f}",
             f"  dropped {dropped_pipeline} (queue) + {skipped_display} (display)"]
    for label, stats in (("capture→result", pipeline_latency.get("capture_to_result")),
                         ("capture→pixels", display_latency.get("capture_to_pixels"))):
        if stats is not None:
            lines.append(f"  {label:<15}{fmt_ms(stats)}")
    return lines


DISPLAY_CSV_FIELDS = ("index", "file", "t_captured_ns", "t_delivered_ns", "t_painted_ns", "result_to_paint_ms",
                      "capture_to_paint_ms", "capture_to_pixels_ms")


def display_csv_path(csv_path: str | None) -> str | None:
    """``FRAMES.csv`` → ``FRAMES_display.csv``: the viewer's per-painted-frame rows beside the pipeline's."""
    if not csv_path:
        return None
    p = Path(csv_path)
    return str(p.with_name(f"{p.stem}_display{p.suffix or '.csv'}"))


class DisplayCsv:
    """``view --csv``: one row per painted frame with what the viewer measured (``DISPLAY_CSV_FIELDS``; the
    pipeline's own stages are in the pipeline's CSV, joined by ``index``). Flushed every 30 rows; a write error (a
    full disk) or a vanished file stops it and is kept in ``error`` for the exit (one line, exit 2)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self.error: str | None = None
        self._file: IO[str] | None = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file)
        self._csv.writerow(DISPLAY_CSV_FIELDS)

    def row(self, index: int, file: str | None, t_captured_ns: int, t_delivered_ns: int, t_painted_ns: int,
            capture_to_pixels_ms: float | None) -> None:
        if self._file is None:
            return
        try:
            self._csv.writerow((index, file or "", t_captured_ns, t_delivered_ns, t_painted_ns,
                                f"{(t_painted_ns - t_delivered_ns) / 1e6:.3f}",
                                f"{(t_painted_ns - t_captured_ns) / 1e6:.3f}",
                                "" if capture_to_pixels_ms is None else f"{capture_to_pixels_ms:.3f}"))
            self.rows += 1
            if self.rows % 30 == 0:
                self._check()
        except OSError as exc:
            self._stop(f"writing the display CSV {self.path} failed: {exc.strerror or exc}")

    def _check(self) -> None:
        assert self._file is not None
        self._file.flush()
        if unlinked(self._file.fileno()):
            self._stop(vanished_message("display CSV", self.path, f"its {self.rows} rows are lost"))

    def _stop(self, why: str) -> None:
        self.error = self.error or why
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> str | None:
        """Flush and close; the error, if any (None: every row is on disk)."""
        if self._file is not None:
            try:
                self._check()
            except OSError as exc:
                self._stop(f"writing the display CSV {self.path} failed: {exc.strerror or exc}")
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()
            except OSError as exc:
                self.error = self.error or f"writing the display CSV {self.path} failed: {exc.strerror or exc}"
        return self.error


__all__ = ["RateMeter", "CounterRate", "DisplayCsv", "DisplayStats", "display_csv_path", "hud_lines", "fmt_ms",
           "fmt_p99", "stream_hud_lines", "stream_line", "STREAM_HUD_HEADER"]
