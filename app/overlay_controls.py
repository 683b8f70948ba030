"""The heat-map controls: on/off, opacity, colormap, which class's CAM, and re-rendering a still frame.

The settings (``bridge.RenderSettings``) are plain attributes the worker reads for the next frame. While the
picture stands still (paused, ended) nothing new arrives, so a change re-renders the frame on screen here, on
the GUI thread; so does a resize once it settles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from sonolens.pipeline.overlay import COLORMAPS

from .bridge import rerendered

if TYPE_CHECKING:
    from .window import ViewerWindow


class OverlayControls(QObject):
    """Keeps ``win.settings``, the side-panel controls and their menu actions in step."""

    style_changed = pyqtSignal()  # heat map, opacity or colormap changed (a recording follows)
    cam_class_changed = pyqtSignal()

    def __init__(self, win: ViewerWindow) -> None:
        super().__init__(win)
        self.win = win
        self.ui = win.ui
        self.settings = win.settings
        self.playing = win.model.playback  # reads it; re-renders the frame on screen in place while still
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(60)
        self._resize_timer.timeout.connect(self.rerender_current)
        ui = self.ui
        ui.heatmap_box.toggled.connect(self.set_heatmap)
        ui.act_heatmap.triggered.connect(lambda checked: self.set_heatmap(checked))
        ui.opacity.valueChanged.connect(lambda v: self.set_alpha(v / 100.0))
        ui.cam_combo.currentIndexChanged.connect(self._cam_combo_changed)
        ui.cmap_combo.currentTextChanged.connect(self.set_colormap)
        ui.act_cam.triggered.connect(self.cycle_cam_class)
        ui.act_cmap.triggered.connect(self.cycle_colormap)
        ui.view.on_resized = self._view_resized

    # -- heat map style --------------------------------------------------------------------------------------------
    def set_heatmap(self, on: bool) -> None:
        on = bool(on) and self.win.opts.show_predictions
        self.settings.heatmap = on
        for w in (self.ui.heatmap_box, self.ui.act_heatmap):
            if w.isChecked() != on:
                w.blockSignals(True)
                w.setChecked(on)
                w.blockSignals(False)
        self._changed()

    def set_alpha(self, alpha: float) -> None:
        self.settings.alpha = float(alpha)
        pct = int(round(alpha * 100))
        self.ui.opacity_label.setText(f"{pct}%")
        if self.ui.opacity.value() != pct:
            self.ui.opacity.setValue(pct)
        self._changed()

    def set_colormap(self, name: str) -> None:
        if name not in COLORMAPS:
            return
        self.settings.colormap = name
        if self.ui.cmap_combo.currentText() != name:
            self.ui.cmap_combo.setCurrentText(name)
        self._changed()

    def cycle_colormap(self) -> None:
        names = list(COLORMAPS)
        self.set_colormap(names[(names.index(self.settings.colormap) + 1) % len(names)])

    def _changed(self) -> None:
        self.style_changed.emit()
        if self.playing.still:
            self.rerender_current()

    # -- CAM class -------------------------------------------------------------------------------------------------
    def set_classes(self, names: tuple[str, ...]) -> None:
        """The model's classes as CAM choices after "top class"."""
        combo = self.ui.cam_combo
        for i in range(combo.count() - 1, 0, -1):
            combo.removeItem(i)
        combo.addItems(list(names))

    @property
    def cam_class(self) -> int | None:
        """The class whose CAM is shown; None = each frame's top class."""
        idx = self.ui.cam_combo.currentIndex()
        return None if idx <= 0 else idx - 1

    def enable_cam(self, on: bool) -> None:
        self.ui.cam_combo.setEnabled(on)
        self.ui.act_cam.setEnabled(on)

    def cycle_cam_class(self) -> None:
        combo = self.ui.cam_combo
        if combo.isEnabled() and combo.count() > 1:
            combo.setCurrentIndex((combo.currentIndex() + 1) % combo.count())

    def _cam_combo_changed(self, _idx: int) -> None:
        self.cam_class_changed.emit()  # the pipeline applies it from the next frame

    # -- re-rendering ----------------------------------------------------------------------------------------------
    def rerender_current(self) -> None:
        """Re-render the frame on screen (settings changed or the window was resized while paused/ended)."""
        self.settings.area = self.ui.view.area_size()
        pb = self.playing
        df = pb.current
        if df is None or not pb.still:
            return
        pb.current = rerendered(df, self.settings, self.settings.area)
        self.ui.view.set_frame(pb.current)

    def _view_resized(self) -> None:
        self.settings.area = self.ui.view.area_size()  # the worker renders the next frame at the new size
        self._resize_timer.start()  # and a frozen frame is re-rendered once resizing settles


__all__ = ["OverlayControls"]
