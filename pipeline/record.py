"""Recording sink: the overlay burned into an MP4, on its own thread so the encoder never stalls inference.

* Live runs (``block=False``): the recorder never slows the live path. Frames wait in a queue bounded by bytes
  (``max_bytes``, default 192 MiB: 8 frames of 4K, 90 of 960×720); when the encoder falls behind, a new frame is
  dropped and counted in ``dropped`` (reported separately from the pipeline's own drops).
* Offline runs (``block=True``, ``--max-rate``): every processed frame is recorded; the worker waits for room
  (the wait shows up in the telemetry as delivery time).
* The file is a fragmented MP4 with every finished fragment (≤ 2 s) flushed to disk, and each frame keeps its
  source timestamp (a variable-rate source is recorded at its own times): see ``videoio.VideoWriter``.
* Legible at any source size: the frame is scaled *before* the overlay is drawn, so the text is drawn at the
  recording's resolution. By default a source whose short side is under ``MIN_SHORT_SIDE`` (480 px) is recorded
  at the smallest whole multiple that reaches it (a 256×256 clip at 512×512); ``size=(W, H)`` (``--record-size``)
  records at exactly that size, the image fitted with its aspect kept.
* A write error (a full disk) stops the recorder; the next ``__call__`` raises it as a one-line
  ``SonolensError``, which ends the run with exit 2 after every other report is written.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import SonolensError
from .messages import Result
from .overlay import OverlayStyle, draw_overlay
from .videoio import VideoWriter

log = logging.getLogger(__name__)

HudSource = Any  # Callable[[], dict] | None: live telemetry for the burned-in HUD
MIN_SHORT_SIDE = 480  # pixels: below this the burned-in text is too small to read; such sources are upscaled


DEFAULT_MAX_BYTES = 192 << 20  # what a recorder may hold in frames waiting to be encoded (several streams share it)


def recording_style(warnings: list[str], ood: dict | None, gate: bool) -> OverlayStyle:
    """The overlay style of a ``sonolens run`` recording: the untrained-model warning burned in, the model file's
    out-of-domain threshold (``ood``: its gate, None or empty without one), and whether the gate is off."""
    untrained = [w for w in warnings if "untrained" in w]
    return OverlayStyle(warning=untrained[0].upper() if untrained else None,
                        ood_threshold=float(ood["threshold"]) if ood else None, gate_off=bool(ood) and not gate)


def record_scale(width: int, height: int, size: tuple[int, int] | None = None) -> float:
    """The factor a ``width × height`` source frame is scaled by before the overlay is drawn: to fit ``size``
    (aspect kept), else the smallest whole multiple that brings the short side to ``MIN_SHORT_SIDE`` (1 when it
    already does)."""
    if size is not None:
        return min(size[0] / width, size[1] / height)
    short = min(width, height)
    return 1.0 if short >= MIN_SHORT_SIDE else float(-(-MIN_SHORT_SIDE // short))


def scaled_result(result: Result, scale: float) -> Result:
    """``result`` with its frame and ROI scaled by ``scale`` (the CAM is drawn at the ROI's size anyway)."""
    if scale == 1.0:
        return result
    h, w = result.frame.shape[:2]
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    frame = cv2.resize(result.frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x, y, rw, rh = result.roi
    roi = (round(x * scale), round(y * scale), max(1, round(rw * scale)), max(1, round(rh * scale)))
    return dataclasses.replace(result, frame=frame, roi=roi)


class Recorder:
    def __init__(self, path: str | Path, fps: float, style: OverlayStyle | None = None, hud_source: HudSource = None,
                 *, block: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
                 size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.size = size  # (W, H) of the recording, or None: the source's, upscaled when it is small
        self.fps = fps
        self.style = style or OverlayStyle()
        self.hud_source = hud_source
        self.block = block
        self.max_bytes = int(max_bytes)
        self._items: deque[tuple[Result, dict | None, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._writer: VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)
        self.scale = 1.0  # what the source frames are scaled by before the overlay (set by the first frame)
        self.frames_written = 0
        self.dropped = 0
        self.error: SonolensError | None = None
        self._thread = threading.Thread(target=self._run, name="sonolens-recorder", daemon=True)
        self._thread.start()

    def __call__(self, result: Result) -> None:
        """Queue ``result`` for the recording (worker thread). Raises the recorder's error once it has failed."""
        if self.error is not None:
            raise self.error
        nbytes = int(result.frame.nbytes)
        hud = self.hud_source() if self.hud_source else None
        with self._cond:
            if self.block:
                while self._bytes and self._bytes + nbytes > self.max_bytes and self.error is None:
                    self._cond.wait(0.1)
            elif self._bytes and self._bytes + nbytes > self.max_bytes:
                self.dropped += 1
                return
            self._items.append((result, hud, nbytes))
            self._bytes += nbytes
            self._cond.notify_all()

    def _next(self) -> tuple[Result, dict | None, int] | None:
        with self._cond:
            while not self._items and not self._closing:
                self._cond.wait(0.1)
            return self._items.popleft() if self._items else None

    def _run(self) -> None:
        try:
            while (item := self._next()) is not None:
                result, hud, nbytes = item
                if self._writer is None:
                    self.scale = record_scale(result.frame.shape[1], result.frame.shape[0], self.size)
                img = draw_overlay(scaled_result(result, self.scale), self.style, hud)
                if self.size is not None and (img.shape[1], img.shape[0]) != self.size:
                    img = letterbox(img, self.size)  # --record-size of another aspect: the image fitted, centred
                if self._writer is None:
                    self._writer = VideoWriter(self.path, self.fps, size=(img.shape[1], img.shape[0]),
                                               fragmented=True, timestamps=True)
                    self._size = (img.shape[1], img.shape[0])
                elif (img.shape[1], img.shape[0]) != self._size:
                    img = letterbox(img, self._size)  # the source changed size: an MP4 keeps one frame size
                self._writer.write(img, _frame_time(result))
                self.frames_written += 1
                with self._cond:
                    self._bytes -= nbytes
                    self._cond.notify_all()
        except SonolensError as exc:
            self.error = exc
        except Exception as exc:
            log.debug("recorder failed", exc_info=True)
            self.error = SonolensError(f"recording to {self.path} failed: {exc}")
        finally:
            try:
                if self._writer is not None:
                    self._writer.close()
            except SonolensError as exc:
                self.error = self.error or exc
            if self._writer is not None and self._writer.frames_on_disk is not None:
                self.frames_written = self._writer.frames_on_disk  # what a decoder can read back, at most
            with self._cond:  # release a producer waiting for room
                self._items.clear()
                self._bytes = 0
                self._closing = True
                self._cond.notify_all()

    def close(self) -> None:
        """Write what is queued, finish the file and stop the thread (idempotent). Raises a write error."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "frames_written": self.frames_written, "dropped": self.dropped,
                "size": list(self._size) if self._writer is not None else None, "scale": round(self.scale, 4),
                "error": str(self.error) if self.error else None}


def letterbox(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` (H×W×3 uint8) scaled to fit ``size = (width, height)`` with its aspect kept, centred on black."""
    w, h = size
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(img, (nw, nh), interpolation=interp)
    return out


def _frame_time(result: Result) -> float | None:
    """The source time of the frame (its pts), or its capture time when the source has none (cameras)."""
    t = result.timings
    return t.pts_s if t.pts_s is not None else t.t_captured_ns / 1e9
