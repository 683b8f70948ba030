"""The grid: up to four streams in one window (``sonolens view SRC1 … SRC4``), each with its own overlay and state.

Each cell (``StreamCell``) is driven by the pieces the single viewer (``window.ViewerWindow``) uses: a
``playback.Playback`` of its own — its own ``FrameBridge`` and pipeline (capture, queue, inference worker), its own
playback part of the model (``ViewerModel.streams``) — painting into its own ``VideoView``, with its own render
settings (its size), display statistics, latency self-check and display CSV. What the cells share: the window, the
heat-map style (H, M), the keys (Space pauses or resumes every stream, L loops, ``[``/``]`` change the speed, Esc or Q
quits), the side panel and the session's end (``grid_automation.GridAutomation``).

One engine for all streams: the model is loaded once and every stream's worker calls it (ONNX Runtime's
``InferenceSession.run`` is thread-safe; with the viewer's one intra-op thread each call runs on the worker that
makes it, so the streams infer in parallel as separate engines would), without the load time and memory of a copy
per stream. Batching the streams' frames into one call is the headless runner's (``pipeline.multi``); here each
stream keeps its own worker, so a slow or failing stream never holds back another.

A stream that cannot be opened, ends or fails says so in its own cell (state strip, placeholder, line); the others
go on. Recording, snapshots, study mode, stepping and the CAM class are the single viewer's only.
"""

from __future__ import annotations

import collections
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication, QMainWindow

from sonolens import RESEARCH_NOTICE, __version__
from sonolens.pipeline.engines import Engine
from sonolens.pipeline.errors import SonolensError
from sonolens.pipeline.multi import stream_path
from sonolens.pipeline.overlay import COLORMAPS
from sonolens.pipeline.redact import redact_credentials
from sonolens.pipeline.stream import open_engine

from .automation import EndSteps
from .bridge import DisplayFrame, RenderSettings, rerendered
from .grid_automation import GridAutomation
from .grid_layout import CellWidget, GridLayout
from .hud import DisplayCsv, DisplayStats, display_csv_path
from .model import PlaybackState, ViewerModel
from .options import ViewerOptions
from .playback import Playback, next_speed
from .selfcheck import SelfCheck
from .status import GridPresenter
from .widgets import MUTED, prediction_chip
from .window import HUD_INTERVAL_MS, window_facts

RESIZE_SETTLE_MS = 60  # a still frame is re-rendered at its cell's new size once resizing settles


class StreamCell:
    """One stream of the grid: its widgets, render settings, display statistics, ``Playback``, self-check and
    display CSV."""

    def __init__(self, win: GridWindow, k: int, spec: str, widget: CellWidget, state: PlaybackState) -> None:
        self.k, self.spec, self.widget, self.view = k, spec, widget, widget.view
        opts, style = win.opts, win.settings
        self.settings = RenderSettings(heatmap=style.heatmap, alpha=style.alpha, colormap=style.colormap,
                                       show_predictions=style.show_predictions)
        self.stats = DisplayStats()
        self.playback = Playback(win, opts, win.model, self.view, self.settings, win.ui.act_loop, state=state,
                                 stream=k)
        self.selfcheck = SelfCheck(self.view, self.stats) if opts.selfcheck else None
        csv = display_csv_path(stream_path(opts.pipeline.csv, k))
        self.display_csv = DisplayCsv(csv) if csv else None
        self.show_predictions = opts.show_predictions

    @property
    def name(self) -> str:
        """The source's file name (a URL's last part), without credentials."""
        return Path(self.shown_spec).name or self.shown_spec

    @property
    def shown_spec(self) -> str:
        """The source as the window shows it: a URL's ``user:password@`` left out."""
        return redact_credentials(self.spec)

    def present(self, df: DisplayFrame) -> None:
        """Put a frame on screen with its chip (the top class, or the state of a frame without a prediction)."""
        r = df.result
        if self.show_predictions and r.probs.size:
            self.view.chip = prediction_chip(r)
        self.view.set_frame(df)

    def restyle(self, style: RenderSettings) -> None:
        """Take the shared heat-map style; a still frame is re-rendered with it (a moving one: from the next)."""
        self.settings.heatmap, self.settings.alpha, self.settings.colormap = style.heatmap, style.alpha, style.colormap
        self.rerender()

    def rerender(self) -> None:
        self.settings.area = self.view.area_size()
        pb = self.playback
        if pb.current is not None and pb.still:
            pb.current = rerendered(pb.current, self.settings, self.settings.area)
            self.view.set_frame(pb.current)


class GridWindow(QMainWindow):
    """The grid of ``opts.sources`` (2 to 4). ``start()`` loads the model and opens every stream; ``finish(rc)``
    ends the session (as ``ViewerWindow``)."""

    def __init__(self, opts: ViewerOptions, engine: Engine | None = None) -> None:
        super().__init__()
        if not 2 <= len(opts.sources) <= 4:
            raise ValueError(f"the grid shows 2 to 4 streams, got {len(opts.sources)}")
        self.opts = opts
        self._given_engine = engine  # tests inject a fake engine; normally loaded from opts.model in start()
        n = len(opts.sources)
        self.setWindowTitle(f"sonolens {__version__} — {n} streams — {RESEARCH_NOTICE}")
        self.settings = RenderSettings(heatmap=opts.heatmap and opts.show_predictions, alpha=opts.alpha,
                                       colormap=opts.colormap, show_predictions=opts.show_predictions)  # the style
        self.stats = DisplayStats()  # every cell's paints together
        self.engine: Engine | None = None
        self.model = ViewerModel(n)
        self._after_queue: collections.deque[tuple[StreamCell, DisplayFrame, int]] = collections.deque()
        self._warnings: dict[str, None] = {}  # every stream's pipeline warnings, once each, in order
        self.ui = GridLayout(self, opts, self.settings, n)
        self.cells = [StreamCell(self, k, spec, widget, state) for k, (spec, widget, state)
                      in enumerate(zip(opts.sources, self.ui.cells, self.model.streams), start=1)]
        self.automation = GridAutomation(opts, self.model, self.stats, self, self.ui.view, self._end_steps(),
                                         [c.stats for c in self.cells])
        self.presenter = GridPresenter(self.model, opts, self.ui, [c.stats for c in self.cells],
                                       [c.name for c in self.cells], [c.selfcheck for c in self.cells])
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(RESIZE_SETTLE_MS)
        self._resize_timer.timeout.connect(self._rerender_still)
        self._connect()
        self.hud_timer = QTimer(self)
        self.hud_timer.setInterval(HUD_INTERVAL_MS)
        self.hud_timer.timeout.connect(self._tick)
        self.hud_timer.start()

    @property
    def playback(self) -> Playback:
        """The first stream's (what code written for one stream reaches for)."""
        return self.cells[0].playback

    def _connect(self) -> None:
        ui = self.ui
        for act, slot in ((ui.act_quit, self.close), (ui.act_pause, self.toggle_pause),
                          (ui.act_slower, lambda: self.change_speed(-1)),
                          (ui.act_faster, lambda: self.change_speed(+1)), (ui.act_cmap, self.cycle_colormap),
                          (ui.act_fullscreen, self.toggle_fullscreen),
                          (ui.act_help, ui.show_help), (ui.act_about, ui.show_about)):
            act.triggered.connect(lambda _=False, slot=slot: slot())
        ui.act_loop.triggered.connect(self.set_loop)
        ui.act_heatmap.triggered.connect(self.set_heatmap)
        for cell in self.cells:
            pb = cell.playback
            pb.shown.connect(cell.present)
            pb.started.connect(self._pipeline_started)
            pb.open_failed.connect(lambda _spec, message, _idle, cell=cell: self._open_failed(cell, message))
            pb.ended.connect(lambda error, k=cell.k: self.automation.stream_ended_in(k, error))
            cell.view.on_new_frame_painted = lambda df, t, cell=cell: self._on_new_frame_painted(cell, df, t)
            cell.view.on_resized = lambda cell=cell: self._cell_resized(cell)

    # -- start -----------------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Load the model (once, for every stream) and open every stream. False when nothing can play: the model
        did not load, or no stream could be opened (a scripted run then ends with exit code 2)."""
        try:
            self.engine = None if self.opts.model is None else (self._given_engine
                                                                or open_engine(self.opts.model, self.opts.threads))
        except SonolensError as exc:
            self.automation.fatal(str(exc), exc)
            return False
        meta = self.engine.meta if self.engine is not None else None
        self.model.meta = meta
        self.ui.show_model(meta)
        for cell in self.cells:
            cell.playback.engine = self.engine
            cell.view.chip = ("no model", MUTED) if meta is None else None
        opened = [cell.playback.open_source(cell.spec, initial=True) for cell in self.cells]
        if any(opened):
            return True
        if self.opts.automation:
            QTimer.singleShot(0, lambda: self.automation.finish(2))
        return False

    def _pipeline_started(self, pipe) -> None:
        """A stream's pipeline is about to start: its warnings join the side panel's (each once)."""
        self._warnings.update(dict.fromkeys(pipe.warnings()))
        self.ui.show_warnings(list(self._warnings))

    def _open_failed(self, cell: StreamCell, message: str) -> None:
        cell.view.placeholder = f"Could not open {cell.shown_spec}:\n{message}"
        cell.view.update()
        self.automation.open_failed_in(cell.k, message)

    # -- frames ----------------------------------------------------------------------------------------------------
    def _on_new_frame_painted(self, cell: StreamCell, df: DisplayFrame, t_paint_ns: int) -> None:
        cell.stats.painted(t_paint_ns)
        cell.stats.add("paint", cell.view.last_paint_ms)
        self.stats.painted(t_paint_ns)
        self._after_queue.append((cell, df, t_paint_ns))  # measured once the paint is flushed to the window
        QTimer.singleShot(0, self.drain_after_paint)

    def drain_after_paint(self) -> None:
        while self._after_queue:
            self._after_paint(*self._after_queue.popleft())

    def _after_paint(self, cell: StreamCell, df: DisplayFrame, t_paint_ns: int) -> None:
        t = df.result.timings
        cell.stats.add_display(t, df.t_ready_ns, t_paint_ns)
        pb, pipe = cell.playback, cell.playback.pipe
        c2p = None
        if cell.selfcheck is not None and pipe is not None and pb.is_live(df):
            c2p = cell.selfcheck.measure(df, pipe.telemetry, None if pb.paused else pb.resume_ns)
        if cell.display_csv is not None:
            r = df.result
            cell.display_csv.row(r.index, r.file, t.t_captured_ns, t.t_delivered_ns, t_paint_ns, c2p)
        self.automation.frame_displayed()

    def _cell_resized(self, cell: StreamCell) -> None:
        cell.settings.area = cell.view.area_size()  # the worker renders the next frame at the new size
        self._resize_timer.start()

    def _rerender_still(self) -> None:
        for cell in self.cells:
            cell.rerender()

    def _tick(self) -> None:
        for cell in self.cells:
            cell.playback.check_ended()
        self.presenter.refresh_hud()

    # -- controls: every stream at once ----------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        """Pause every playing stream; when all are paused, resume them (ended and failed ones are left alone)."""
        live = [c.playback for c in self.cells if c.playback.pipe is not None and not c.playback.is_ended]
        pause = any(not pb.paused for pb in live)
        for pb in live:
            if pb.paused != pause:
                pb.toggle_pause()

    def set_loop(self, on: bool) -> None:
        for cell in self.cells:
            cell.playback.set_loop(on)

    def change_speed(self, direction: int) -> None:
        speed = next_speed(self.opts.speed, direction)
        for cell in self.cells:
            cell.playback.set_speed(speed)

    def set_heatmap(self, on: bool) -> None:
        self.settings.heatmap = bool(on) and self.opts.show_predictions
        if self.ui.act_heatmap.isChecked() != self.settings.heatmap:
            self.ui.act_heatmap.setChecked(self.settings.heatmap)
        for cell in self.cells:
            cell.restyle(self.settings)

    def cycle_colormap(self) -> None:
        names = list(COLORMAPS)
        cur = self.settings.colormap
        self.settings.colormap = names[(names.index(cur) + 1) % len(names)] if cur in names else names[0]
        for cell in self.cells:
            cell.restyle(self.settings)

    def toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # -- the end ---------------------------------------------------------------------------------------------------
    @property
    def exit_code(self) -> int:
        return self.model.session.exit_code

    def _end_steps(self) -> EndSteps:
        return EndSteps(freeze=self._freeze, screenshot=self._screenshot, close_outputs=self._close_outputs,
                        close_study=lambda **end: None, close_display_csv=self._close_display_csvs,
                        window_info=self._window_info, study_report=lambda: None, exit=lambda rc: self.exit_hook(rc))

    def _freeze(self) -> None:
        """Capture and display stop in every stream; every painted frame is measured; the last figures shown."""
        for cell in self.cells:
            cell.playback.freeze()
        self.drain_after_paint()
        self.hud_timer.stop()
        self.presenter.refresh_hud()

    def _screenshot(self, path: str) -> bool:
        self.ui.hud.repaint()
        return self.grab().save(path)

    def _close_outputs(self) -> None:
        for cell in self.cells:
            cell.playback.stop_pipeline(wait=True)

    def _close_display_csvs(self) -> str | None:
        errors = [c.display_csv.close() for c in self.cells if c.display_csv is not None]
        return next((e for e in errors if e), None)

    def _window_info(self) -> dict:
        checks = [c.selfcheck for c in self.cells if c.selfcheck is not None]
        return {"selfcheck": {"enabled": self.opts.selfcheck,
                              "method": next((sc.method for sc in checks if sc.method), None),
                              "decoded": sum(c.stats.selfcheck_ok for c in self.cells),
                              "failed": sum(c.stats.selfcheck_failed for c in self.cells)},
                "window": window_facts(self), "warnings": list(self.ui.warnings)}

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


__all__ = ["GridWindow", "StreamCell"]
