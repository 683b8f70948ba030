"""Live cameras and streams (a USB grabber on ``/dev/video0``, an index, an RTSP/HTTP/UDP URL) via OpenCV.

Why a reader thread: ``VideoCapture.read()`` can block for a long time when a device is unplugged or a
network stream stalls (V4L2 waits up to 10 s, a dead RTSP server longer). The thread owns the capture and
does nothing but read; ``frames()`` waits for it with a timeout, so a camera that disappears becomes a
``SourceError`` within ``stall_timeout_s`` instead of a hung pipeline. The thread keeps only the newest
frame and the capture buffer is set to one frame, so what the pipeline gets is never stale.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from ..errors import SourceError
from ..messages import RawFrame
from .base import Source, SourceInfo

log = logging.getLogger(__name__)

__all__ = ["CameraSource"]

_NETWORK = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _default_capture(spec: int | str) -> Any:
    """Open ``spec`` with OpenCV. Network streams get FFmpeg's open/read timeouts so they cannot block forever."""
    if isinstance(spec, str) and _NETWORK.match(spec):
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
        return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(spec)


def _display_name(spec: int | str) -> str:
    """``camera 0``, ``camera /dev/video2``, ``camera rtsp://host/stream`` — with any password removed."""
    text = str(spec)
    text = re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", text)
    return f"camera {text}"


class CameraSource(Source):
    """A live OpenCV capture: ``spec`` is a device index, a device path or a stream URL.

    ``pts_s`` is seconds since the first frame, from the monotonic clock at the moment the frame was read.
    ``start_s`` is ignored (a live source cannot seek). A camera that fails to deliver a frame for
    ``stall_timeout_s`` (or whose ``read()`` fails ``max_failed_reads`` times in a row) raises
    ``SourceError("camera 0 stopped delivering frames")`` from ``frames()``.

    ``capture_factory(spec)`` builds the capture object (default: ``cv2.VideoCapture``, with timeouts for
    network streams); tests pass a fake that has ``isOpened/read/set/get/release``.
    """

    def __init__(
        self,
        spec: int | str,
        *,
        fps: float | None = None,
        stall_timeout_s: float = 2.0,
        first_frame_timeout_s: float = 5.0,
        max_failed_reads: int = 25,
        capture_factory: Callable[[int | str], Any] | None = None,
    ) -> None:
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec)
        self.spec = spec
        self.name = _display_name(spec)
        self.requested_fps = fps
        self.stall_timeout_s = stall_timeout_s
        self.first_frame_timeout_s = first_frame_timeout_s
        self.max_failed_reads = max_failed_reads
        self.capture_factory = capture_factory
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._latest: np.ndarray | None = None
        self._latest_t: float = 0.0
        self._seq = 0  # number of frames the reader has produced
        self._seen = 0  # the last frame number handed out by frames()
        self._error: str | None = None
        self._t_first: float | None = None

    # ------------------------------------------------------------------ open / close
    def open(self) -> SourceInfo:
        self.close()
        self._stop = threading.Event()
        self._latest, self._seq, self._seen, self._error, self._t_first = None, 0, 0, None, None
        factory = self.capture_factory or _default_capture
        try:
            cap = factory(self.spec)
        except cv2.error as err:  # OpenCV raises for malformed URLs and the like
            raise SourceError(f"{self.name} could not be opened ({err})") from None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise SourceError(f"{self.name} could not be opened")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # never hand out a frame that waited in a driver queue
        if self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, float(self.requested_fps))
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = float(fps) if fps and 0.0 < fps < 1000.0 else None

        self._thread = threading.Thread(
            target=self._read_loop, args=(cap, self._stop), name=f"sonolens-{self.name}", daemon=True
        )
        self._thread.start()
        first = self._wait_for(0, self.first_frame_timeout_s)
        if first is None:
            self.close()
            raise SourceError(f"{self.name} opened but delivered no frame within {self.first_frame_timeout_s:g} s")
        height, width = first[0].shape[:2]
        self.info = SourceInfo(
            name=self.name, kind="camera", width=width, height=height, fps=fps, frame_count=None, live=True
        )
        return self.info

    def close(self) -> None:
        """Stop the reader; it releases the capture itself once its current ``read()`` returns."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            if self._thread.is_alive():
                log.warning("%s: reader still blocked in read(); leaving it to finish on its own", self.name)
            self._thread = None

    # ------------------------------------------------------------------ reader thread
    def _read_loop(self, cap: Any, stop: threading.Event) -> None:
        failures = 0
        last_good = time.monotonic()
        try:
            while not stop.is_set():
                ok, image = cap.read()
                now = time.monotonic()
                if stop.is_set():
                    break
                if ok and image is not None:
                    failures, last_good = 0, now
                    pixels = _to_rgb(image)
                    with self._cond:
                        if self._t_first is None:
                            self._t_first = now
                        self._latest, self._latest_t = pixels, now - self._t_first
                        self._seq += 1
                        self._cond.notify_all()
                    continue
                failures += 1
                if failures >= self.max_failed_reads or now - last_good > self.stall_timeout_s:
                    self._fail(f"{self.name} stopped delivering frames")
                    return
                stop.wait(0.01)  # a failed read returns at once: don't spin
        except Exception as err:  # a driver error must reach the consumer, not die silently in this thread
            self._fail(f"{self.name} stopped delivering frames ({type(err).__name__}: {err})")
        finally:
            cap.release()

    def _fail(self, message: str) -> None:
        with self._cond:
            self._error = message
            self._cond.notify_all()

    def _wait_for(self, seen: int, timeout_s: float) -> tuple[np.ndarray, float, int] | None:
        """The newest frame after frame number ``seen``, or None on timeout; raises the reader's error."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._seq <= seen and self._error is None and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._seq > seen:
                return self._latest, self._latest_t, self._seq
            if self._error is not None:
                raise SourceError(self._error)
            return None

    # ------------------------------------------------------------------ frames
    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        if self._thread is None:
            raise RuntimeError("CameraSource.frames() called before open()")
        while not self._stop.is_set():
            got = self._wait_for(self._seen, self.stall_timeout_s)
            if got is None:
                if self._stop.is_set():
                    return
                raise SourceError(f"{self.name} stopped delivering frames")
            pixels, pts, self._seen = got
            yield RawFrame(pixels, pts)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
