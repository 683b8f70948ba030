"""``sonolens study run PLAN/R01_s1.yaml``: a reader's session — the viewer walks the worklist case by case.

One window per block (one condition): the model is loaded once, its log file holds that block (one condition per
log file; the files of a session share its ``session_id``). For each case the viewer opens its file in
presentation mode (no engineering HUD, no stamp strip); a clip loops until the reader calls, a still waits. A call
key (1, 2, 3 …) asks for the confidence rating; the call is logged with the case, the rating and the model's output
and state at the key press, and the next case opens. P pauses (the image is hidden; the pause is logged and left
out of reaction times). After the block's last case come the questionnaires (NASA-TLX, SUS; answers and scores in
the log), then the next block. The truth never reaches this screen: the worklist does not hold it.

A crash or a closed window loses nothing answered: the same command resumes at the next unanswered case, in a new
log file of the same session (``study.progress``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal
from PyQt6.QtGui import QKeySequence, QShortcut

from sonolens.pipeline.errors import ConfigError
from sonolens.study.progress import Progress, next_log_path, session_progress
from sonolens.study.questionnaires import form, score
from sonolens.study.worklist import WorkBlock, Worklist, load_worklist

from .options import StudyOptions, ViewerOptions


class StudyRunner(QObject):
    """Walks a worklist: a window per block, a case at a time, the rating after each call, the forms at the end.
    ``done(rc)`` when the session ends (all answered: 0; a fatal error: its code; the reader closed the window: 0
    with cases left — ``remaining()`` says how many)."""

    done = pyqtSignal(int)

    def __init__(self, wl: Worklist, logs_dir: Path, *, model: str | None = None,
                 open_window: Callable[[ViewerOptions], Any] | None = None) -> None:
        super().__init__()
        self.wl, self.logs_dir = wl, logs_dir
        try:
            logs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot make the logs folder {logs_dir}: {exc.strerror or exc}") from None
        self.model = model if model is not None else (wl.model or "busi")
        self._open = open_window or _open_window
        self.progress: Progress = session_progress(wl, logs_dir)
        self.win: Any = None
        self.block: WorkBlock | None = None
        self.queue: list = []
        self.dialog: Any = None  # the rating or questionnaire dialog on screen (tests drive it)
        self.paused = False
        self.finished_rc: int | None = None

    # -- blocks ----------------------------------------------------------------------------------------------------
    def remaining(self) -> int:
        return sum(len(self.progress.remaining(b)) for b in self.wl.blocks)

    def start(self) -> None:
        """Open the first block that is not done (a resumed session skips what its earlier logs hold)."""
        todo = [b for b in self.wl.blocks if not self.progress.block_done(self.wl, b)]
        if not todo:
            self._end(0)
            return
        self.block = todo[0]
        self.queue = self.progress.remaining(self.block)
        self.win = self._open(self._options(self.block))
        self.win.exit_hook = self._window_closed
        self.win.study.ask_rating = self._ask_rating
        self.win.study.answered.connect(self._answered)
        QShortcut(QKeySequence("P"), self.win).activated.connect(self.toggle_pause)
        if self.win.start():
            self._show_next()

    def _options(self, block: WorkBlock) -> ViewerOptions:
        log = next_log_path(self.logs_dir, self.wl.session_id, block.block)
        extra = {"study": self.wl.study, "session_id": self.wl.session_id, "session": self.wl.session,
                 "block": block.block, "study_condition": block.condition, "worklist": str(self.wl.path)}
        study = StudyOptions(self.wl.reader, block.display, str(log), extra=extra, labels=self.wl.labels)
        return ViewerOptions(source=None, model=None if block.display == "off" else self.model, loop=True,
                             present=True, study=study)

    def _window_closed(self, rc: int) -> None:
        """The block's window finished (``Automation.finish``): the next block, or the end of the session."""
        win, self.win = self.win, None
        if win is not None:
            win.deleteLater()
        block_done = self.block is not None and self.progress.block_done(self.wl, self.block)
        if rc == 0 and block_done:
            QTimer.singleShot(0, self.start)
        else:
            self._end(rc)

    def _end(self, rc: int) -> None:
        self.finished_rc = rc
        self.done.emit(rc)

    # -- cases -----------------------------------------------------------------------------------------------------
    def _show_next(self) -> None:
        if self.win is None:  # the window was closed meanwhile
            return
        if not self.queue:
            self._questionnaires()
            return
        case, block, study = self.queue[0], self.block, self.win.study
        assert block is not None
        study.case = None
        self.win.opts.pipeline.slideshow_hold = case.path.is_dir()  # a folder case: each image until Right
        if not self.win.playback.open_source(str(case.path)):  # said in a dialog; the case stays unanswered
            study.on_event("case_error", None, {"case": case.id, "path": str(case.path)})
            self.queue.pop(0)
            QTimer.singleShot(0, self._show_next)
            return
        study.case = case.id  # calls count from the case's first frame on (``StudySession.call``)
        n = len(block.cases) - len(self.queue) + 1
        block_no = self.wl.blocks.index(block) + 1
        study.on_event("case_shown", None, {"case": case.id, "path": str(case.path), "position": n})
        study.set_case_label(f"block {block.block} ({block_no} of {len(self.wl.blocks)}) · case {n} of "
                             f"{len(block.cases)}")
        self.win.setWindowTitle(f"sonolens study — {self.wl.reader} — {study.case_label}")

    def _ask_rating(self, label: str, answer: Callable[[dict], None]) -> None:
        from .study_forms import RatingDialog

        if self.dialog is not None or self.paused:
            return
        self.dialog = dialog = RatingDialog(self.win, self.wl.rating, label)
        dialog.answered.connect(lambda v: answer({"confidence": float(v)}))
        dialog.finished.connect(lambda _r: self._dialog_closed(dialog))
        dialog.open()
        win = self.win.geometry()  # bottom right, over the side panel: the image stays in view
        dialog.adjustSize()
        dialog.move(win.right() - dialog.width() - 16, win.bottom() - dialog.height() - 40)

    def _dialog_closed(self, dialog) -> None:
        """The keys go back to the viewer (its shortcuts need the active window)."""
        if self.dialog is dialog:
            self.dialog = None
        if self.win is not None:
            self.win.activateWindow()

    def _answered(self, case: str) -> None:
        if self.block is None or not self.queue or self.queue[0].id != case:
            return
        self.queue.pop(0)
        self.progress.answered.setdefault(self.block.block, set()).add(case)
        QTimer.singleShot(0, self._show_next)

    # -- pause -----------------------------------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        """P: hide the image and stop the clock (logged as ``pause``/``resume``), or carry on."""
        if self.win is None or self.dialog is not None:
            return
        self.paused = not self.paused
        view = self.win.ui.view
        view.setVisible(not self.paused)
        self.win.study.on_event("pause" if self.paused else "resume", self.win.playback.current_index,
                                {"case": self.win.study.case})
        self.win.ui.status_bar.showMessage("paused — press P to continue" if self.paused else "", 0)

    # -- questionnaires --------------------------------------------------------------------------------------------
    def _questionnaires(self) -> None:
        """The block's forms, one after the other; then the block's window closes."""
        assert self.block is not None
        left = self.progress.forms_left(self.block, self.wl.questionnaires)
        if not left:
            self.win.study.case = None
            self.win.finish(0)
            return
        from .study_forms import FormDialog

        self.win.playback.stop_pipeline()
        self.win.study.case = None
        name = left[0]
        self.dialog = dialog = FormDialog(self.win, form(name))
        dialog.answered.connect(lambda answers: self._form_answered(name, answers))
        dialog.finished.connect(lambda _r: self._dialog_closed(dialog))
        dialog.rejected.connect(lambda: QTimer.singleShot(0, self._questionnaires))  # Esc: the form comes back
        dialog.open()

    def _form_answered(self, name: str, answers: dict) -> None:
        assert self.block is not None
        self.win.study.on_event("questionnaire", None, {"form": name, "answers": answers, "score": score(name, answers),
                                                        "condition": self.block.condition})
        self.progress.forms.setdefault(self.block.block, set()).add(name)
        QTimer.singleShot(0, self._questionnaires)


def _open_window(opts: ViewerOptions, size: str = "1280x800", screen: int | None = None,
                 fullscreen: bool = False):
    from .main import create_window

    return create_window(opts, size, screen, fullscreen)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens study run", description=__doc__.split("\n\n")[0])
    p.add_argument("worklist", metavar="WORKLIST", help="a reader's worklist written by 'sonolens study plan'")
    p.add_argument("--logs", default=None, metavar="DIR",
                   help="folder for the session's logs (default: logs/ beside the worklist)")
    p.add_argument("--model", default=None, help="model file or bundled name (default: the worklist's, else busi)")
    p.add_argument("--size", default="1280x800", help="window size WxH")
    p.add_argument("--screen", type=int, default=None, help="screen index for the window")
    p.add_argument("--fullscreen", action="store_true", help="full screen")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    wl = load_worklist(args.worklist)
    logs = Path(args.logs) if args.logs else wl.path.parent / "logs"
    from .main import _ensure_display, make_app
    from .signals import QtShutdownSignals

    _ensure_display(False)
    app = make_app()
    runner = StudyRunner(wl, logs, model=args.model,
                         open_window=lambda o: _open_window(o, args.size, args.screen, args.fullscreen))
    if runner.remaining() == 0 and all(runner.progress.block_done(wl, b) for b in wl.blocks):
        print(f"{wl.session_id}: every case is answered already (logs in {logs})")
        return 0
    runner.done.connect(app.exit)
    with QtShutdownSignals(lambda signum: runner.win.automation.interrupt(signum) if runner.win else None) as sig:
        QTimer.singleShot(0, runner.start)
        rc = app.exec()
    left = runner.remaining()
    print(f"{wl.session_id}: " + (f"{left} case(s) left; run the same command to carry on" if left
                                  else f"session complete; logs in {logs}"), file=sys.stderr)
    return int(rc or sig.exit_code or 0)


__all__ = ["StudyRunner", "cli_main"]
