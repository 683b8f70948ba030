"""Errors, exit codes and the scripted run of the grid (``grid.GridWindow``): ``automation.Automation`` with the
rules of several streams.

* A stream that cannot be opened is an error dialog (non-blocking in a scripted run, and one line on stderr) and its
  cell says so; the other streams play on. A scripted run then ends with exit code 2 — at once when no stream could
  be opened, else when it would have ended anyway.
* A stream that ends or fails says so in its cell; a scripted run ends when every stream has ended.
* ``--exit-after-frames N``: the run ends once every stream has displayed N frames (or has ended, or never opened).
* Exit code at the end: 2 as above; else 1 when a stream failed or an opened stream displayed nothing; else 0.
* ``--report``: the window's figures plus a section per stream (``streams``), each with what the single viewer's
  report holds for its one stream (display rate, frames displayed and dropped, latency, its pipeline's report).

Messages name their stream: ``stream 2: …`` (as ``sonolens run`` does with several sources).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from PyQt6.QtCore import QTimer

from sonolens.pipeline.redact import redact_credentials

from .automation import END_PAINT_MS, Automation, EndSteps, contention_lines, summary_lines

if TYPE_CHECKING:
    from PyQt6.QtWidgets import QWidget

    from .hud import DisplayStats
    from .model import PlaybackState, ViewerModel
    from .options import ViewerOptions


class GridAutomation(Automation):
    """``Automation`` for several streams; ``stats`` counts every cell's paints, ``cell_stats`` each cell's."""

    def __init__(self, opts: ViewerOptions, model: ViewerModel, stats: DisplayStats, parent: QWidget, view: Any,
                 end: EndSteps, cell_stats: list[DisplayStats]) -> None:
        super().__init__(opts, model, stats, parent, view, end)
        self.cell_stats = cell_stats

    # -- errors ----------------------------------------------------------------------------------------------------
    def open_failed_in(self, k: int, message: str) -> None:
        """Stream ``k`` could not be opened: a dialog; a scripted run's exit code is 2."""
        line = f"stream {k}: {message}"
        if self.opts.automation:
            self.exit_code = 2
            self.error_dialog(line)
        else:  # modal: once every stream was opened, not in the middle of opening them
            QTimer.singleShot(0, lambda: self.error_dialog(line))

    def stream_ended_in(self, k: int, error: str) -> None:
        """Slot for stream ``k``'s ``Playback.ended``: report its error; a scripted run ends with the last stream."""
        if error:
            line = f"stream {k}: {error}"
            if self.opts.automation:
                self.errors.append(line)
            else:
                self.error_dialog(line)
        if self.opts.automation and not self.finishing and self._all_done(self.opts.exit_after_frames):
            QTimer.singleShot(END_PAINT_MS, lambda: self.finish(self.rc_at_end()))

    # -- the end ---------------------------------------------------------------------------------------------------
    def _done(self, i: int, frames: int | None) -> bool:
        st = self.model.streams[i]
        return (st.source_spec is None or st.ended
                or (frames is not None and self.cell_stats[i].frames_displayed >= frames))

    def _all_done(self, frames: int | None) -> bool:
        return all(self._done(i, frames) for i in range(len(self.model.streams)))

    def frame_displayed(self) -> None:
        """After each painted frame: has every stream displayed ``--exit-after-frames`` (or ended)?"""
        n = self.opts.exit_after_frames
        if n and not self.finishing and self._all_done(n):
            self.finish(self.rc_at_end())

    def rc_at_end(self) -> int:
        if self.exit_code:
            return self.exit_code
        opened = [s for st, s in zip(self.model.streams, self.cell_stats) if st.source_spec is not None]
        if any(st.error is not None for st in self.model.streams) or not opened:
            return 1
        return 1 if any(s.frames_displayed == 0 for s in opened) else 0

    def report(self) -> dict:
        """The window's figures and one section per stream (``streams``)."""
        info = self.end.window_info()
        streams = [self._stream_report(i) for i in range(len(self.model.streams))]
        return {
            "display_fps": self.stats.display_fps,
            "frames_displayed": self.stats.frames_displayed,
            "frames_dropped": sum(s["frames_dropped"] for s in streams),
            "streams": streams,
            "selfcheck": info["selfcheck"],
            "window": info["window"],
            "errors": list(self.errors),
            "wall_s": time.perf_counter() - self._t_start,
            "warnings": info["warnings"],
            "interrupted_by": self.interrupted_by,
            "contention": self._contention,
        }

    def _stream_report(self, i: int) -> dict:
        st: PlaybackState = self.model.streams[i]
        stats = self.cell_stats[i]
        pipe = self._final_pipes[i] if i < len(self._final_pipes) else None
        return {
            "stream": i + 1,
            "source": redact_credentials(self.opts.sources[i]),  # as given, less a URL's credentials
            "opened": st.source_spec is not None,
            "display_fps": stats.display_fps,
            "frames_displayed": stats.frames_displayed,
            "frames_dropped": st.frames_dropped_queue + st.frames_skipped,
            "frames_dropped_queue": st.frames_dropped_queue,
            "frames_skipped_display": st.frames_skipped,
            "dropped_indices": list(pipe.queue.dropped_indices[:100]) if pipe else [],
            "latency_ms": stats.summary(),
            "selfcheck": {"decoded": stats.selfcheck_ok, "failed": stats.selfcheck_failed},
            "ended": st.ended,
            "error": st.error or (st.open_error if st.source_spec is None else None),
            "pipeline": pipe.report() if pipe is not None else None,
        }

    def summary(self, report: dict) -> str:
        """The lines printed at the end: the window's count, then each stream's summary."""
        lines = [f"sonolens view: {len(report['streams'])} streams, {report['frames_displayed']} frames displayed"]
        for s in report["streams"]:
            title = f"stream {s['stream']} ({s['source']})"
            lines += ["  " + ln for ln in summary_lines(s, title=title).splitlines()]
        return "\n".join(lines + contention_lines(report))


__all__ = ["GridAutomation"]
