"""The viewer window: controls, shortcuts, the pipeline's lifecycle, study mode, self-check and automation.

Threads: capture and inference run in the pipeline's threads; ``FrameBridge`` (a sink, on the worker thread)
renders each frame and signals the GUI, which only paints. The GUI never waits on the pipeline: a stalled or
ended source, or slow inference, just means no new frame — the window keeps its last frame and stays live.

Pause keeps the frame on screen (with its result). Frames already past the capture stage when pause was pressed
are held back, so "step" shows exactly the next frame; on resume, held frames are discarded (counted as skipped).
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction, QFont, QGuiApplication, QKeySequence
from PyQt6.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout,
                             QInputDialog, QLabel, QMainWindow, QMessageBox, QSlider, QVBoxLayout,
                             QWidget)

from sonolens import RESEARCH_NOTICE, __version__
from sonolens.pipeline.errors import SonolensError
from sonolens.pipeline.overlay import COLORMAPS, OverlayStyle
from sonolens.pipeline.stamp import StampingSource, band_height
from sonolens.pipeline.stream import PipelineConfig, open_engine

from .bridge import DisplayFrame, FrameBridge, RenderSettings, build_viewer_pipeline, render_rgb, to_qimage
from .hud import CounterRate, DisplayStats, hud_lines
from .selfcheck import PixelProbe
from .study import DEFAULT_CALL_LABELS, StudyLog
from .widgets import MUTED, NOTICE, RED, TEXT, ProbBars, VideoView, class_color

log = logging.getLogger(__name__)

SPEEDS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)

SHORTCUTS = [
    ("Ctrl+O", "open a video, image or folder"), ("Ctrl+K", "open a camera (asks for its index)"),
    ("Space", "play / pause (study: freeze / unfreeze)"), ("Right or .", "step one frame (while paused)"),
    ("L", "loop the file"), ("[ / ]", "slower / faster playback"), ("H", "heat map on / off"),
    ("C", "CAM class: top class, then each class"), ("M", "next colormap"), ("F11", "full screen"),
    ("S", "snapshot of the window to PNG"), ("R", "start / stop recording to MP4 (overlay burned in)"),
    ("F1 or ?", "this help"), ("Ctrl+Q", "quit"),
]
STUDY_SHORTCUTS = [("1 / 2 / 3 …", "record your call (class in the model's order)"), ("F", "flag this frame"),
                   ("Space", "freeze / unfreeze")]


@dataclass
class StudyOptions:
    participant: str
    condition: str  # ai | blinded | off
    log: str


@dataclass
class ViewerOptions:
    source: str | None = None
    model: str | None = "busi"  # path or bundled name; None = no model
    roi: str | None = None
    threads: int = 1  # see main.py --threads
    loop: bool = False
    speed: float = 1.0
    realtime: bool = True
    queue: str | None = None
    ema: float = 0.0
    cam: bool = True
    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    selfcheck: bool = False
    study: StudyOptions | None = None
    exit_after_frames: int | None = None
    exit_after_seconds: float | None = None
    screenshot: str | None = None
    report: str | None = None
    snapshot_dir: str = "."
    record_dir: str = "."
    automation: bool = False  # any of exit_after_*, screenshot, report: no modal dialogs, exit codes matter
    extra: dict = field(default_factory=dict)

    @property
    def show_predictions(self) -> bool:
        return self.study is None or self.study.condition == "ai"


def _no_focus(*widgets: QWidget) -> None:
    """Controls never take keyboard focus, so Space/arrows always reach the window's shortcuts."""
    for w in widgets:
        w.setFocusPolicy(Qt.FocusPolicy.NoFocus)


class ViewerWindow(QMainWindow):
    def __init__(self, opts: ViewerOptions, engine=None) -> None:
        super().__init__()
        self.opts = opts
        self._given_engine = engine  # tests inject a fake engine; normally loaded from opts.model in start()
        self.setWindowTitle(f"sonolens {__version__} — {RESEARCH_NOTICE}")
        self.settings = RenderSettings(heatmap=opts.heatmap and opts.show_predictions, alpha=opts.alpha,
                                       colormap=opts.colormap, show_predictions=opts.show_predictions)
        self.stats = DisplayStats()
        self.engine = None
        self.pipe = None
        self.bridge: FrameBridge | None = None
        self.generation = 0
        self.current: DisplayFrame | None = None
        self.paused = False
        self.ended = False
        self.source_spec: str | None = None
        self.held: collections.deque[DisplayFrame] = collections.deque()
        self.step_credit = 0
        self._resume_ns = 0
        self._skipped_other = 0  # held frames discarded on resume, old-pipeline leftovers
        self._skipped_bridges = 0  # bridges of pipelines already replaced
        self._dropped_old = 0  # queue drops of pipelines already replaced
        self.recorder = None
        self.study: StudyLog | None = None
        self.exit_code = 0
        self._finishing = False
        self._t_start = time.perf_counter()
        self.input_rate = CounterRate()
        self.probe: PixelProbe | None = None
        self.errors: list[str] = []
        self.last_error: str | None = None
        self._printed: set[str] = set()
        self._after_queue: collections.deque[tuple[DisplayFrame, int]] = collections.deque()
        self.call_labels: tuple[str, ...] = DEFAULT_CALL_LABELS

        self._build_ui()
        self._build_actions()
        self.probe = PixelProbe(self.view) if opts.selfcheck else None
        self.hud_timer = QTimer(self)
        self.hud_timer.setInterval(250)
        self.hud_timer.timeout.connect(self._tick)
        self.hud_timer.start()
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(60)
        self._resize_timer.timeout.connect(self._rerender_current)
        if opts.exit_after_seconds:
            QTimer.singleShot(int(opts.exit_after_seconds * 1000), lambda: self.finish(self._rc_at_end()))

    # ================================================================================================ UI
    def _build_ui(self) -> None:
        self.view = VideoView()
        self.view.on_new_frame_painted = self._on_new_frame_painted
        self.view.on_resized = self._view_resized
        self.view.show_roi = self.opts.show_predictions

        side = QWidget()
        side.setObjectName("side")
        side.setFixedWidth(300)
        lay = QVBoxLayout(side)
        lay.setContentsMargins(14, 12, 14, 12)
        lay.setSpacing(8)

        def heading(text: str) -> QLabel:
            lab = QLabel(text.upper())
            lab.setObjectName("heading")
            return lab

        lay.addWidget(heading("Prediction"))
        self.bars = ProbBars()
        lay.addWidget(self.bars)
        self.model_label = QLabel("")
        self.model_label.setObjectName("muted")
        self.model_label.setWordWrap(True)
        lay.addWidget(self.model_label)

        lay.addWidget(self._separator())
        lay.addWidget(heading("Overlay"))
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setHorizontalSpacing(10)
        self.heatmap_box = QCheckBox("Grad-CAM heat map  (H)")
        self.heatmap_box.setChecked(self.settings.heatmap)
        self.heatmap_box.toggled.connect(self.set_heatmap)
        form.addRow(self.heatmap_box)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(round(self.settings.alpha * 100)))
        self.opacity.valueChanged.connect(lambda v: self.set_alpha(v / 100.0))
        self.opacity_label = QLabel(f"{self.opacity.value()}%")
        row = QHBoxLayout()
        row.addWidget(self.opacity)
        row.addWidget(self.opacity_label)
        form.addRow("Opacity", row)
        self.cam_combo = QComboBox()
        self.cam_combo.addItem("top class")
        self.cam_combo.currentIndexChanged.connect(self._cam_combo_changed)
        form.addRow("CAM of (C)", self.cam_combo)
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(list(COLORMAPS))
        self.cmap_combo.setCurrentText(self.settings.colormap)
        self.cmap_combo.currentTextChanged.connect(self.set_colormap)
        form.addRow("Colormap (M)", self.cmap_combo)
        lay.addLayout(form)
        _no_focus(self.heatmap_box, self.opacity, self.cam_combo, self.cmap_combo)
        if not self.opts.show_predictions:
            for w in (self.heatmap_box, self.opacity, self.cam_combo, self.cmap_combo):
                w.setEnabled(False)

        lay.addWidget(self._separator())
        lay.addWidget(heading("Performance"))
        self.hud = QLabel("")
        self.hud.setObjectName("hud")
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(9.0)
        self.hud.setFont(mono)
        self.hud.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.hud.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self.hud)
        if self.opts.study is not None:
            lay.addWidget(self._separator())
            lay.addWidget(heading("Study"))
            self.study_label = QLabel("")
            self.study_label.setWordWrap(True)
            lay.addWidget(self.study_label)
        lay.addStretch(1)
        hint = QLabel("F1: keyboard shortcuts")
        hint.setObjectName("muted")
        lay.addWidget(hint)

        central = QWidget()
        h = QHBoxLayout(central)
        h.setContentsMargins(0, 0, 0, 0)
        h.setSpacing(0)
        h.addWidget(self.view, 1)
        h.addWidget(side)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.status_label = QLabel("")
        self.status.addWidget(self.status_label, 1)

    @staticmethod
    def _separator() -> QFrame:
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setObjectName("sep")
        return line

    def _action(self, menu, text: str, slot, shortcuts=(), checkable: bool = False) -> QAction:
        act = QAction(text, self)
        if shortcuts:
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        menu.addAction(act)
        self.addAction(act)  # shortcuts work in full screen too, where the menu bar is hidden
        return act

    def _build_actions(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_open = self._action(f, "Open file…", self.open_file_dialog, ["Ctrl+O"])
        self._action(f, "Open folder of images…", self.open_folder_dialog, ["Ctrl+Shift+O"])
        self.act_camera = self._action(f, "Open camera…", self.open_camera_dialog, ["Ctrl+K"])
        f.addSeparator()
        self.act_snapshot = self._action(f, "Snapshot (PNG)", self.snapshot, ["S"])
        self.act_record = self._action(f, "Record (MP4)", self.toggle_record, ["R"], checkable=True)
        f.addSeparator()
        self._action(f, "Quit", self.close, ["Ctrl+Q"])

        pm = mb.addMenu("&Playback")
        self.act_pause = self._action(pm, "Play / pause", self.toggle_pause, ["Space"])
        self.act_step = self._action(pm, "Step one frame", self.step, ["Right", "."])
        self.act_loop = self._action(pm, "Loop", self.set_loop, ["L"], checkable=True)
        self.act_loop.setChecked(self.opts.loop)
        self._action(pm, "Slower", lambda: self.change_speed(-1), ["["])
        self._action(pm, "Faster", lambda: self.change_speed(+1), ["]"])

        om = mb.addMenu("&Overlay")
        self.act_heatmap = self._action(om, "Heat map", lambda checked: self.set_heatmap(checked), ["H"],
                                        checkable=True)
        self.act_heatmap.setChecked(self.settings.heatmap)
        self.act_cam = self._action(om, "Next CAM class", self.cycle_cam_class, ["C"])
        self.act_cmap = self._action(om, "Next colormap", self.cycle_colormap, ["M"])
        for a in (self.act_heatmap, self.act_cam, self.act_cmap):
            a.setEnabled(self.opts.show_predictions)

        vm = mb.addMenu("&View")
        self._action(vm, "Full screen", self.toggle_fullscreen, ["F11"])

        if self.opts.study is not None:
            sm = mb.addMenu("&Study")
            self.study_call_actions: list[QAction] = []
            for k in range(1, 10):
                act = self._action(sm, f"Call {k}", lambda _=False, k=k: self.study_call(k), [str(k)])
                act.setVisible(False)
                self.study_call_actions.append(act)
            self._action(sm, "Flag this frame", self.study_flag, ["F"])

        hm = mb.addMenu("&Help")
        self._action(hm, "Keyboard shortcuts", self.show_help, ["F1", "?"])
        self._action(hm, "About sonolens", self.show_about)

    # ================================================================================================ start / sources
    def start(self) -> bool:
        """Load the model and open the first source. Returns False when the viewer cannot continue."""
        try:
            self.engine = None if self.opts.model is None else (self._given_engine
                                                                 or open_engine(self.opts.model, self.opts.threads))
        except SonolensError as exc:
            self.fatal(str(exc), exc)
            return False
        if self.engine is not None:
            names = tuple(self.engine.meta.class_names)
            self.call_labels = names
            for i in range(self.cam_combo.count() - 1, 0, -1):
                self.cam_combo.removeItem(i)
            self.cam_combo.addItems(list(names))
            meta = self.engine.meta
            self.model_label.setText(f"model: {meta.arch} · {', '.join(names)}"
                                     + ("" if meta.trained else " · <span style='color:#f85149'><b>UNTRAINED"
                                                                "</b> (random weights)</span>"))
        else:
            self.model_label.setText("no model loaded" + (" (study condition: off)" if self.opts.study else ""))
        if self.opts.study is not None:
            self._open_study_log()
            for k, act in enumerate(self.study_call_actions, start=1):
                act.setVisible(k <= len(self.call_labels))
                act.setEnabled(k <= len(self.call_labels))
                if k <= len(self.call_labels):
                    act.setText(f"Call: {self.call_labels[k - 1]}")
        self._update_bars_placeholder()
        if self.opts.source:
            return self.open_source(self.opts.source, initial=True)
        self.view.placeholder = "No source. Open a file (Ctrl+O) or a camera (Ctrl+K)."
        self.view.update()
        return True

    def _open_study_log(self) -> None:
        s = self.opts.study
        meta = self.engine.meta if self.engine is not None else None
        model = None if meta is None else {"arch": meta.arch, "classes": list(meta.class_names),
                                           "input_size": list(meta.input_size), "trained": meta.trained,
                                           "version": meta.version, "provenance": meta.provenance,
                                           "path": (str(Path(self.opts.model).resolve())
                                                    if Path(str(self.opts.model)).is_file() else str(self.opts.model))}
        self.study = StudyLog(s.log, participant=s.participant, condition=s.condition,
                              source=str(self.opts.source), model=model,
                              class_names=list(meta.class_names) if meta else [], call_labels=self.call_labels,
                              extra={"selfcheck": self.opts.selfcheck})

    def _cfg(self, spec: str) -> PipelineConfig:
        return PipelineConfig(source=spec, model=self.opts.model, realtime=self.opts.realtime, loop=self.opts.loop,
                              speed=self.opts.speed, roi=self.opts.roi, threads=self.opts.threads, cam=self.opts.cam,
                              ema=self.opts.ema, queue=self.opts.queue)

    def open_source(self, spec: str, initial: bool = False) -> bool:
        """Start a pipeline on ``spec`` and then stop the current one (if any): a source that cannot be opened
        leaves what was playing untouched. Errors → dialog; the window stays (automation: exit code 2)."""
        self.generation += 1
        bridge = FrameBridge(self.settings, self.generation)
        bridge.frame_ready.connect(lambda b=bridge: self._on_frame_ready(b), Qt.ConnectionType.QueuedConnection)
        self.settings.area = self.view.area_size()
        try:
            pipe = build_viewer_pipeline(self._cfg(spec), [bridge], selfcheck=self.opts.selfcheck, engine=self.engine)
        except SonolensError as exc:
            self.error_dialog(str(exc))
            if self.pipe is None:
                self.view.placeholder = f"Could not open {spec}: {exc}\nOpen a file (Ctrl+O) or a camera (Ctrl+K)."
                self.view.update()
            if self.opts.automation:
                self.exit_code = 2
                QTimer.singleShot(0, lambda: self.finish(2))
            return False
        self._stop_pipeline(wait=False)
        self.pipe, self.bridge, self.source_spec = pipe, bridge, spec
        self.paused = self.ended = False
        self.held.clear()
        self.step_credit = 0
        self.last_error = None
        self._resume_ns = time.perf_counter_ns()
        self.view.state_text = ""
        cam_ok = self.engine is not None and pipe.worker.cam_enabled and self.opts.show_predictions
        self.cam_combo.setEnabled(cam_ok)
        self.act_cam.setEnabled(cam_ok)
        pipe.worker.cam_class = None if self.cam_combo.currentIndex() <= 0 else self.cam_combo.currentIndex() - 1
        w, h = pipe.info.width, pipe.info.height
        if isinstance(pipe.source, StampingSource):
            h += band_height(w)
        bridge.warm_up(w, h)
        pipe.start()
        if self.study is not None and not initial:
            self.study.event("source_opened", None, source=spec)
        self.setWindowTitle(f"sonolens — {pipe.info.name} — {RESEARCH_NOTICE}")
        self._set_status()
        return True

    def _stop_pipeline(self, wait: bool = True) -> None:
        pipe, bridge = self.pipe, self.bridge
        if pipe is None:
            return
        self._stop_recording()
        if bridge is not None:
            bridge.enabled = False
            self._skipped_bridges += bridge.skipped
        self._dropped_old += pipe.queue.dropped
        self.pipe = self.bridge = None
        if wait:
            pipe.stop()
        else:  # a camera can take a moment to let go: never on the GUI thread
            import threading

            threading.Thread(target=pipe.stop, name="sonolens-stop", daemon=True).start()

    # ================================================================================================ frames
    def _on_frame_ready(self, bridge: FrameBridge) -> None:
        df = bridge.take()
        if df is None or bridge is not self.bridge:
            return
        if self.paused:
            if self.step_credit > 0:
                self.step_credit -= 1
                self._show(df)
            else:
                self.held.append(df)
                while len(self.held) > 8:
                    self.held.popleft()
                    self._skipped_other += 1
            return
        self._show(df)

    def _show(self, df: DisplayFrame) -> None:
        self.current = df
        r = df.result
        if self.opts.show_predictions and r.probs.size:
            self.bars.set_values(r.class_names, r.probs, r.top_class)
            name = r.class_names[r.top_class]
            self.view.chip = (f"{name}  {100 * float(r.probs[r.top_class]):.0f}%", class_color(name, r.top_class))
        self.view.set_frame(df)

    def _on_new_frame_painted(self, df: DisplayFrame, t_paint_ns: int) -> None:
        self.stats.painted(t_paint_ns)
        self.stats.add("paint", self.view.last_paint_ms)
        # after this paint is flushed to the window: read the pixels back, log, check automation
        self._after_queue.append((df, t_paint_ns))
        QTimer.singleShot(0, self._drain_after_paint)

    def _drain_after_paint(self) -> None:
        while self._after_queue:
            self._after_paint(*self._after_queue.popleft())

    def _after_paint(self, df: DisplayFrame, t_paint_ns: int) -> None:
        r = df.result
        t = r.timings
        self.stats.add("result_to_paint", (t_paint_ns - t.t_delivered_ns) / 1e6)
        self.stats.add("render", (df.t_ready_ns - t.t_delivered_ns) / 1e6)  # worker side: blend, scale, QImage
        self.stats.add("ready_to_paint", (t_paint_ns - df.t_ready_ns) / 1e6)  # signal delivery + paint
        self.stats.add("capture_to_paint", (t_paint_ns - t.t_captured_ns) / 1e6)
        c2p = None
        current = self.bridge is not None and df.generation == self.bridge.generation
        if self.probe is not None and self.pipe is not None and current:
            rect = self.view.image_rect(df)
            t_stamp, ms = self.probe.measure(r.frame.shape, rect) if rect else (None, None)
            if ms is None:
                self.stats.selfcheck_failed += 1
            else:
                self.stats.selfcheck_ok += 1
                # a frame held back by pause/step waited for the user, not for the pipeline
                if not self.paused and t_stamp >= self._resume_ns:
                    c2p = ms
                    self.stats.add("capture_to_pixels", ms)
                    self.pipe.telemetry.add_sample("capture_to_pixels", ms)
        if self.study is not None:
            self.study.frame(r.index, pts_s=r.timings.pts_s, probs=r.probs if r.probs.size else None,
                             top_class=r.top_class if r.probs.size else None,
                             shown=self.opts.show_predictions and bool(r.probs.size),
                             capture_to_result_ms=(t.t_delivered_ns - t.t_captured_ns) / 1e6,
                             capture_to_pixels_ms=c2p, t_ns=t_paint_ns)
        n = self.opts.exit_after_frames
        if n and self.stats.frames_displayed >= n and not self._finishing:
            self.finish(self._rc_at_end())

    def _rerender_current(self) -> None:
        """Re-render the frame on screen (settings changed or the window was resized while paused/ended)."""
        self.settings.area = self.view.area_size()
        df = self.current
        if df is None:
            return
        if self.paused or self.ended or self.pipe is None:
            area = tuple(self.settings.area)
            rgb, rect, blended = render_rgb(df.result, self.settings, area)
            self.current = replace(df, image=to_qimage(rgb), rect=rect, area=area,
                                   heatmap=blended)
            self.view.set_frame(self.current)

    def _view_resized(self) -> None:
        self.settings.area = self.view.area_size()  # the worker renders the next frame at the new size
        if hasattr(self, "_resize_timer"):
            self._resize_timer.start()  # and a frozen frame is re-rendered once resizing settles

    # ================================================================================================ controls
    def toggle_pause(self) -> None:
        if self.pipe is None:
            return
        if self.paused:
            self.paused = False
            self._skipped_other += len(self.held)
            self.held.clear()
            self.step_credit = 0
            self._resume_ns = time.perf_counter_ns()
            self.pipe.capture.resume()
            self._study_event("unfreeze")
        else:
            self.paused = True
            self.pipe.capture.pause()
            self._study_event("freeze")
        self._set_status()

    def step(self) -> None:
        if self.pipe is None:
            return
        if not self.paused:
            self.toggle_pause()
            return
        if self.held:
            self._show(self.held.popleft())
        else:
            self.step_credit += 1
            self.pipe.capture.step()
        self._study_event("step")

    def set_loop(self, on: bool) -> None:
        self.opts.loop = bool(on)
        if self.act_loop.isChecked() != self.opts.loop:
            self.act_loop.setChecked(self.opts.loop)
        if self.pipe is not None:
            self.pipe.capture.loop = self.opts.loop
            if self.ended and self.opts.loop and self.source_spec and self.last_error is None:
                self.open_source(self.source_spec)  # it had already ended: start again
        self._set_status()

    def change_speed(self, direction: int) -> None:
        cur = self.opts.speed
        if direction > 0:
            nxt = next((s for s in SPEEDS if s > cur + 1e-9), SPEEDS[-1])
        else:
            nxt = next((s for s in reversed(SPEEDS) if s < cur - 1e-9), SPEEDS[0])
        self.opts.speed = nxt
        if self.pipe is not None:
            self.pipe.capture.speed = nxt
            if isinstance(self.pipe.source, StampingSource):
                self.pipe.source.speed = nxt
        self._set_status()

    def set_heatmap(self, on: bool) -> None:
        on = bool(on) and self.opts.show_predictions
        self.settings.heatmap = on
        for w in (self.heatmap_box, self.act_heatmap):
            if w.isChecked() != on:
                w.blockSignals(True)
                w.setChecked(on)
                w.blockSignals(False)
        self._style_changed()

    def set_alpha(self, alpha: float) -> None:
        self.settings.alpha = float(alpha)
        self.opacity_label.setText(f"{int(round(alpha * 100))}%")
        if self.opacity.value() != int(round(alpha * 100)):
            self.opacity.setValue(int(round(alpha * 100)))
        self._style_changed()

    def set_colormap(self, name: str) -> None:
        if name not in COLORMAPS:
            return
        self.settings.colormap = name
        if self.cmap_combo.currentText() != name:
            self.cmap_combo.setCurrentText(name)
        self._style_changed()

    def cycle_colormap(self) -> None:
        names = list(COLORMAPS)
        self.set_colormap(names[(names.index(self.settings.colormap) + 1) % len(names)])

    def cycle_cam_class(self) -> None:
        if self.cam_combo.isEnabled() and self.cam_combo.count() > 1:
            self.cam_combo.setCurrentIndex((self.cam_combo.currentIndex() + 1) % self.cam_combo.count())

    def _cam_combo_changed(self, idx: int) -> None:
        if self.pipe is not None:
            self.pipe.worker.cam_class = None if idx <= 0 else idx - 1  # applies from the next frame
        self._set_status()

    def _style_changed(self) -> None:
        if self.recorder is not None:
            self.recorder.style.heatmap = self.settings.heatmap
            self.recorder.style.alpha = self.settings.alpha
            self.recorder.style.colormap = self.settings.colormap
        if self.paused or self.ended:
            self._rerender_current()

    def toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # -- files, snapshots, recording ----------------------------------------------------------------------------
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video or image", "",
                                              "Video and images (*.mp4 *.avi *.mov *.mkv *.webm *.png *.jpg *.jpeg "
                                              "*.bmp *.tif *.tiff);;All files (*)")
        if path:
            self.open_source(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if path:
            self.open_source(path)

    def open_camera_dialog(self) -> None:
        idx, ok = QInputDialog.getInt(self, "Open camera", "Camera index (0 = first camera):", 0, 0, 63)
        if ok:
            self.open_source(f"camera:{idx}")

    def _stamp_name(self, prefix: str, ext: str) -> str:
        idx = self.current.result.index if self.current else 0
        return f"{prefix}_{_dt.datetime.now():%Y%m%d_%H%M%S}_f{idx}.{ext}"

    def snapshot(self, path: str | None = None) -> Path | None:
        out = Path(path) if path else Path(self.opts.snapshot_dir) / self._stamp_name("sonolens", "png")
        ok = self.centralWidget().grab().save(str(out))
        self.status.showMessage(f"snapshot saved: {out}" if ok else f"could not save snapshot {out}", 4000)
        self._study_event("snapshot", path=str(out))
        return out if ok else None

    def toggle_record(self) -> None:
        if self.recorder is not None:
            self._stop_recording()
        elif self.pipe is not None:
            from sonolens.pipeline.record import Recorder

            out = Path(self.opts.record_dir) / self._stamp_name("sonolens", "mp4")
            style = OverlayStyle(heatmap=self.settings.heatmap, alpha=self.settings.alpha,
                                 colormap=self.settings.colormap, show_roi=self.opts.show_predictions,
                                 show_bars=self.opts.show_predictions, show_hud=True)
            pipe = self.pipe
            self.recorder = Recorder(out, fps=pipe.info.fps or 30.0, style=style,
                                     hud_source=lambda: {"fps": round(pipe.telemetry.live()["fps_processed"], 1)})
            pipe.worker.sinks = pipe.worker.sinks + [self.recorder]  # swap, never mutate a list being iterated
            self.status.showMessage(f"recording to {out}", 4000)
            self._study_event("record_start", path=str(out))
        self.act_record.setChecked(self.recorder is not None)
        self._set_status()

    def _stop_recording(self) -> None:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return
        if self.pipe is not None:
            self.pipe.worker.sinks = [s for s in self.pipe.worker.sinks if s is not rec]
        import threading

        threading.Thread(target=rec.close, name="sonolens-record-close", daemon=True).start()
        self._closing_recorders = getattr(self, "_closing_recorders", []) + [rec]
        self.status.showMessage(f"recording saved: {rec.path}", 4000)
        self._study_event("record_stop", path=str(rec.path))
        self.act_record.setChecked(False)

    # -- study -----------------------------------------------------------------------------------------------------
    def _study_event(self, kind: str, **fields) -> None:
        if self.study is not None:
            self.study.event(kind, self.current.result.index if self.current else None, **fields)

    def study_call(self, key: int) -> None:
        if self.study is None or key > len(self.call_labels):
            return
        r = self.current.result if self.current else None
        has_model = r is not None and r.probs.size > 0
        label = self.study.call(key, r.index if r else None, model_top=r.top_class if has_model else None,
                                model_probs=r.probs if has_model else None, class_names=r.class_names if r else ())
        self.status.showMessage(f"call recorded: {label} (frame {r.index if r else '–'})", 3000)
        self._set_status()

    def study_flag(self) -> None:
        if self.study is not None:
            self._study_event("flag")
            self.status.showMessage("flag recorded", 3000)
            self._set_status()

    # ================================================================================================ periodic
    def _tick(self) -> None:
        self._check_pipeline()
        self.refresh_hud()

    def _check_pipeline(self) -> None:
        pipe = self.pipe
        if pipe is None or self.ended or not pipe.worker.finished.is_set():
            return
        if self.bridge is not None:  # a last frame may still be waiting
            self._on_frame_ready(self.bridge)
        self.ended = True
        err = pipe.error
        if err is not None:
            self.last_error = str(err)
            self.errors.append(self.last_error)
            self._study_event("source_error", message=self.last_error)
            if not self.opts.automation:
                self.error_dialog(self.last_error)
        else:
            self._study_event("end_of_stream")
        self._set_status()
        if self.opts.automation and not self._finishing:
            QTimer.singleShot(200, lambda: self.finish(self._rc_at_end()))  # let the last frame paint

    def _rc_at_end(self) -> int:
        if self.exit_code:
            return self.exit_code
        if self.last_error is not None or self.stats.frames_displayed == 0:
            return 1
        return 0

    @property
    def frames_skipped(self) -> int:
        return self._skipped_bridges + (self.bridge.skipped if self.bridge else 0) + self._skipped_other

    @property
    def frames_dropped_queue(self) -> int:
        return self._dropped_old + (self.pipe.queue.dropped if self.pipe else 0)

    def refresh_hud(self) -> None:
        pipe = self.pipe
        live = pipe.telemetry.live() if pipe else {"fps_processed": 0.0, "latency_ms": {}}
        fps_in = self.input_rate.sample(pipe.capture.frames_in) if pipe else 0.0
        disp = {k: self.stats.live(k) for k in ("result_to_paint", "capture_to_pixels") if k in self.stats.stages}
        lines = hud_lines(fps_in=fps_in, fps_processed=live["fps_processed"],
                          fps_display=self.stats.meter.rate() if not (self.paused or self.ended) else 0.0,
                          dropped_pipeline=self.frames_dropped_queue, skipped_display=self.frames_skipped,
                          pipeline_latency=live["latency_ms"], display_latency=disp, speed=self.opts.speed)
        if self.opts.selfcheck and self.probe is not None and self.probe.method:
            lines.append(f"  (stamp read back: {self.probe.method} grab)")
        self.hud.setText("\n".join(lines))
        if self.study is not None:
            self.study_label.setText(
                f"participant <b>{self.opts.study.participant}</b> · condition <b>{self.opts.study.condition}</b><br>"
                f"keys: " + ", ".join(f"{i + 1}={lab}" for i, lab in enumerate(self.call_labels))
                + ", F=flag, Space=freeze<br>"
                f"{self.study.events} events, {self.study.frames} frames logged")

    def _set_status(self) -> None:
        parts = []
        if self.pipe is not None:
            info = self.pipe.info
            parts.append(f"{info.name} ({info.kind}, {info.width}×{info.height}"
                         + (f", {info.fps:.4g} fps)" if info.fps else ")"))
        if self.current is not None:
            parts.append(f"frame {self.current.result.index}")
        if self.opts.speed != 1.0:
            parts.append(f"speed ×{self.opts.speed:g}")
        if self.opts.loop:
            parts.append("loop")
        if self.recorder is not None:
            parts.append(f"● REC {self.recorder.path.name}")
        if self.opts.selfcheck:
            parts.append("self-check on: the strip below the image encodes each frame's capture time")
        self.status_label.setText("   ·   ".join(parts))
        if self.last_error:
            self.view.state_text, self.view.state_color = f"source error: {self.last_error}", RED
        elif self.ended:
            self.view.state_text, self.view.state_color = "■ end of stream", NOTICE
        elif self.paused:
            self.view.state_text, self.view.state_color = ("❚❚ FROZEN" if self.study else "❚❚ PAUSED"), TEXT
        elif self.recorder is not None:
            self.view.state_text, self.view.state_color = "● REC", RED
        else:
            self.view.state_text = ""
        self.view.update()

    def _update_bars_placeholder(self) -> None:
        if self.opts.study is not None and self.opts.study.condition == "blinded":
            self.bars.set_hidden("Predictions hidden (blinded study condition).\nThe model runs and is logged.")
            self.view.chip = ("blinded", MUTED)
        elif self.engine is None:
            self.bars.set_hidden("No model: frames only.")
            self.view.chip = ("no model", MUTED)
        else:
            self.bars.set_hidden("waiting for the first frame…")

    # ================================================================================================ dialogs, exit
    def error_dialog(self, message: str) -> None:
        """An error the user must see. Modal when someone is there; in an automated run it never blocks and the
        message also goes to stderr as one line."""
        self.errors.append(message)
        if self.opts.automation:
            self._print_error(message)
            box = QMessageBox(QMessageBox.Icon.Critical, "sonolens", message, QMessageBox.StandardButton.Ok, self)
            box.setModal(False)
            box.show()
            self._error_box = box
        else:
            QMessageBox.critical(self, "sonolens", message)

    def _print_error(self, message: str) -> None:
        if message not in self._printed:
            self._printed.add(message)
            print(f"sonolens: error: {message}", file=sys.stderr)

    def fatal(self, message: str, exc: Exception | None = None) -> None:
        """Cannot continue (no usable model): one line on stderr, a dialog, exit code 2."""
        self.exit_code = getattr(exc, "exit_code", 2) if exc is not None else 2
        self._print_error(message)
        self.error_dialog(message)
        QTimer.singleShot(0, lambda: self.finish(self.exit_code))

    def show_help(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        if self.opts.study is not None:
            rows += "<tr><td colspan=2><br><b>Study mode</b></td></tr>" + "".join(
                f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in STUDY_SHORTCUTS)
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                          f"<table>{rows}</table><p><i>{RESEARCH_NOTICE}</i></p>", QMessageBox.StandardButton.Close,
                          self)
        box.setModal(False)
        box.show()
        self._help_box = box

    def show_about(self) -> None:
        QMessageBox.about(self, "About sonolens",
                          f"sonolens {__version__}: real-time ultrasound AI overlay on a CPU.<br><b>{RESEARCH_NOTICE}</b>"
                          "<br>Never a diagnostic device.")

    def report(self) -> dict:
        """The automation report: display-side figures plus the pipeline's own report."""
        lat = self.stats.summary()
        screen = self.screen()
        out = {
            "display_fps": self.stats.display_fps,
            "frames_displayed": self.stats.frames_displayed,
            "frames_dropped": self.frames_dropped_queue + self.frames_skipped,
            "frames_dropped_queue": self.frames_dropped_queue,
            "frames_skipped_display": self.frames_skipped,
            "dropped_indices": (list(self._last_pipe.queue.dropped_indices[:100]) if self._last_pipe else []),
            "latency_ms": lat,
            "selfcheck": {"enabled": self.opts.selfcheck, "method": self.probe.method if self.probe else None,
                          "decoded": self.stats.selfcheck_ok, "failed": self.stats.selfcheck_failed},
            "window": {"width": self.width(), "height": self.height(), "platform": QGuiApplication.platformName(),
                       "screen": screen.name() if screen else None,
                       "device_pixel_ratio": self.devicePixelRatioF()},
            "source": self.source_spec,
            "errors": list(self.errors),
            "wall_s": time.perf_counter() - self._t_start,
            "pipeline": None,
        }
        if self._last_pipe is not None:
            out["pipeline"] = self._last_pipe.report()
        if self.opts.study is not None:
            out["study"] = {"log": self.opts.study.log, "condition": self.opts.study.condition,
                            "frames_logged": self.study.frames if self.study else 0,
                            "events_logged": self.study.events if self.study else 0}
        return out

    _last_pipe = None

    def finish(self, rc: int = 0) -> None:
        """Screenshot, stop, report, close the log and quit with ``rc`` (automation and normal close alike)."""
        if self._finishing:
            return
        self._finishing = True
        if self.pipe is not None:  # freeze the run here: what happens while we shut down is not part of it
            self.pipe.capture.pause()
        if self.bridge is not None:
            self.bridge.enabled = False
        self._drain_after_paint()  # every painted frame gets its log line and measurement
        self.exit_code = rc
        self.hud_timer.stop()
        self.refresh_hud()
        if self.opts.screenshot:
            self.hud.repaint()
            ok = self.grab().save(self.opts.screenshot)
            if not ok:
                self.errors.append(f"could not write screenshot {self.opts.screenshot}")
        self._last_pipe = self.pipe
        self._stop_recording()
        for rec in getattr(self, "_closing_recorders", []):
            rec.close()
        self._stop_pipeline(wait=True)
        if self.opts.report:
            Path(self.opts.report).write_text(json.dumps(self.report(), indent=2, default=str))
        if self.study is not None:
            self.study.close(frames_displayed=self.stats.frames_displayed, exit_code=rc)
        self.exit_hook(rc)

    @staticmethod
    def exit_hook(rc: int) -> None:
        """Leave the application's event loop with ``rc`` (tests replace this)."""
        QApplication.instance().exit(rc)

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._finishing:
            self.finish(self.exit_code or 0)
        event.accept()

__all__ = ["ViewerWindow", "ViewerOptions", "StudyOptions", "SHORTCUTS"]
