"""The grid's widgets, menus and keyboard shortcuts (``sonolens view SRC1 … SRC4``), built once, connected by
``grid.GridWindow``.

Two streams side by side (2×1), three or four in a 2×2 grid. Each cell (``CellWidget``) is the single viewer's
``VideoView`` — the frame with its heat map, ROI box, research notice, state and prediction chip in its strip — and a
line below it (the stream's number and name, display rate, frames dropped, capture→result p99). One side panel for
all: the research notice, the model and its warnings, each stream's performance figures (hidden with
``--present``) and the keys. ``GridLayout`` is a ``layout.ViewerLayout`` with its own panel and menus; the model
line, warnings, help and about boxes are the viewer's.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QFont, QPalette
from PyQt6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QMainWindow, QSizePolicy, QVBoxLayout, QWidget

from sonolens import RESEARCH_NOTICE

from .bridge import RenderSettings
from .layout import ViewerLayout, heading, hud_label, separator
from .options import ViewerOptions
from .widgets import BG, VideoView

GRID_SHORTCUTS = [
    ("Space", "pause / resume every stream"), ("L", "loop the files"), ("[ / ]", "slower / faster playback"),
    ("H", "heat map on / off"), ("M", "next colormap"), ("F11", "full screen"), ("F1 or ?", "this help"),
    ("Esc, Q or Ctrl+Q", "quit"),
]
CELL_NOTICE = "⚠ Research use only"  # a cell's strip is narrow; the side panel carries the whole notice
SIDE_WIDTH = 280
GAP = QColor("#30363d")  # between the cells


def _fill(widget: QWidget, color: QColor) -> QWidget:
    pal = widget.palette()
    pal.setColor(QPalette.ColorRole.Window, color)
    widget.setPalette(pal)
    widget.setAutoFillBackground(True)
    return widget


class CellWidget(QWidget):
    """One stream's cell: its ``VideoView`` and the line below it (elided to the cell's width; ``line_text`` holds
    it whole)."""

    def __init__(self, k: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.k = k
        self.view = VideoView()
        self.view.notice = CELL_NOTICE
        self.view.strip_rows = 2  # the state has a row of its own: beside a wide chip it would not fit
        self.view.setMinimumSize(240, 180)
        self.view.placeholder = f"stream {k}: opening…"
        self.line = QLabel("")
        self.line.setObjectName("cellline")
        self.line.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # never widens the cell
        font = QFont(self.line.font())
        font.setPointSizeF(9.0)
        self.line.setFont(font)
        self.line.setStyleSheet("QLabel#cellline { color: #b5e8b5; background: #161b22; padding: 3px 10px; }")
        self.line_text = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.line)

    def set_line(self, text: str) -> None:
        self.line_text = text
        self._elide()

    def _elide(self) -> None:
        width = max(40, self.line.width() - 20)
        self.line.setText(self.line.fontMetrics().elidedText(self.line_text, Qt.TextElideMode.ElideRight, width))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()


class GridLayout(ViewerLayout):
    """The cells (``cells``, in the order the sources were given), the side panel, the status bar and the menus,
    on ``win``. ``view`` is the first cell's (what the single viewer's code reaches for)."""

    shortcuts = GRID_SHORTCUTS

    def __init__(self, win: QMainWindow, opts: ViewerOptions, settings: RenderSettings, n: int) -> None:
        self.n = n
        super().__init__(win, opts, settings)

    # -- widgets ---------------------------------------------------------------------------------------------------
    def _build_panel(self, settings: RenderSettings) -> None:
        grid = _fill(QWidget(), GAP)
        cells = QGridLayout(grid)
        cells.setContentsMargins(0, 0, 0, 0)
        cells.setSpacing(2)
        self.cells = [CellWidget(k) for k in range(1, self.n + 1)]
        for i, cell in enumerate(self.cells):
            cell.view.show_roi = self.opts.show_predictions
            cells.addWidget(cell, i // 2, i % 2)
        if self.n == 3:
            cells.addWidget(_fill(QWidget(), BG), 1, 1)  # the empty fourth place
        for i in range((self.n + 1) // 2):
            cells.setRowStretch(i, 1)
        cells.setColumnStretch(0, 1)
        cells.setColumnStretch(1, 1)
        self.view = self.cells[0].view
        self.study_label = None
        central = QWidget()
        h = QHBoxLayout(central)
        h.setContentsMargins(0, 0, 0, 0)
        h.setSpacing(0)
        h.addWidget(grid, 1)
        h.addWidget(self._side_panel())
        self.win.setCentralWidget(central)
        self.status_bar = self.win.statusBar()
        self.status_label = QLabel("")
        self.status_bar.addWidget(self.status_label, 1)

    def _side_panel(self) -> QWidget:
        side = QWidget()
        side.setObjectName("side")
        side.setFixedWidth(SIDE_WIDTH)
        lay = QVBoxLayout(side)
        lay.setContentsMargins(14, 12, 14, 12)
        lay.setSpacing(8)
        notice = QLabel(f"⚠ {RESEARCH_NOTICE}")
        notice.setWordWrap(True)
        notice.setStyleSheet("color: #f2cc60; font-weight: bold;")
        lay.addWidget(notice)
        lay.addWidget(heading("Model"))
        self._add_model_lines(lay)
        self.engineering = QWidget()  # the performance figures: hidden in presentation mode (--present)
        eng = QVBoxLayout(self.engineering)
        eng.setContentsMargins(0, 0, 0, 0)
        eng.setSpacing(8)
        eng.addWidget(separator())
        eng.addWidget(heading("Streams"))
        self.hud = hud_label()
        eng.addWidget(self.hud)
        self.engineering.setVisible(not self.opts.present)
        lay.addWidget(self.engineering)
        lay.addStretch(1)
        hint = QLabel("Space: pause all · H: heat map · Esc or Q: quit · F1: keys")
        hint.setObjectName("muted")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        return side

    # -- menus and shortcuts ---------------------------------------------------------------------------------------
    def _build_menus(self, settings: RenderSettings) -> None:
        mb = self.win.menuBar()
        f = mb.addMenu("&File")
        self.act_quit = self._action(f, "Quit", ["Ctrl+Q", "Esc", "Q"])
        pm = mb.addMenu("&Playback")
        self.act_pause = self._action(pm, "Play / pause every stream", ["Space"])
        self.act_loop = self._action(pm, "Loop", ["L"], checkable=True)
        self.act_loop.setChecked(self.opts.loop)
        self.act_slower = self._action(pm, "Slower", ["["])
        self.act_faster = self._action(pm, "Faster", ["]"])
        om = mb.addMenu("&Overlay")
        self.act_heatmap = self._action(om, "Heat map", ["H"], checkable=True)
        self.act_heatmap.setChecked(settings.heatmap)
        self.act_cmap = self._action(om, "Next colormap", ["M"])
        for a in (self.act_heatmap, self.act_cmap):
            a.setEnabled(self.opts.show_predictions)
        vm = mb.addMenu("&View")
        self.act_fullscreen = self._action(vm, "Full screen", ["F11"])
        hm = mb.addMenu("&Help")
        self.act_help = self._action(hm, "Keyboard shortcuts", ["F1", "?"])
        self.act_about = self._action(hm, "About sonolens")
        self.study_call_actions = []
        self.act_flag = None


__all__ = ["CellWidget", "GridLayout", "GRID_SHORTCUTS", "CELL_NOTICE"]
