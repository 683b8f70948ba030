"""Capture→pixels latency measured from the window's own pixels (see ``pipeline/stamp.py`` for the stamp).

After a new frame is painted, ``PixelProbe.measure`` reads back the part of the window where the stamp band was
drawn, decodes the capture time from the pixels and subtracts it from "now". Two ways to read pixels back:

* ``screen``: ``QScreen.grabWindow`` — what the window system holds for the window (the X server's framebuffer
  under X11/Xvfb; the flushed backing store on the offscreen platform). Preferred: it is what was put on screen.
* ``widget``: ``QWidget.grab`` — renders the widget again into a pixmap. Used when the screen grab is not
  possible (some Wayland compositors refuse) or returns no readable stamp.

The probe settles on the first method that decodes and reports which one it used. Nothing here trusts the
pipeline's timestamps: the only input is pixels and ``perf_counter_ns`` now.

``build_viewer_pipeline`` puts the stamp into the pipeline: ``StampHook`` runs on the capture thread right after
each frame is paced and pads it with the band, and ``ImageAreaPreprocessor`` shows the model only the image above
the band. ``SelfCheck`` measures each painted frame and feeds the display statistics and the pipeline telemetry.
"""

from __future__ import annotations

import time

import numpy as np
from PyQt6.QtCore import QPoint, QRect
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QWidget

from sonolens.pipeline.stamp import ImageAreaPreprocessor, StampHook, StampLayout, band_height, decode_stamp
from sonolens.pipeline.stream import Pipeline, PipelineConfig, build
from sonolens.pipeline.telemetry import Telemetry

from .bridge import DisplayFrame
from .hud import DisplayStats


def qimage_to_array(img: QImage) -> np.ndarray:
    """H×W×4 uint8 copy of a QImage (converted to RGB32; channel order B,G,R,X on little-endian)."""
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    ptr = img.constBits()
    ptr.setsize(h * bpl)
    return np.frombuffer(ptr, np.uint8).reshape(h, bpl // 4, 4)[:, :w].copy()


def layout_for_frame(frame_shape: tuple[int, ...]) -> StampLayout:
    """The stamp layout of a padded frame of this shape (the band height depends on the width only)."""
    fh, fw = frame_shape[:2]
    return StampLayout.for_width(fw, fh - band_height(fw))


def build_viewer_pipeline(cfg: PipelineConfig, sinks=(), *, selfcheck: bool = False, engine=None) -> Pipeline:
    """``pipeline.stream.build`` plus, with ``selfcheck``, the latency stamp (``pipeline.stamp``).

    The capture thread calls ``StampHook`` on every frame right after pacing it: the frame gets the band with
    its capture time below it, and the model/ROI detector see only the image above the band
    (``ImageAreaPreprocessor``). The engine needs no warm-up here: ``OnnxEngine`` runs once when it loads.
    """
    if not selfcheck:
        return build(cfg, sinks, engine)
    return build(cfg, sinks, engine, capture_hook=StampHook(), wrap_preprocessor=ImageAreaPreprocessor)


class PixelProbe:
    """Reads the stamp of a painted frame back from the window's pixels."""

    METHODS = ("screen", "widget")

    def __init__(self, view: QWidget, method: str | None = None) -> None:
        self.view = view
        self.method = method  # None: try screen, then widget, and keep the first that works
        self.failures = 0

    def _grab(self, method: str, rect: QRect) -> np.ndarray | None:
        if method == "screen":
            win = self.view.window()
            handle = win.windowHandle()
            if handle is None or handle.screen() is None:
                return None
            top_left = self.view.mapTo(win, rect.topLeft())
            pm = handle.screen().grabWindow(win.winId(), top_left.x(), top_left.y(), rect.width(), rect.height())
        else:
            pm = self.view.grab(rect)
        if pm.isNull() or pm.width() == 0:
            return None
        arr = qimage_to_array(pm.toImage())
        if arr.shape[1] != rect.width() or arr.shape[0] != rect.height():  # HiDPI: back to logical pixels
            import cv2

            arr = cv2.resize(arr, (rect.width(), rect.height()), interpolation=cv2.INTER_AREA)
        return arr

    def measure(self, frame_shape: tuple[int, ...], image_rect: tuple[int, int, int, int]
                ) -> tuple[int | None, float | None]:
        """Read the stamp of the frame drawn at ``image_rect`` (view coordinates of the whole padded frame).

        Returns (stamped capture time in ns, latency in ms), or (None, None) when no stamp could be read.
        """
        if band_height(frame_shape[1]) == 0:
            self.failures += 1
            return None, None  # a frame too narrow to carry a stamp
        layout = layout_for_frame(frame_shape)
        x, y, w, h = image_rect
        fh = layout.frame_shape[0]
        sy = h / fh
        band_top = int(np.floor(y + layout.image_height * sy))
        grab = QRect(QPoint(int(x), band_top), QPoint(int(x + w - 1), int(np.ceil(y + h - 1))))
        grab = grab.intersected(self.view.rect())
        if grab.isEmpty():
            return None, None
        order = (self.method,) + tuple(m for m in self.METHODS if m != self.method) if self.method else self.METHODS
        for method in order:
            arr = self._grab(method, grab)
            if arr is None:
                continue
            t_stamp = decode_stamp(arr, layout, (x - grab.x(), y - grab.y(), w, h))
            now = time.perf_counter_ns()
            if t_stamp is not None:
                self.method = method
                return t_stamp, (now - t_stamp) / 1e6
        self.failures += 1
        return None, None


class SelfCheck:
    """Capture→pixels latency of each painted frame, into ``DisplayStats`` and the pipeline's telemetry."""

    def __init__(self, view, stats: DisplayStats) -> None:
        self.view = view  # widgets.VideoView: where frames are drawn
        self.stats = stats
        self.probe = PixelProbe(view)

    @property
    def method(self) -> str | None:
        return self.probe.method

    def read(self, df: DisplayFrame) -> tuple[int, float] | None:
        """The stamp of ``df`` (just painted) read back from the window: (capture time in ns, latency in ms), or
        None when it could not be read."""
        rect = self.view.image_rect(df)
        t_stamp, ms = self.probe.measure(df.result.frame.shape, rect) if rect else (None, None)
        if t_stamp is None or ms is None:
            self.stats.selfcheck_failed += 1
            return None
        self.stats.selfcheck_ok += 1
        return t_stamp, ms

    def measure(self, df: DisplayFrame, telemetry: Telemetry, since_ns: int | None) -> float | None:
        """``read`` ``df``; the latency counts as a sample only when the frame was captured at or after
        ``since_ns`` (None: paused — a frame held back by pause/step waited for the user, not for the pipeline).
        Returns the sample in ms, or None."""
        got = self.read(df)
        if got is None or since_ns is None or got[0] < since_ns:
            return None
        ms = got[1]
        self.stats.add("capture_to_pixels", ms)
        telemetry.add_sample("capture_to_pixels", ms)
        return ms


__all__ = ["PixelProbe", "SelfCheck", "build_viewer_pipeline", "qimage_to_array", "layout_for_frame"]
