"""The viewer window: puts the layout and the controllers together and handles what happens after each paint.

One concern per module; the state they share is the Qt-free viewer model (``model.ViewerModel``: playback,
recording, study and session parts), which each controller writes to and the presenter reads:

* ``layout.ViewerLayout`` — widgets, menus, actions and shortcuts (``ui``);
* ``playback.Playback`` — the pipeline's lifecycle: open a source, frames in, pause/step/loop/speed, its end;
* ``overlay_controls.OverlayControls`` — heat map, opacity, colormap, CAM class, re-rendering a still frame;
* ``recording.Recording`` — snapshots (S) and MP4 recordings with the overlay (R);
* ``study_mode.StudySession`` — study calls, flags and the study log;
* ``selfcheck.SelfCheck`` — capture→pixels latency read back from the window's pixels (``--selfcheck``);
* ``automation.Automation`` — errors, exit codes, ``finish`` and the report of a scripted run;
* ``status.StatusPresenter`` — status bar, HUD, study panel.

Playback, recording and study mode announce what happened with Qt signals (``happened`` events go to the study
log) and the model's ``changed`` event (the status bar), so none of them calls the study log, the status bar or
another controller itself; the window connects them (``_connect``), hands ``Automation`` the steps of the session's
end (``_end_steps``) and runs what follows each paint (statistics, self-check, study log, automation).

Several sources open ``grid.GridWindow`` instead: one ``Playback`` (and view, bridge, pipeline) per cell.
"""

from __future__ import annotations

import collections

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QGuiApplication
from PyQt6.QtWidgets import QApplication, QMainWindow

from sonolens import RESEARCH_NOTICE, __version__
from sonolens.pipeline.engines import Engine
from sonolens.pipeline.errors import SonolensError
from sonolens.pipeline.messages import state_text
from sonolens.pipeline.stream import open_engine
from sonolens.study.log import DEFAULT_CALL_LABELS

from .automation import Automation, EndSteps
from .bridge import DisplayFrame, RenderSettings
from .hud import DisplayCsv, DisplayStats, display_csv_path
from .layout import SHORTCUTS, ViewerLayout
from .model import ViewerModel
from .options import StudyOptions, ViewerOptions
from .overlay_controls import OverlayControls
from .playback import Playback
from .recording import Recording
from .selfcheck import SelfCheck
from .status import StatusPresenter
from .study_mode import StudySession
from .widgets import STATE_CHIP, prediction_chip

HUD_INTERVAL_MS = 250


def window_facts(win: QMainWindow) -> dict:
    """The report's ``window``: size, platform, screen and device pixel ratio."""
    screen = win.screen()
    return {"width": win.width(), "height": win.height(), "platform": QGuiApplication.platformName(),
            "screen": screen.name() if screen else None, "device_pixel_ratio": win.devicePixelRatioF()}


class ViewerWindow(QMainWindow):
    """The live overlay viewer. ``start()`` loads the model and opens the first source; ``finish(rc)`` ends it."""

    def __init__(self, opts: ViewerOptions, engine=None) -> None:
        super().__init__()
        self.opts = opts
        self._given_engine = engine  # tests inject a fake engine; normally loaded from opts.model in start()
        self.setWindowTitle(f"sonolens {__version__} — {RESEARCH_NOTICE}")
        self.settings = RenderSettings(heatmap=opts.heatmap and opts.show_predictions, alpha=opts.alpha,
                                       colormap=opts.colormap, show_predictions=opts.show_predictions)
        self.stats = DisplayStats()
        self.display_csv = DisplayCsv(csv) if (csv := display_csv_path(opts.pipeline.csv)) else None
        self.engine: Engine | None = None
        self.call_labels: tuple[str, ...] = DEFAULT_CALL_LABELS
        self.model = ViewerModel()
        self._after_queue: collections.deque[tuple[DisplayFrame, int]] = collections.deque()

        self.ui = ViewerLayout(self, opts, self.settings)
        self.ui.view.on_new_frame_painted = self._on_new_frame_painted
        self.automation = Automation(opts, self.model, self.stats, self, self.ui.view, self._end_steps())
        self.playback = Playback(self, opts, self.model, self.ui.view, self.settings, self.ui.act_loop)
        self.overlay = OverlayControls(self)
        self.recording = Recording(self)
        self.study = StudySession(self)
        self.selfcheck = SelfCheck(self.ui.view, self.stats) if opts.selfcheck else None
        self.presenter = StatusPresenter(self.model, opts, self.ui, self.stats, self.selfcheck)
        self._connect()

        self.hud_timer = QTimer(self)
        self.hud_timer.setInterval(HUD_INTERVAL_MS)
        self.hud_timer.timeout.connect(self._tick)
        self.hud_timer.start()

    def _connect(self) -> None:
        ui, pb, rec, ov, study = self.ui, self.playback, self.recording, self.overlay, self.study
        for act, slot in ((ui.act_open, pb.open_file_dialog), (ui.act_open_folder, pb.open_folder_dialog),
                          (ui.act_camera, pb.open_camera_dialog), (ui.act_snapshot, rec.snapshot),
                          (ui.act_record, rec.toggle), (ui.act_quit, self.close),
                          (ui.act_pause, pb.toggle_pause), (ui.act_step, pb.step),
                          (ui.act_slower, lambda: pb.change_speed(-1)), (ui.act_faster, lambda: pb.change_speed(+1)),
                          (ui.act_fullscreen, self.toggle_fullscreen), (ui.act_help, ui.show_help),
                          (ui.act_about, ui.show_about)):
            act.triggered.connect(lambda _=False, slot=slot: slot())
        ui.act_loop.triggered.connect(pb.set_loop)
        for happened in (pb.happened, rec.happened):
            happened.connect(study.on_event)
        pb.shown.connect(self.present)
        pb.open_failed.connect(self.automation.open_failed)
        pb.started.connect(self._pipeline_started)
        pb.stopping.connect(lambda _pipe: rec.stop())
        pb.ended.connect(self.automation.stream_ended)
        # queued: the study log fails inside a paint's bookkeeping; the error dialog must not open in there
        study.failed.connect(self.automation.study_failed, Qt.ConnectionType.QueuedConnection)
        ov.style_changed.connect(rec.follow_style)
        ov.cam_class_changed.connect(lambda: pb.set_cam_class(ov.cam_class))

    # -- start -----------------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Load the model and open the first source. Returns False when the viewer cannot continue."""
        try:
            self.engine = None if self.opts.model is None else (self._given_engine
                                                                or open_engine(self.opts.model, self.opts.threads))
        except SonolensError as exc:
            self.automation.fatal(str(exc), exc)
            return False
        meta = self.engine.meta if self.engine is not None else None
        self.model.meta, self.playback.engine = meta, self.engine
        if meta is not None:
            self.call_labels = tuple(meta.class_names)
            self.overlay.set_classes(self.call_labels)
        if self.opts.study is not None and self.opts.study.labels:
            self.call_labels = tuple(self.opts.study.labels)
        self.ui.show_model(meta)
        try:
            self.study.open(self.engine)
        except SonolensError as exc:  # the log cannot be written (or holds a session already)
            self.automation.fatal(str(exc), exc)
            return False
        self.presenter.bars_placeholder()
        if self.opts.source:
            return self.playback.open_source(self.opts.source, initial=True)
        self.ui.view.placeholder = "No source. Open a file (Ctrl+O) or a camera (Ctrl+K)."
        self.ui.view.update()
        return True

    def _pipeline_started(self, pipe) -> None:
        """A new pipeline is about to start: the CAM controls apply to it, its warnings are shown, the title names
        it."""
        self.setWindowTitle(f"sonolens — {pipe.info.name} — {RESEARCH_NOTICE}")
        cam_ok = self.engine is not None and pipe.worker.cam_enabled and self.opts.show_predictions
        self.overlay.enable_cam(cam_ok)
        pipe.worker.cam_class = self.overlay.cam_class
        self.ui.show_warnings(pipe.warnings())

    # -- frames ----------------------------------------------------------------------------------------------------
    def present(self, df: DisplayFrame) -> None:
        """Put a frame on screen with its prediction (bars and chip; hidden in blinded/off study conditions).

        A frame without a prediction (state ``out_of_domain`` or ``no_image``) shows ``STATE_TEXT`` instead of the
        bars, and no heat map (``bridge.render_rgb``)."""
        r = df.result
        view = self.ui.view
        if self.opts.show_predictions and r.probs.size:
            if r.shows_prediction:
                self.ui.bars.set_values(r.class_names, r.probs, r.top_class)
            else:
                title, why = state_text(r.state, r.no_image)
                self.ui.bars.set_hidden(title + (f"\n{why}" if why else ""))
            view.chip = prediction_chip(r)
        view.set_frame(df)

    def _on_new_frame_painted(self, df: DisplayFrame, t_paint_ns: int) -> None:
        self.stats.painted(t_paint_ns)
        self.stats.add("paint", self.ui.view.last_paint_ms)
        # after this paint is flushed to the window: read the pixels back, log, check automation
        self._after_queue.append((df, t_paint_ns))
        QTimer.singleShot(0, self.drain_after_paint)

    def drain_after_paint(self) -> None:
        """Measure, log and count every painted frame not handled yet."""
        while self._after_queue:
            self._after_paint(*self._after_queue.popleft())

    def _after_paint(self, df: DisplayFrame, t_paint_ns: int) -> None:
        t = df.result.timings
        self.stats.add_display(t, df.t_ready_ns, t_paint_ns)
        c2p = None
        pb, pipe = self.playback, self.playback.pipe
        if self.selfcheck is not None and pipe is not None and pb.is_live(df):
            c2p = self.selfcheck.measure(df, pipe.telemetry, None if pb.paused else pb.resume_ns)
        self.study.log_frame(df, t_paint_ns, c2p)
        if self.display_csv is not None:
            r = df.result
            self.display_csv.row(r.index, r.file, t.t_captured_ns, t.t_delivered_ns, t_paint_ns, c2p)
        self.automation.frame_displayed()

    def _tick(self) -> None:
        self.playback.check_ended()
        self.presenter.refresh_hud()

    # -- the end ---------------------------------------------------------------------------------------------------
    @property
    def exit_code(self) -> int:
        return self.model.session.exit_code

    @exit_code.setter
    def exit_code(self, rc: int) -> None:
        self.model.session.exit_code = rc

    def _end_steps(self) -> EndSteps:
        return EndSteps(freeze=self._freeze, screenshot=self._screenshot,
                        close_outputs=self._close_outputs, close_study=lambda **end: self.study.close(**end),
                        close_display_csv=lambda: self.display_csv.close() if self.display_csv is not None else None,
                        window_info=self._window_info, study_report=lambda: self.study.report(),
                        exit=lambda rc: self.exit_hook(rc))

    def _freeze(self) -> None:
        """What happens while we shut down is not part of the run: capture and display stop, every painted frame
        gets its log line and measurement, the HUD shows the final figures."""
        self.playback.freeze()
        self.drain_after_paint()
        self.hud_timer.stop()
        self.presenter.refresh_hud()

    def _screenshot(self, path: str) -> bool:
        self.ui.hud.repaint()
        return self.grab().save(path)

    def _close_outputs(self) -> None:
        self.recording.close_all()
        self.playback.stop_pipeline(wait=True)

    def _window_info(self) -> dict:
        sc = self.selfcheck
        return {"selfcheck": {"enabled": self.opts.selfcheck, "method": sc.method if sc else None,
                              "decoded": self.stats.selfcheck_ok, "failed": self.stats.selfcheck_failed},
                "window": window_facts(self), "warnings": list(self.ui.warnings)}

    # -- window ----------------------------------------------------------------------------------------------------
    def toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def finish(self, rc: int = 0) -> None:
        """End the session with exit code ``rc`` (see ``automation.Automation.finish``)."""
        self.automation.finish(rc)

    @staticmethod
    def exit_hook(rc: int) -> None:
        """Leave the application's event loop with ``rc`` (tests replace this)."""
        QApplication.instance().exit(rc)

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.automation.finishing:
            self.finish(self.exit_code or 0)
        event.accept()


__all__ = ["ViewerWindow", "ViewerOptions", "StudyOptions", "SHORTCUTS", "STATE_CHIP", "HUD_INTERVAL_MS",
           "window_facts"]
