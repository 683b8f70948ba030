"""The viewer's widgets, menus and keyboard shortcuts, built once and not connected to anything.

``ViewerLayout`` only builds: the window (``window.ViewerWindow``) connects each action and control to the
controller that handles it, so this module has no behaviour beyond the help and about boxes. Every action is
also added to the window itself, so its shortcut works in full screen, where the menu bar is hidden.
"""

from __future__ import annotations

import html

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QAction, QFont, QKeySequence
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from sonolens import RESEARCH_NOTICE, __version__
from sonolens.pipeline.overlay import COLORMAPS

from .bridge import RenderSettings
from .options import ViewerOptions
from .widgets import ProbBars, VideoView, style_dialog

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


def hud_label() -> QLabel:
    """The performance HUD: monospace, top-left, not selectable."""
    hud = QLabel("")
    hud.setObjectName("hud")
    mono = QFont("DejaVu Sans Mono")
    mono.setStyleHint(QFont.StyleHint.Monospace)
    mono.setPointSizeF(9.0)
    hud.setFont(mono)
    hud.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
    hud.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    return hud


def _no_focus(*widgets: QWidget) -> None:
    """Controls never take keyboard focus, so Space/arrows always reach the window's shortcuts."""
    for w in widgets:
        w.setFocusPolicy(Qt.FocusPolicy.NoFocus)


def heading(text: str) -> QLabel:
    lab = QLabel(text.upper())
    lab.setObjectName("heading")
    return lab


def separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setObjectName("sep")
    return line


class ViewerLayout:
    """The video view, the side panel (prediction, overlay controls, performance, study), the status bar and
    the menus, on ``win``."""

    shortcuts = SHORTCUTS  # the help box's table

    def __init__(self, win: QMainWindow, opts: ViewerOptions, settings: RenderSettings) -> None:
        self.win = win
        self.opts = opts
        self._build_panel(settings)
        self._build_menus(settings)

    # -- widgets ---------------------------------------------------------------------------------------------------
    def _build_panel(self, settings: RenderSettings) -> None:
        self.view = VideoView()
        self.view.show_roi = self.opts.show_predictions
        side = QWidget()
        side.setObjectName("side")
        side.setFixedWidth(300)
        lay = QVBoxLayout(side)
        lay.setContentsMargins(14, 12, 14, 12)
        lay.setSpacing(8)

        lay.addWidget(heading("Prediction"))
        self.bars = ProbBars()
        lay.addWidget(self.bars)
        self._add_model_lines(lay)

        # the engineering part (overlay controls, performance HUD): hidden in presentation mode (--present)
        main_lay = lay
        self.engineering = QWidget()
        lay = QVBoxLayout(self.engineering)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(8)
        main_lay.addWidget(self.engineering)
        lay.addWidget(separator())
        lay.addWidget(heading("Overlay"))
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setHorizontalSpacing(10)
        self.heatmap_box = QCheckBox("Grad-CAM heat map  (H)")
        self.heatmap_box.setChecked(settings.heatmap)
        form.addRow(self.heatmap_box)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(round(settings.alpha * 100)))
        self.opacity_label = QLabel(f"{self.opacity.value()}%")
        row = QHBoxLayout()
        row.addWidget(self.opacity)
        row.addWidget(self.opacity_label)
        form.addRow("Opacity", row)
        self.cam_combo = QComboBox()
        self.cam_combo.addItem("top class")
        form.addRow("CAM of (C)", self.cam_combo)
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(list(COLORMAPS))
        self.cmap_combo.setCurrentText(settings.colormap)
        form.addRow("Colormap (M)", self.cmap_combo)
        lay.addLayout(form)
        _no_focus(self.heatmap_box, self.opacity, self.cam_combo, self.cmap_combo)
        if not self.opts.show_predictions:
            for w in (self.heatmap_box, self.opacity, self.cam_combo, self.cmap_combo):
                w.setEnabled(False)

        lay.addWidget(separator())
        lay.addWidget(heading("Performance"))
        self.hud = hud_label()
        lay.addWidget(self.hud)
        self.engineering.setVisible(not self.opts.present)
        lay = main_lay
        self.study_label: QLabel | None = None
        if self.opts.study is not None:
            lay.addWidget(separator())
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
        self.win.setCentralWidget(central)
        self.status_bar = self.win.statusBar()
        self.status_label = QLabel("")
        self.status_bar.addWidget(self.status_label, 1)

    def _add_model_lines(self, lay: QVBoxLayout) -> None:
        """The model line and, in red below it, the pipeline's warnings (untrained model, no gate, gate off)."""
        self.model_label = QLabel("")
        self.model_label.setObjectName("muted")
        self.model_label.setWordWrap(True)
        lay.addWidget(self.model_label)
        self.warnings_label = QLabel("")
        self.warnings_label.setObjectName("warnings")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextFormat(Qt.TextFormat.RichText)
        self.warnings_label.setVisible(False)
        lay.addWidget(self.warnings_label)
        self.warnings: list[str] = []

    def show_model(self, meta) -> None:
        """The model line under the bars: architecture and classes, loudly marked when untrained."""
        if meta is None:
            self.model_label.setText("no model loaded" + (" (study condition: off)" if self.opts.study else ""))
            return
        self.model_label.setText(f"model: {meta.arch} · {', '.join(meta.class_names)}"
                                 + ("" if meta.trained else " · <span style='color:#f85149'><b>UNTRAINED"
                                                            "</b> (random weights)</span>"))

    def show_warnings(self, warnings: list[str]) -> None:
        """What the user must know about the predictions (``Pipeline.warnings()``), in red under the model line."""
        self.warnings = list(warnings)
        self.warnings_label.setText("<br>".join(f"<span style='color:#f85149'>⚠ {html.escape(w)}</span>"
                                                for w in self.warnings))
        self.warnings_label.setVisible(bool(self.warnings))

    # -- menus and shortcuts ---------------------------------------------------------------------------------------
    def _action(self, menu: QMenu, text: str, shortcuts=(), checkable: bool = False) -> QAction:
        act = QAction(text, self.win)
        if shortcuts:
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setCheckable(checkable)
        menu.addAction(act)
        self.win.addAction(act)  # shortcuts work in full screen too, where the menu bar is hidden
        return act

    def _build_menus(self, settings: RenderSettings) -> None:
        mb = self.win.menuBar()
        f = mb.addMenu("&File")
        self.act_open = self._action(f, "Open file…", ["Ctrl+O"])
        self.act_open_folder = self._action(f, "Open folder of images…", ["Ctrl+Shift+O"])
        self.act_camera = self._action(f, "Open camera…", ["Ctrl+K"])
        f.addSeparator()
        self.act_snapshot = self._action(f, "Snapshot (PNG)", ["S"])
        self.act_record = self._action(f, "Record (MP4)", ["R"], checkable=True)
        f.addSeparator()
        self.act_quit = self._action(f, "Quit", ["Ctrl+Q"])

        pm = mb.addMenu("&Playback")
        self.act_pause = self._action(pm, "Play / pause", ["Space"])
        self.act_step = self._action(pm, "Step one frame (--hold: the next image)", ["Right", "."])
        self.act_loop = self._action(pm, "Loop", ["L"], checkable=True)
        self.act_loop.setChecked(self.opts.loop)
        self.act_slower = self._action(pm, "Slower", ["["])
        self.act_faster = self._action(pm, "Faster", ["]"])

        om = mb.addMenu("&Overlay")
        self.act_heatmap = self._action(om, "Heat map", ["H"], checkable=True)
        self.act_heatmap.setChecked(settings.heatmap)
        self.act_cam = self._action(om, "Next CAM class", ["C"])
        self.act_cmap = self._action(om, "Next colormap", ["M"])
        for a in (self.act_heatmap, self.act_cam, self.act_cmap):
            a.setEnabled(self.opts.show_predictions)

        vm = mb.addMenu("&View")
        self.act_fullscreen = self._action(vm, "Full screen", ["F11"])

        self.study_call_actions: list[QAction] = []
        self.act_flag: QAction | None = None
        if self.opts.study is not None:
            sm = mb.addMenu("&Study")
            for k in range(1, 10):
                act = self._action(sm, f"Call {k}", [str(k)])
                act.setVisible(False)
                self.study_call_actions.append(act)
            self.act_flag = self._action(sm, "Flag this frame", ["F"])

        hm = mb.addMenu("&Help")
        self.act_help = self._action(hm, "Keyboard shortcuts", ["F1", "?"])
        self.act_about = self._action(hm, "About sonolens")

    def show_call_labels(self, labels: tuple[str, ...]) -> None:
        """Study mode: one call key per class, named after it; the other digit keys do nothing."""
        for k, act in enumerate(self.study_call_actions, start=1):
            act.setVisible(k <= len(labels))
            act.setEnabled(k <= len(labels))
            if k <= len(labels):
                act.setText(f"Call: {labels[k - 1]}")

    # -- help ------------------------------------------------------------------------------------------------------
    def show_help(self) -> QMessageBox:
        """The shortcuts table, in a box that does not block the window."""
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in self.shortcuts)
        if self.opts.study is not None:
            rows += "<tr><td colspan=2><br><b>Study mode</b></td></tr>" + "".join(
                f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in STUDY_SHORTCUTS)
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                          f"<table>{rows}</table><p><i>{RESEARCH_NOTICE}</i></p>", QMessageBox.StandardButton.Close,
                          self.win)
        style_dialog(box)  # light text on a dark ground, whatever the platform's palette
        box.setModal(False)
        box.show()
        self.help_box = box
        return box

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "About sonolens",
                          f"sonolens {__version__}: real-time ultrasound AI overlay on a CPU.<br><b>{RESEARCH_NOTICE}"
                          "</b><br>Never a diagnostic device.", QMessageBox.StandardButton.Close, self.win)
        style_dialog(box)
        box.exec()


__all__ = ["ViewerLayout", "SHORTCUTS", "STUDY_SHORTCUTS", "hud_label", "heading", "separator"]
