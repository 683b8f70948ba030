"""From the inference worker thread to the GUI thread: render off the GUI thread, deliver only the newest frame.

``FrameBridge`` is a pipeline sink, so it runs on the worker thread. It does the per-frame work that costs
something — blending the heat map (``overlay.blend_heatmap``), scaling the frame to the size it will be shown
at, converting it into a ``QImage`` that owns its pixels (the numpy buffer is copied: the worker reuses nothing,
but a QImage over a numpy array would dangle once the array is freed) — and then hands the frame to the GUI.

Back-pressure: the bridge holds at most *one* undelivered frame. A new frame replaces a pending one (counted in
``skipped``) and at most one queued signal is in flight, so a GUI that falls behind never builds a backlog in the
Qt event queue and never shows stale frames; the GUI thread only paints (one blit plus some text).

``Result.cam`` is the raw CAM at model resolution; ``overlay.blend_heatmap`` normalises and resizes it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtGui import QImage

from sonolens.pipeline.messages import Result, Timings
from sonolens.pipeline.overlay import COLORMAPS, blend_heatmap


@dataclass
class RenderSettings:
    """What the worker-side renderer needs; written by the GUI thread, read by the worker (plain attributes)."""

    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    show_predictions: bool = True  # False in blinded / off study conditions: never blend
    area: tuple[int, int] = (0, 0)  # size of the view's image area (w, h); (0, 0) = native size


def fit_rect(fw: int, fh: int, aw: int, ah: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of an fw×fh frame scaled to fit aw×ah, centred, aspect kept, integer pixels."""
    if aw <= 0 or ah <= 0 or fw <= 0 or fh <= 0:
        return 0, 0, fw, fh
    s = min(aw / fw, ah / fh)
    w, h = max(1, int(round(fw * s))), max(1, int(round(fh * s)))
    return (aw - w) // 2, (ah - h) // 2, w, h


def _scale_roi(roi: tuple[int, int, int, int], sx: float, sy: float) -> tuple[int, int, int, int]:
    x, y, w, h = roi
    x0, y0 = int(round(x * sx)), int(round(y * sy))
    return x0, y0, max(1, int(round((x + w) * sx)) - x0), max(1, int(round((y + h) * sy)) - y0)


def render_rgb(result: Result, st: RenderSettings, area: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, tuple[int, int, int, int], bool]:
    """The frame as it will be shown (RGB uint8), where it goes in the image area, and whether a heatmap is in it.

    The heat map is blended at the smaller of the two resolutions (source or display), so the cost of a frame
    follows the number of pixels actually needed. Downscaling uses INTER_AREA only below half size (it is several
    times slower than bilinear and only matters against aliasing at strong reduction).
    """
    frame = result.frame
    # no heat map on a frame without a prediction (out of the model's domain, no image): the state text says why
    blended = bool(st.heatmap and st.show_predictions and result.cam is not None and result.state == "ok")
    img = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2 else frame
    fh, fw = img.shape[:2]
    rect = fit_rect(fw, fh, *(st.area if area is None else area))
    w, h = rect[2], rect[3]
    resize = (w, h) != (fw, fh)
    interp = cv2.INTER_AREA if (w < fw / 2 or h < fh / 2) else cv2.INTER_LINEAR
    cmap = st.colormap if st.colormap in COLORMAPS else "jet"
    cam = result.cam
    if blended and cam is not None and resize and w * h < fw * fh:  # shrinking: scale first, blend fewer pixels
        img = cv2.resize(img, (w, h), interpolation=interp)
        img = blend_heatmap(img, cam, _scale_roi(result.roi, w / fw, h / fh), st.alpha, cmap)
    else:
        if blended and cam is not None:
            img = blend_heatmap(img, cam, result.roi, st.alpha, cmap)
        if resize:
            img = cv2.resize(img, (w, h), interpolation=interp)
    return np.ascontiguousarray(img), rect, blended


def to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of ``rgb`` (H×W×3 uint8), in the raster engine's native RGB32 format."""
    h, w = rgb.shape[:2]
    view = QImage(rgb.data, w, h, int(rgb.strides[0]), QImage.Format.Format_RGB888)
    return view.convertToFormat(QImage.Format.Format_RGB32)  # a new image with its own buffer


@dataclass(frozen=True, slots=True)
class DisplayFrame:
    """A frame ready to paint: the result, its rendered image and where that goes."""

    result: Result
    image: QImage
    rect: tuple[int, int, int, int]  # where in the image area (at render time)
    area: tuple[int, int]  # the image area size it was rendered for
    heatmap: bool  # a heat map is blended into ``image``
    t_ready_ns: int  # rendering finished (worker thread)
    generation: int  # which pipeline of the window it came from


def rerendered(df: DisplayFrame, settings: RenderSettings, area: tuple[int, int]) -> DisplayFrame:
    """``df`` rendered again with ``settings`` at ``area`` (on the GUI thread: a still frame after the style or the
    size changed)."""
    rgb, rect, blended = render_rgb(df.result, settings, area)
    return replace(df, image=to_qimage(rgb), rect=rect, area=area, heatmap=blended)


class FrameBridge(QObject):
    """Pipeline sink (worker thread) → ``frame_ready`` (connect with a queued connection) → ``take()`` (GUI)."""

    frame_ready = pyqtSignal()

    def __init__(self, settings: RenderSettings, generation: int = 0) -> None:
        super().__init__()
        self.settings = settings
        self.generation = generation
        self._lock = threading.Lock()
        self._pending: DisplayFrame | None = None
        self._signalled = False
        self.skipped = 0  # frames replaced before the GUI took them
        self.enabled = True

    def __call__(self, result: Result) -> None:
        if not self.enabled:
            return
        aw, ah = self.settings.area  # read once: the GUI may resize meanwhile
        area = (aw, ah)
        rgb, rect, blended = render_rgb(result, self.settings, area)
        image = to_qimage(rgb)
        df = DisplayFrame(result, image, rect, area, blended, time.perf_counter_ns(), self.generation)
        with self._lock:
            if self._pending is not None:
                self.skipped += 1
            self._pending = df
            emit = not self._signalled
            self._signalled = True
        if emit:
            self.frame_ready.emit()

    def warm_up(self, width: int, height: int) -> None:
        """Render one blank frame so OpenCV's and Qt's first-call costs (colormap tables, buffers) are not paid by
        the first real frame, which would otherwise make the worker miss the next ones."""
        t = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                    t_delivered_ns=0, pts_s=None)
        dummy = Result(index=-1, frame=np.zeros((height, width, 3), np.uint8), roi=(0, 0, width, height), timings=t,
                       class_names=("",), probs=np.ones(1, np.float32), raw_probs=np.ones(1, np.float32),
                       cam=np.zeros((7, 7), np.float32), cam_class=0)
        for heat in (True, False):
            st = RenderSettings(heatmap=heat, alpha=self.settings.alpha, colormap=self.settings.colormap,
                                show_predictions=True, area=self.settings.area)
            to_qimage(render_rgb(dummy, st)[0])

    def take(self) -> DisplayFrame | None:
        with self._lock:
            df, self._pending, self._signalled = self._pending, None, False
            return df


__all__ = ["RenderSettings", "DisplayFrame", "FrameBridge", "fit_rect", "render_rgb", "rerendered", "to_qimage"]
