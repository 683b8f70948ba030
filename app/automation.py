"""Errors, exit codes and the scripted run: ``--exit-after-frames/-seconds``, ``--screenshot``, ``--report``.

With any of those flags (``opts.automation``) nobody is at the window: error dialogs do not block (and each
message is also one line on stderr), and the exit code says how the run went — 0 when frames were shown and the
source ended cleanly, 1 when none were or the source failed, 2 when the model or source could not be opened.

``finish`` is the one way out, for scripted runs, a normal close, Ctrl-C/SIGTERM (``interrupt``: exit code
128 + N, see ``app.signals``) and a study log that cannot be written (``study_failed``: exit code 2) alike: freeze
the run, log and measure every painted frame, grab the screenshot, close recordings and the pipeline, write the
study log's end and the report. The session's state (exit code, finishing, errors) lives in the viewer model's
``session`` part; what the window does at the end comes in as ``EndSteps`` (the window wires them), so this module
calls no other controller.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QMessageBox

from sonolens.pipeline.contention import CpuWatch, judge
from sonolens.pipeline.stream import Pipeline

from .model import state_field
from .widgets import RED, style_dialog

if TYPE_CHECKING:
    from PyQt6.QtWidgets import QWidget

    from .hud import DisplayStats
    from .model import ViewerModel
    from .options import ViewerOptions

END_PAINT_MS = 200  # after the source ended, let its last frame paint before finishing


@dataclass(frozen=True)
class EndSteps:
    """What the window does when the session ends, called by ``Automation.finish`` in this order."""

    freeze: Callable[[], None]  # pause capture and display; log and measure every painted frame; the last HUD
    screenshot: Callable[[str], bool]  # grab the window into a PNG; False when it could not be written
    close_outputs: Callable[[], None]  # every recording complete, the pipeline stopped
    close_study: Callable[..., None]  # the study log's end record: (frames_displayed, exit_code, **summary)
    close_display_csv: Callable[[], str | None]  # the display CSV (if any) closed; its error, if it failed
    window_info: Callable[[], dict]  # for the report: "selfcheck", "window" (size, platform, screen), "warnings"
    study_report: Callable[[], dict | None]
    exit: Callable[[int], None]  # leave the event loop with the exit code


class Automation:
    """Error reporting and the end of the session (``finish``)."""

    finishing: state_field[bool] = state_field("finishing")
    interrupted_by: state_field[str | None] = state_field("interrupted_by")  # SIGINT / SIGTERM ended the session
    exit_code: state_field[int] = state_field("exit_code")

    def __init__(self, opts: ViewerOptions, model: ViewerModel, stats: DisplayStats, parent: QWidget, view: Any,
                 end: EndSteps) -> None:
        self.opts, self.model, self.stats, self.parent, self.view, self.end = opts, model, stats, parent, view, end
        self.state = model.session
        self.errors: list[str] = model.session.errors
        self._printed: set[str] = set()
        self._final_pipe: Pipeline | None = None  # the pipeline of the run, kept for the report
        self._final_pipes: list[Pipeline | None] = []  # each stream's (the grid)
        self._t_start = time.perf_counter()
        # what the session got from the CPU (the same record and verdict as each figure of 'sonolens bench')
        self._cpu = CpuWatch(poll=True) if self.opts.report else None
        self._contention: dict | None = None
        self.error_box: QMessageBox | None = None
        if self.opts.exit_after_seconds:
            QTimer.singleShot(int(self.opts.exit_after_seconds * 1000), lambda: self.finish(self.rc_at_end()))

    # -- errors ----------------------------------------------------------------------------------------------------
    def error_dialog(self, message: str) -> None:
        """An error the user must see. Modal when someone is there; in an automated run it never blocks and the
        message also goes to stderr as one line."""
        self.errors.append(message)
        if self.opts.automation:
            self._print_error(message)
            box = QMessageBox(QMessageBox.Icon.Critical, "sonolens", message, QMessageBox.StandardButton.Ok,
                              self.parent)
            style_dialog(box)
            box.setModal(False)
            box.show()
            self.error_box = box
        else:  # modal; readable through the application's dark palette (``main.make_app``)
            QMessageBox.critical(self.parent, "sonolens", message)

    def _print_error(self, message: str) -> None:
        if message not in self._printed:
            self._printed.add(message)
            print(f"sonolens: error: {message}", file=sys.stderr)

    def fatal(self, message: str, exc: Exception | None = None) -> None:
        """Cannot continue (no usable model): one line on stderr, a dialog, exit code 2 (or the error's own)."""
        self.exit_code = getattr(exc, "exit_code", 2) if exc is not None else 2
        self._print_error(message)
        self.error_dialog(message)
        QTimer.singleShot(0, lambda: self.finish(self.exit_code))

    def open_failed(self, spec: str, message: str, nothing_playing: bool) -> None:
        """A source could not be opened: say so; an automated run ends with exit code 2."""
        self.error_dialog(message)
        if nothing_playing:
            view = self.view
            view.placeholder = f"Could not open {spec}: {message}\nOpen a file (Ctrl+O) or a camera (Ctrl+K)."
            view.update()
        if self.opts.automation:
            self.exit_code = 2
            QTimer.singleShot(0, lambda: self.finish(2))

    def study_failed(self, message: str) -> None:
        """Slot for ``StudySession.failed``: the study log could not be written (a full disk). The session is
        over (its end record is written): show the error in the window, one line on stderr, exit code 2."""
        view = self.view
        view.state_text, view.state_color = f"study log stopped: {message}", RED
        view.update()
        if not self.finishing:
            self.fatal(message)

    def interrupt(self, signum: int) -> None:
        """SIGINT or SIGTERM: the normal way out (recordings, report, study log end), exit code 128 + N."""
        if self.finishing:
            return
        self.interrupted_by = signal_name(signum)
        self.exit_code = 128 + int(signum)
        self.finish(self.exit_code)

    def stream_ended(self, error: str) -> None:
        """Slot for ``Playback.ended``: report a source error; an automated run finishes."""
        if error:
            if self.opts.automation:
                self.errors.append(error)
            else:
                self.error_dialog(error)
        if self.opts.automation and not self.finishing:
            QTimer.singleShot(END_PAINT_MS, lambda: self.finish(self.rc_at_end()))

    # -- the end ---------------------------------------------------------------------------------------------------
    def frame_displayed(self) -> None:
        """After each painted frame: ``--exit-after-frames`` reached?"""
        n = self.opts.exit_after_frames
        if n and self.stats.frames_displayed >= n and not self.finishing:
            self.finish(self.rc_at_end())

    def rc_at_end(self) -> int:
        if self.exit_code:
            return self.exit_code
        if self.model.playback.error is not None or self.stats.frames_displayed == 0:
            return 1
        return 0

    def finish(self, rc: int = 0) -> None:
        """Screenshot, stop, report, close the log and quit with ``rc`` (automation and normal close alike)."""
        if self.finishing:
            return
        self.finishing = True
        self._final_pipes = [st.pipe for st in self.model.streams]  # kept for the report
        self._final_pipe = self._final_pipes[0]
        self.end.freeze()
        self.exit_code = rc
        if self.opts.screenshot and not self.end.screenshot(self.opts.screenshot):
            self.errors.append(f"could not write screenshot {self.opts.screenshot}")
        self.end.close_outputs()
        rc = self._close_logs(rc)
        if self._cpu is not None:
            record = self._cpu.record(compute_bound=False)
            self._contention = {"record": record, **judge(record)}
        if self.opts.report:
            report = self.report()
            Path(self.opts.report).write_text(json.dumps(report, indent=2, default=str))
            print(self.summary(report), file=sys.stderr)
        self.end.exit(rc)

    def summary(self, report: dict) -> str:
        """What is printed when the report is written (``summary_lines``)."""
        return summary_lines(report)

    def _close_logs(self, rc: int) -> int:
        """The study log's end record and the display CSV; a log lost or unwritable turns a success into exit 2."""
        end = {"interrupted_by": self.interrupted_by} if self.interrupted_by else {}
        self.end.close_study(frames_displayed=self.stats.frames_displayed, exit_code=rc, **end)
        study_error = self.model.study.error
        if study_error and rc == 0:  # the log vanished: the session is lost, not a success
            print(f"sonolens: error: {study_error}", file=sys.stderr)
            rc = self.exit_code = 2
        csv_error = self.end.close_display_csv()
        if csv_error:
            self.errors.append(csv_error)
            if rc == 0:
                print(f"sonolens: error: {csv_error}", file=sys.stderr)
                rc = self.exit_code = 2
        return rc

    def report(self) -> dict:
        """The automation report: display-side figures plus the pipeline's own report."""
        pb, pipe, stats = self.model.playback, self._final_pipe, self.stats
        info = self.end.window_info()
        out = {
            "display_fps": stats.display_fps,
            "frames_displayed": stats.frames_displayed,
            "frames_dropped": pb.frames_dropped_queue + pb.frames_skipped,
            "frames_dropped_queue": pb.frames_dropped_queue,
            "frames_skipped_display": pb.frames_skipped,
            "dropped_indices": list(pipe.queue.dropped_indices[:100]) if pipe else [],
            "latency_ms": stats.summary(),
            "selfcheck": info["selfcheck"],
            "window": info["window"],
            "source": pb.source_spec,
            "errors": list(self.errors),
            "wall_s": time.perf_counter() - self._t_start,
            "pipeline": pipe.report() if pipe is not None else None,
            "warnings": info["warnings"],
            "interrupted_by": self.interrupted_by,
            "contention": self._contention,
        }
        study = self.end.study_report()
        if study is not None:
            out["study"] = study
        return out


def summary_lines(report: dict, title: str = "sonolens view") -> str:
    """The few lines ``view --report`` prints when it quits: display rate, drops, the latencies a user reads first,
    and whether the CPU was shared (figures measured under contention are not results). ``title`` starts the
    first line (the grid: ``stream k``, one summary per stream's section)."""
    lat = report.get("latency_ms") or {}

    def stage(name: str) -> str:
        s = lat.get(name)
        return (f"{name} p50/p95/p99 {s['p50']:.1f}/{s['p95']:.1f}/{s['p99']:.1f} ms" if s and s.get("n")
                else f"{name} not measured")

    lines = [f"{title}: {report['frames_displayed']} frames displayed at {report['display_fps']:.1f} fps; "
             f"dropped {report['frames_dropped_queue']} (queue) + {report['frames_skipped_display']} (display)",
             f"  {stage('capture_to_pixels')}; {stage('capture_to_paint')}"]
    return "\n".join(lines + contention_lines(report))


def contention_lines(report: dict) -> list[str]:
    """Whether the CPU was shared during the run (the report's ``contention``), as a summary line; [] without."""
    cont = report.get("contention")
    if not cont:
        return []
    return ["  CPU: contended — " + "; ".join(cont["reasons"]) if cont.get("contended")
            else "  CPU: not contended (no other process competed for it)"]


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


__all__ = ["Automation", "EndSteps", "contention_lines", "signal_name", "summary_lines"]
