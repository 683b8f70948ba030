"""Live cameras and streams: a USB grabber (``/dev/video0``, an index) via OpenCV, a network stream (RTSP, HTTP,
UDP, TCP, SRT, RTMP URLs) via PyAV (``sources.network.StreamCapture``).

Why a reader thread: ``VideoCapture.read()`` can block for a long time when a device is unplugged or a
network stream stalls (V4L2 waits up to 10 s, a dead RTSP server longer). The thread owns the capture and
does nothing but read; ``frames()`` waits for it with a timeout, so a camera that disappears becomes a
``SourceDisconnected`` within ``stall_timeout_s`` instead of a hung pipeline (and ``--reconnect`` can reopen it).
The thread keeps only the newest frame (``sources.live.LatestFrame``) and the capture buffer is set to one frame,
so what the pipeline gets is never stale; every frame it overwrites is counted in ``frames_skipped``
(``frames handed out + frames_skipped = frames_received``).
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

from ..errors import SourceDisconnected, SourceError
from ..messages import RawFrame
from ..redact import redact_credentials
from .base import Source, SourceInfo
from .live import LatestFrame, start_reader

log = logging.getLogger(__name__)

__all__ = ["CameraSource"]

_NETWORK = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_network_spec(spec: int | str) -> bool:
    return isinstance(spec, str) and bool(_NETWORK.match(spec))


def stream_capture(url: str, options: dict[str, Any]) -> Any:
    """A network stream through PyAV with source options (``source.options``): transport, credentials (into the
    URL only here, never into the name), timeouts."""
    from .network import StreamCapture
    from .options import ffmpeg_options, url_with_credentials

    return StreamCapture(url_with_credentials(url, options), name=_display_name(url),
                         open_timeout_s=options.get("open_timeout_s", 5.0),
                         read_timeout_s=options.get("read_timeout_s", 5.0), ffmpeg_options=ffmpeg_options(options))


def _default_capture(spec: int | str) -> Any:
    """A network stream through PyAV (timestamps, pacing, one-line errors: OpenCV's FFmpeg backend can abort the
    process on a stream it cannot seek); a device through OpenCV."""
    if is_network_spec(spec):
        from .network import StreamCapture

        return StreamCapture(str(spec), name=_display_name(spec))
    return cv2.VideoCapture(spec)


def _display_name(spec: int | str) -> str:
    """``camera 0``, ``camera /dev/video2``, ``camera rtsp://host/stream`` — with any password removed."""
    return f"camera {redact_credentials(str(spec))}"


class CameraSource(Source):
    """A live capture: ``spec`` is a device index, a device path or a stream URL.

    ``pts_s``: for a device, seconds since the first frame from the monotonic clock at the moment the frame was
    read; for a network stream, the stream's own timestamps (``StreamCapture``). ``start_s`` is ignored (a live
    source cannot seek). A camera that fails to deliver a frame for ``stall_timeout_s`` (or whose ``read()`` fails
    ``max_failed_reads`` times in a row) raises ``SourceDisconnected("camera 0 stopped delivering frames")`` from
    ``frames()``. A network stream that ends by itself (a file served over HTTP) ends ``frames()``.

    ``capture_factory(spec)`` builds the capture object (default: ``cv2.VideoCapture`` for devices,
    ``StreamCapture`` for URLs); tests pass a fake that has ``isOpened/read/set/get/release``. A capture that
    also has ``read_frame(stop) -> (ok, rgb, pts_s) | None`` (None: the stream ended) is read through that.
    """

    def __init__(
        self,
        spec: int | str,
        *,
        fps: float | None = None,
        stall_timeout_s: float | None = None,
        first_frame_timeout_s: float = 5.0,
        max_failed_reads: int = 25,
        capture_factory: Callable[[int | str], Any] | None = None,
    ) -> None:
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec)
        self.spec = spec
        self.name = _display_name(spec)
        self.requested_fps = fps
        # a network stream may legitimately pause longer than a USB camera (FFmpeg's own read timeout is 5 s)
        self.stall_timeout_s = stall_timeout_s if stall_timeout_s is not None else (
            6.0 if is_network_spec(spec) else 2.0)
        self.first_frame_timeout_s = first_frame_timeout_s
        self.max_failed_reads = max_failed_reads
        self.capture_factory = capture_factory
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slot: LatestFrame | None = None
        self._cap: Any = None
        self._counts_before = (0, 0)  # (received, skipped) of earlier sessions (before a reconnect)

    # ------------------------------------------------------------------ counters
    @property
    def frames_received(self) -> int:
        """Every frame the device or stream delivered, over all sessions."""
        return self._counts_before[0] + self._session_counts()[0]

    @property
    def frames_skipped(self) -> int:
        """Frames received but never handed to the pipeline (overwritten by a newer one, or over the stream's rate)."""
        return self._counts_before[1] + self._session_counts()[1]

    def _session_counts(self) -> tuple[int, int]:
        slot, cap = self._slot, self._cap
        if slot is None:
            return 0, 0
        discarded = int(getattr(cap, "frames_discarded", 0) or 0)
        return slot.frames_received + discarded, slot.frames_skipped + discarded

    # ------------------------------------------------------------------ open / close
    def open(self) -> SourceInfo:
        self.close()
        self._stop = threading.Event()
        factory = self.capture_factory or _default_capture
        try:
            cap = factory(self.spec)
        except SourceError:
            raise
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

        self._slot, self._cap = LatestFrame(), cap
        self._thread, first = start_reader(
            self._read_loop, (cap, self._stop, self._slot), f"sonolens-{self.name}", self._slot,
            self.first_frame_timeout_s, self.close,
            f"{self.name} opened but delivered no frame within {self.first_frame_timeout_s:g} s")
        height, width = first[0].shape[:2]
        self.info = SourceInfo(
            name=self.name, kind="camera", width=width, height=height, fps=fps, frame_count=None, live=True
        )
        return self.info

    def close(self) -> None:
        """Stop the reader; it releases the capture itself once its current ``read()`` returns."""
        self._stop.set()
        if self._slot is not None:
            self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            if self._thread.is_alive():
                log.warning("%s: reader still blocked in read(); leaving it to finish on its own", self.name)
            self._thread = None
        if self._slot is not None:
            received, skipped = self._session_counts()
            self._counts_before = (self._counts_before[0] + received, self._counts_before[1] + skipped)
            self._slot = None
            self._cap = None

    # ------------------------------------------------------------------ reader thread
    def _read_loop(self, cap: Any, stop: threading.Event, slot: LatestFrame) -> None:
        failures = 0
        last_good = time.monotonic()
        t_first: float | None = None
        read_frame = getattr(cap, "read_frame", None)
        try:
            while not stop.is_set():
                if read_frame is not None:
                    got = read_frame(stop)
                    if got is None:  # the stream ended by itself
                        if not stop.is_set():
                            slot.finish()
                        return
                    ok, pixels, pts = got
                else:
                    ok, image = cap.read()
                    pixels, pts = (_to_rgb(image), None) if ok and image is not None else (None, None)
                now = time.monotonic()
                if stop.is_set():
                    break
                if ok and pixels is not None:
                    failures, last_good = 0, now
                    if pts is None:
                        if t_first is None:
                            t_first = now
                        pts = now - t_first
                    slot.put(pixels, pts)
                    continue
                failures += 1
                if failures >= self.max_failed_reads or now - last_good > self.stall_timeout_s:
                    slot.fail(SourceDisconnected(f"{self.name} stopped delivering frames"))
                    return
                stop.wait(0.01)  # a failed read returns at once: don't spin
        except SourceError as err:
            slot.fail(err)
        except Exception as err:  # a driver error must reach the consumer, not die silently in this thread
            slot.fail(SourceDisconnected(f"{self.name} stopped delivering frames ({type(err).__name__}: {err})"))
        finally:
            cap.release()

    # ------------------------------------------------------------------ frames
    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        slot = self._slot
        if self._thread is None or slot is None:
            raise RuntimeError("CameraSource.frames() called before open()")
        stop = self._stop
        begin = getattr(self._cap, "begin", None)
        if begin is not None:
            begin()  # a stream served from a file starts its clock now (see network.StreamCapture)
        while not stop.is_set():
            got = slot.take(self.stall_timeout_s)
            if got is None:
                if stop.is_set() or slot.ended:
                    return
                raise SourceDisconnected(f"{self.name} stopped delivering frames")
            pixels, pts = got
            yield RawFrame(pixels, pts)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
