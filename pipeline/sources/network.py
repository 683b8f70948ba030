"""Network streams (RTSP, HTTP(S), HLS, UDP/TCP/SRT/RTMP) read with PyAV, for ``CameraSource``'s reader thread.

Why not OpenCV: its FFmpeg backend hides the stream's timestamps, cannot tell a stream that ended from one that
broke, and aborts the whole process ("terminate called without an active exception") on some inputs it cannot
seek, such as an MP4 with its index at the end served without range support. PyAV raises a Python exception for
every failure, so each becomes one line: ``SourceDisconnected`` for a connection that is refused, times out or
breaks (``--reconnect`` reopens it), ``SourceError`` for input that is wrong (a 404, data that is not video).

**Pacing, so a stream never runs faster than its own clock.** A source that delivers faster than real time (a
file served over HTTP downloads at network speed; a server that flushes a burst of buffered frames) must not reach
the pipeline faster than the stream's rate:

* a stream with real timestamps (MP4/MKV/FLV/MPEG-TS over HTTP, RTP over RTSP) is released frame by frame at its
  timestamps against the wall clock. A *finite* stream (its duration is known: a file being served) starts that
  clock when the pipeline takes its first frame, so nothing is lost while the model loads; a *live* one never
  waits (waiting would only add latency);
* a stream without timestamps of its own (multipart MJPEG, raw H.264/HEVC elementary streams, whose timestamps
  FFmpeg invents) is held to its rate by discarding what arrives early: a frame that comes less than one frame
  interval after the last one released is counted in ``frames_discarded`` and not passed on.

Every frame decoded is counted: those the reader discards here plus those ``LatestFrame`` overwrites are the
source's ``frames_skipped``. Display-matrix rotation is applied (``pipeline.orientation``).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from ..errors import SourceDisconnected, SourceError, reason
from ..orientation import FrameOrientation, apply_orientation
from ..redact import redact_credentials

log = logging.getLogger(__name__)

__all__ = ["StreamCapture"]

# Demuxers whose timestamps are FFmpeg's invention (a frame counter at a guessed rate), not the sender's clock.
GUESSED_TIMESTAMP_FORMATS = frozenset({
    "mpjpeg", "mjpeg", "jpeg_pipe", "image2pipe", "h264", "hevc", "vvc", "mpegvideo", "m4v", "cavsvideo",
    "rawvideo", "obu", "ivf",
})

_DISCONNECT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
                      errno.EIO, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN}


def _is_disconnect(err: BaseException) -> bool:
    """A connection that failed (refused, reset, timed out, cut) rather than input that is wrong."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    if isinstance(err, getattr(av, "ExitError", ())):  # PyAV's timeout interrupts FFmpeg with AVERROR_EXIT
        return True
    code = getattr(err, "errno", None)
    return code in _DISCONNECT_ERRNOS if code is not None else False


class StreamCapture:
    """A network stream opened with PyAV; the capture object ``CameraSource`` reads on its reader thread.

    It speaks the part of OpenCV's ``VideoCapture`` interface ``CameraSource`` uses (``isOpened``, ``set``, ``get``,
    ``release``) plus ``read_frame(stop) -> (True, rgb, pts_s) | None`` (None: the stream ended by itself) and
    ``begin()`` (the pipeline took its first frame: a finite stream's clock starts). ``frames_discarded`` counts
    frames dropped for arriving faster than the stream's rate.
    """

    def __init__(self, url: str, *, name: str | None = None, open_timeout_s: float = 5.0,
                 read_timeout_s: float = 5.0, ffmpeg_options: dict[str, str] | None = None) -> None:
        self.url = url
        self.name = name or redact_credentials(url)
        self.frames_discarded = 0
        self._container: Any = None
        try:
            self._container = av.open(url, mode="r", timeout=(open_timeout_s, read_timeout_s),
                                      options=dict(ffmpeg_options or {}))
        except av.FFmpegError as err:
            self._raise_open_error(err, open_timeout_s)
        except OSError as err:  # pragma: no cover - PyAV wraps errors in FFmpegError, which is an OSError
            self._raise_open_error(err, open_timeout_s)
        container = self._container
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name} carries no video stream")
        self._stream = container.streams.video[0]
        fmt = (container.format.name or "").split(",")
        self.real_timestamps = not any(f in GUESSED_TIMESTAMP_FORMATS for f in fmt)
        self.finite = container.duration is not None and container.duration > 0
        # frame threading holds frames back (one per thread): fine for a served file, latency for a live stream
        self._stream.thread_type = "AUTO" if self.finite else "SLICE"
        self.fps = self._rate()
        self._decoder: Iterator[av.VideoFrame] = container.decode(self._stream)
        self._rgb = VideoReformatter()
        self._orientation = FrameOrientation()  # reads frame.side_data once, not per frame (see there)
        self._begun = threading.Event()
        self._begin_t = 0.0
        self._anchor: float | None = None  # wall time (monotonic) of pts 0
        self._t0: float | None = None  # the first frame's stream time
        self._last_pts: float | None = None
        self._next_due: float | None = None  # streams without timestamps: the earliest time of the next frame
        self._delivered = 0

    def _raise_open_error(self, err: BaseException, timeout_s: float) -> None:
        why = reason(err)
        if isinstance(err, getattr(av, "ExitError", ())):
            why = f"no answer within {timeout_s:g} s"
        if _is_disconnect(err):
            raise SourceDisconnected(f"{self.name} is not reachable ({why})") from None
        raise SourceError(f"{self.name} could not be opened ({why})") from None

    def _rate(self) -> float | None:
        stream = self._stream
        candidates = [stream.codec_context.framerate, stream.average_rate, stream.guessed_rate] \
            if not self.real_timestamps else [stream.average_rate, stream.guessed_rate, stream.codec_context.framerate]
        for rate in candidates:
            if rate:
                value = float(rate)
                if 0.0 < value < 1000.0:
                    return value
        return None

    # ------------------------------------------------------------------ the VideoCapture part
    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._container is not None

    def set(self, prop: int, value: float) -> bool:
        return False

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return float(self.fps or 0.0)
        return 0.0

    def release(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError:  # pragma: no cover - closing a broken connection
                pass
            self._container = None

    # ------------------------------------------------------------------ reading
    def begin(self) -> None:
        """The pipeline is taking frames: a finite stream's clock starts now."""
        if not self._begun.is_set():
            self._begin_t = time.monotonic()
            self._begun.set()

    def read_frame(self, stop: threading.Event) -> tuple[bool, np.ndarray, float] | None:
        """The next frame to pass on, released at its time; None when the stream ended by itself. Raises
        ``SourceDisconnected`` when the connection breaks, ``SourceError`` for a stream that cannot be decoded."""
        while not stop.is_set():
            try:
                frame = next(self._decoder, None)
            except av.FFmpegError as err:
                if self._delivered == 0 and self._unseekable_mp4():
                    raise SourceError(
                        f"{self.name} cannot be streamed: the MP4's index is at its end and the server does not "
                        "support range requests (serve it from one that does, or move the index to the front: "
                        "ffmpeg -i IN -c copy -movflags +faststart OUT)") from None
                if _is_disconnect(err):
                    raise SourceDisconnected(f"{self.name}: connection lost ({reason(err)})") from None
                raise SourceError(f"{self.name}: the stream cannot be decoded ({reason(err)})") from None
            if frame is None:
                if self.finite:
                    return None
                raise SourceDisconnected(f"{self.name}: the stream ended (the sender closed the connection)")
            pixels = apply_orientation(self._rgb.reformat(frame, format="rgb24").to_ndarray(),
                                       self._orientation(frame))
            if self.real_timestamps and frame.time is not None:
                pts = self._pace(float(frame.time), stop)
                if pts is None:  # stopped while waiting
                    return None
                self._delivered += 1
                return True, pixels, pts
            now = time.monotonic()
            if self.fps:
                interval = 1.0 / self.fps
                if self._next_due is not None and now < self._next_due - 0.1 * interval:
                    self.frames_discarded += 1  # early: over the stream's rate
                    continue
                # one slot per interval; a late frame does not earn the slots it missed (no catch-up burst)
                self._next_due = max((self._next_due or now) + interval, now)
            self._delivered += 1
            if self._t0 is None:
                self._t0 = now
            return True, pixels, now - self._t0
        return None

    def _unseekable_mp4(self) -> bool:
        """An MP4 over HTTP that failed before its first frame, from a server without range support: FFmpeg read
        through the media to find the index at the end and cannot seek back (retrying would fail the same way)."""
        container = self._container
        if container is None or not self.url.lower().startswith(("http://", "https://")):
            return False
        if "mp4" not in (container.format.name or "") and "mov" not in (container.format.name or ""):
            return False
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url, headers={"Range": "bytes=1-1"})
        try:
            with urllib.request.urlopen(request, timeout=5.0) as response:  # noqa: S310 - the user's own URL
                return response.status != 206
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _pace(self, t: float, stop: threading.Event) -> float | None:
        """Wait until stream time ``t`` is due; returns the frame's pts (seconds since the first frame, never
        decreasing), or None when stopped while waiting."""
        if self._t0 is None:
            self._t0 = t
        pts = max(t - self._t0, self._last_pts if self._last_pts is not None else 0.0)
        if self._anchor is None:
            if self._last_pts is None:  # the first frame goes out at once (open() shows it)
                if not self.finite:
                    self._anchor = time.monotonic() - pts
                self._last_pts = pts
                return pts
            while not self._begun.wait(0.1):  # a served file waits for the pipeline's first take
                if stop.is_set():
                    return None
            self._anchor = self._begin_t - (self._last_pts or 0.0)
        now = time.monotonic()
        if self._last_pts is not None and pts - self._last_pts > 2.0:
            self._anchor = now - pts  # a jump in the stream's clock: restart it rather than stall
        delay = self._anchor + pts - now
        if delay > 0:
            if stop.wait(delay):
                return None
        elif delay < -1.0:
            self._anchor = now - pts  # more than a second late (a slow link): don't burst to catch up
        self._last_pts = pts
        return pts
