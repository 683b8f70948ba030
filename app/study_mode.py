"""Study mode in the window: the clinician's calls and flags, and what goes into the study log.

The log itself (``study.StudyLog``) knows nothing of Qt. This controller opens it once the model is known,
writes one ``frame`` record per frame painted (with the frame's state and out-of-domain score), one ``call`` per
digit key and, through ``on_event``, the events the other controllers announce (freeze, step, snapshot,
recording, source opened/ended…). Without ``--study`` every method is a no-op, so the others never need to check.

When the log cannot be written (a full disk), the session ends: the log gets its ``end`` record at once (it keeps
room for it), and ``failed`` tells the window, which shows the error and quits with exit code 2.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, pyqtSignal

from sonolens.study.log import StudyLog

from .bridge import DisplayFrame
from .model import PlaybackState, StudyState, state_field

if TYPE_CHECKING:
    from .window import ViewerWindow


class StudySession(QObject):
    """The window's study log and the study keys (1..9 = a call in the model's class order, F = flag)."""

    failed = pyqtSignal(str)  # the log could not be written: the session is over (one-line message)
    answered = pyqtSignal(str)  # worklist mode: the case on screen was answered (call and rating logged)

    error: state_field[str | None] = state_field("error")
    case_label: state_field[str | None] = state_field("case_label")  # "case 3 of 12" in a worklist, never the file

    def __init__(self, win: ViewerWindow) -> None:
        super().__init__(win)
        self.win = win  # its call labels and status bar
        self.opts = win.opts
        self.model = win.model
        self.state: StudyState = win.model.study
        self.playing: PlaybackState = win.model.playback  # read only
        self.stats = win.stats
        self.log: StudyLog | None = None
        # worklist mode (``sonolens study run``): the case on screen, and who asks the reader's rating after a call
        self.case: str | None = None
        self.ask_rating: Callable[[str, Callable[[dict], None]], None] | None = None
        ui = win.ui
        for k, act in enumerate(ui.study_call_actions, start=1):
            act.triggered.connect(lambda _=False, k=k: self.call(k))
        if ui.act_flag is not None:
            ui.act_flag.triggered.connect(self.flag)

    @property
    def active(self) -> bool:
        return self.log is not None

    def open(self, engine) -> None:
        """Open the log (study mode only), with the model's metadata in its header, and name the call keys."""
        s = self.opts.study
        if s is None:
            return
        meta = engine.meta if engine is not None else None
        model = None if meta is None else {
            "arch": meta.arch, "classes": list(meta.class_names), "input_size": list(meta.input_size),
            "trained": meta.trained, "version": meta.version, "provenance": meta.provenance,
            "path": (str(Path(str(self.opts.model)).resolve()) if Path(str(self.opts.model)).is_file()
                     else str(self.opts.model))}
        self.log = StudyLog(s.log, participant=s.participant, condition=s.condition, source=str(self.opts.source),
                            model=model, class_names=list(meta.class_names) if meta else [],
                            call_labels=self.win.call_labels,
                            extra={"selfcheck": self.opts.selfcheck, "gate": self.opts.gate, **s.extra})
        self.win.ui.show_call_labels(self.win.call_labels)
        self.state.active = True
        self.changed()

    def changed(self) -> None:
        """The model's study part is up to date (panel text included): say so."""
        self.state.panel = self.panel_text()
        self.model.notify("study")

    def set_case_label(self, label: str | None) -> None:
        self.case_label = label
        self.changed()

    def on_event(self, kind: str, frame_index: int | None, fields: dict) -> None:
        """Slot for the controllers' ``happened`` signals."""
        if self.log is not None:
            self.log.event(kind, frame_index, **fields)
            self._check()

    def _check(self) -> None:
        """After a write: if the log failed, end the session now (its end record goes into the reserved room)."""
        log = self.log
        self.state.panel = self.panel_text()  # the counts, shown at the next HUD refresh
        if log is None or log.error is None or self.error is not None:
            return
        self.error = log.error
        log.close(frames_displayed=self.stats.frames_displayed, exit_code=2)
        self.failed.emit(self.error)

    # -- keys ------------------------------------------------------------------------------------------------------
    def call(self, key: int) -> None:
        """The clinician's answer for the frame on screen, logged with the model's answer for that frame."""
        labels = self.win.call_labels
        if self.log is None or key > len(labels):
            return
        cur = self.playing.current
        if cur is None:
            snapshot: dict = {"frame_index": None, "model_top": None, "model_probs": None, "class_names": ()}
        else:
            r = cur.result
            has_model = r.probs.size > 0
            snapshot = {"frame_index": r.index, "model_top": r.top_class if has_model else None,
                        "model_probs": r.probs if has_model else None, "class_names": r.class_names,
                        "model_state": r.state if has_model else None, "file": r.file}
        if self.ask_rating is None:
            self._log_call(key, snapshot, {})
        elif self.case is not None and cur is not None and self.playing.is_live(cur):
            # worklist: a call on the case's own frame, logged with the rating once the reader gives it
            case = self.case
            self.ask_rating(labels[key - 1], lambda answer: self._log_call(key, snapshot, {"case": case, **answer}))

    def _log_call(self, key: int, snapshot: dict, answer: dict) -> None:
        if self.log is None:
            return
        snap = dict(snapshot)
        label = self.log.call(key, snap.pop("frame_index"), **snap, **answer)
        self._check()
        frame = "–" if snapshot["frame_index"] is None else snapshot["frame_index"]
        self.win.ui.status_bar.showMessage(f"call recorded: {label} (frame {frame})", 3000)
        self.changed()
        if "case" in answer:
            self.case = None  # answered: no second call on it while the next case opens
            self.answered.emit(answer["case"])

    def flag(self) -> None:
        if self.log is not None:
            self.on_event("flag", self.playing.frame_index, {})
            self.win.ui.status_bar.showMessage("flag recorded", 3000)
            self.changed()

    # -- per frame and at the end ----------------------------------------------------------------------------------
    def log_frame(self, df: DisplayFrame, t_paint_ns: int, capture_to_pixels_ms: float | None) -> None:
        """One ``frame`` record per frame painted (probabilities also when they were hidden)."""
        if self.log is None:
            return
        r = df.result
        t = r.timings
        has_model = bool(r.probs.size)
        self.log.frame(r.index, pts_s=t.pts_s, probs=r.probs.tolist() if has_model else None,
                       top_class=r.top_class if has_model else None,
                       shown=self.opts.show_predictions and r.shows_prediction,
                       state=r.state if has_model else None, ood_score=r.ood_score, no_image=r.no_image,
                       file=r.file, case=self.case,
                       capture_to_result_ms=t.stage_ms()["capture_to_result"],
                       capture_to_pixels_ms=capture_to_pixels_ms, t_ns=t_paint_ns)
        self._check()

    def panel_text(self) -> str:
        """The study panel: who, which condition, the keys, how much is logged."""
        s = self.opts.study
        if s is None or self.log is None:
            return ""
        labels = self.win.call_labels
        text = (f"participant <b>{s.participant}</b> · condition <b>{s.condition}</b><br>"
                "keys: " + ", ".join(f"{i + 1}={lab}" for i, lab in enumerate(labels)) + ", F=flag, Space=freeze"
                + (", P=pause" if self.ask_rating is not None else "") + "<br>"
                f"{self.log.events} events, {self.log.frames} frames logged")
        if self.error:
            text += f"<br><span style='color:#f85149'><b>log stopped:</b> {html.escape(self.error)}</span>"
        return text

    def report(self) -> dict | None:
        s = self.opts.study
        if s is None:
            return None
        return {"log": s.log, "condition": s.condition, "frames_logged": self.log.frames if self.log else 0,
                "events_logged": self.log.events if self.log else 0, "error": self.error,
                "end_written": self.log.end_written if self.log else False}

    def close(self, frames_displayed: int, exit_code: int, **summary) -> None:
        """The session's end record (idempotent: after a failed write it was written already)."""
        if self.log is not None:
            self.log.close(frames_displayed=frames_displayed, exit_code=exit_code, **summary)
            if self.log.error is not None and self.error is None:  # found at close: a vanished log
                self.error = self.log.error


__all__ = ["StudySession"]
