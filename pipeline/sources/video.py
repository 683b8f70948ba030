"""Video files: PyAV (FFmpeg) first, OpenCV as a fallback for the odd file PyAV rejects.

Why PyAV: it gives real presentation timestamps, frame-threaded decoding (``thread_type = "AUTO"``) and a
direct YUV→RGB conversion whose ``ndarray`` is a view over the converted frame, so each frame costs one
decode plus one colour conversion and no extra copy. The conversion goes through one ``VideoReformatter``
kept for the whole file: ``frame.to_ndarray(format="rgb24")`` would build a new swscale context for every
decoded frame, which measured ~2× slower end to end on a 960×720 H.264 clip. ``open()`` decodes the first frame to prove the file
really works (a renamed text file, a cut-off mp4 or an empty stream is reported there, with the file name),
and keeps it so it is not decoded twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
from av.video.reformatter import VideoReformatter
import numpy as np

from ..errors import SourceError
from ..messages import RawFrame
from .base import Source, SourceInfo

log = logging.getLogger(__name__)

__all__ = ["VideoSource", "OpenCVVideoSource"]


def _check_file(path: Path) -> None:
    """Reject what is plainly not a readable file, with a message that names it."""
    if not path.exists():
        raise SourceError(f"no such file: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a directory, not a video file")
    if not path.is_file():
        raise SourceError(f"{path} is not a regular file")


def _ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without errno and file name."""
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _rate(stream) -> float | None:
    """Frames per second as a float; non-integer rates such as 4428/349 (≈12.69) are kept exact-ish."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0.0 < value < 10_000.0:
                return value
    return None


class VideoSource(Source):
    """A video file decoded with PyAV; falls back to :class:`OpenCVVideoSource` only where PyAV fails
    and OpenCV both opens the file *and* reads a first frame from it.

    ``pts_s`` is the frame's presentation time relative to the start of the video stream (so the first
    frame is at ~0 s even for files whose timestamps start later), or ``index / fps`` when the container
    has no timestamps. ``frames(start_s)`` seeks to the keyframe before ``start_s`` and decodes forward
    (without colour-converting the frames it skips) to the frame on screen at ``start_s``: the last one
    stamped at or before it, which also holds for variable-frame-rate files. Only one ``frames()``
    iterator should be live at a time: a new call repositions the shared decoder.
    """

    def __init__(self, path: str | Path, *, threads: str = "AUTO") -> None:
        self.path = Path(path).expanduser()
        self.name = self.path.name
        self.thread_type = threads
        self.backend: str | None = None  # "pyav" | "opencv" once open
        self._container: av.container.InputContainer | None = None
        self._stream = None
        self._fallback: OpenCVVideoSource | None = None
        self._first: RawFrame | None = None  # decoded at open(), handed out by the first frames() call
        self._fresh_decoder: Iterator[av.VideoFrame] | None = None  # decoder positioned after _first
        self._fps: float | None = None
        self._t0 = 0.0  # stream start time (s), subtracted from frame.time
        self._has_pts = True
        self._rgb = VideoReformatter()  # one swscale context reused for every frame

    # ------------------------------------------------------------------ open / close
    def open(self) -> SourceInfo:
        self.close()
        _check_file(self.path)
        try:
            self.info = self._open_pyav()
            self.backend = "pyav"
            return self.info
        except SourceError as pyav_error:
            self.close()
            fallback = OpenCVVideoSource(self.path)
            try:
                self.info = fallback.open()
            except SourceError:
                raise pyav_error from None  # PyAV's reason is the more precise one
            log.warning("%s: PyAV could not read it (%s); using OpenCV instead", self.name, pyav_error)
            self._fallback = fallback
            self.backend = "opencv"
            return self.info

    def _open_pyav(self) -> SourceInfo:
        try:
            container = av.open(str(self.path), mode="r")
        except av.FFmpegError as err:
            raise SourceError(f"{self.name} is not a readable video ({_ffmpeg_reason(err)})") from None
        self._container = container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            found = f"only {', '.join(kinds)}" if kinds else "no streams at all"
            raise SourceError(f"{self.name} has no video stream ({found})")
        stream = container.streams.video[0]
        stream.thread_type = self.thread_type
        self._stream = stream
        self._fps = _rate(stream)
        self._t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0

        decoder = container.decode(stream)
        try:
            first = next(decoder, None)
        except av.FFmpegError as err:
            raise SourceError(f"{self.name}: the first frame cannot be decoded ({_ffmpeg_reason(err)})") from None
        if first is None:
            raise SourceError(f"{self.name} contains no video frames")
        self._has_pts = first.time is not None
        self._first = RawFrame(self._to_rgb(first), self._pts(first, 0))
        self._fresh_decoder = decoder
        height, width = self._first.pixels.shape[:2]
        return SourceInfo(
            name=self.name,
            kind="video",
            width=width,
            height=height,
            fps=self._fps,
            frame_count=stream.frames or None,
            live=False,
        )

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None
        if self._container is not None:
            self._container.close()
            self._container = None
        self._stream = None
        self._fresh_decoder = None
        self._first = None

    # ------------------------------------------------------------------ frames
    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """H×W×3 uint8 RGB; a view over a freshly allocated RGB frame, so arrays never alias each other."""
        return self._rgb.reformat(frame, format="rgb24").to_ndarray()

    def _pts(self, frame: av.VideoFrame, index: int) -> float | None:
        if frame.time is not None:
            return frame.time - self._t0
        return index / self._fps if self._fps else None

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        """Frames from the one on screen at ``start_s`` (the last with ``pts_s <= start_s``) to the end."""
        if self._fallback is not None:
            yield from self._fallback.frames(start_s)
            return
        if self._container is None:
            raise RuntimeError("VideoSource.frames() called before open()")
        start_s = max(0.0, float(start_s))
        first, decoder = self._first, self._fresh_decoder
        self._first = self._fresh_decoder = None  # a later call must seek
        if decoder is not None and first is not None and start_s < (first.pts_s or 0.0) + 1.0:
            # The decoder still sits just after the frame open() decoded: carry on from there.
            yield from self._decode(decoder, start_s, held=first, index=1)
        else:
            yield from self._decode(self._seek(start_s), start_s, held=None, index=0)

    def _seek(self, start_s: float) -> Iterator[av.VideoFrame]:
        """A decoder positioned at the keyframe at or before ``start_s``."""
        stream = self._stream
        if self._has_pts:
            target = int((start_s + self._t0) / stream.time_base) if start_s > 0 else (stream.start_time or 0)
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
                return self._container.decode(stream)
            except av.FFmpegError as err:
                log.debug("%s: seek failed (%s); reopening", self.name, _ffmpeg_reason(err))
        # No timestamps to seek by, or a container that cannot seek: decode again from the beginning.
        self._container.close()
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as err:
            raise SourceError(f"{self.name} can no longer be read ({_ffmpeg_reason(err)})") from None
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = self.thread_type
        return self._container.decode(self._stream)

    def _decode(
        self, decoder: Iterator[av.VideoFrame], start_s: float, held: RawFrame | None, index: int
    ) -> Iterator[RawFrame]:
        """Decode forward. Until a frame later than ``start_s`` appears, the latest frame at or before it
        is *held* (not converted); it is yielded first, so a seek lands on the frame a player would show
        even in variable-frame-rate files."""
        from_start = held is not None
        limit = start_s + 1e-3  # timestamps are rationals turned into floats
        pending: av.VideoFrame | RawFrame | None = held
        pending_pts = held.pts_s if held is not None else None
        started = False
        yielded = 0
        try:
            for frame in decoder:
                pts = self._pts(frame, index)
                index += 1
                if not started:
                    if pts is not None and pts <= limit:
                        pending, pending_pts = frame, pts
                        continue
                    started = True
                    if pending is not None:
                        yield self._raw(pending, pending_pts)
                        yielded += 1
                    pending = None
                yield RawFrame(self._to_rgb(frame), pts)
                yielded += 1
            if not started and pending is not None:
                # start_s falls on or after the last frame: show it if it is still on screen then.
                duration = 1.0 / self._fps if self._fps else 0.0
                if pending_pts is None or start_s <= pending_pts + duration:
                    yield self._raw(pending, pending_pts)
                    yielded += 1
        except av.FFmpegError as err:
            raise SourceError(
                f"{self.name}: decoding failed after {yielded} frames ({_ffmpeg_reason(err)})"
            ) from None
        expected = self.info.frame_count
        if from_start and start_s <= 0 and expected and yielded < expected - 1:
            # the frames before the cut have been delivered; the run ends with this error (exit 2), not as a success
            raise SourceError(f"{self.name} ends after {yielded} of its {expected} frames (a truncated file?)")

    def _raw(self, frame: av.VideoFrame | RawFrame, pts: float | None) -> RawFrame:
        return frame if isinstance(frame, RawFrame) else RawFrame(self._to_rgb(frame), pts)


class OpenCVVideoSource(Source):
    """A video file read with ``cv2.VideoCapture``: the fallback for files PyAV cannot open.

    OpenCV ships its own demuxers (for example an MJPEG-in-AVI reader) that occasionally accept what
    FFmpeg rejects. Timestamps are ``index / fps`` (OpenCV's own position property is unreliable across
    backends); seeking reopens the file and reads forward, which is slow but always correct.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.name = self.path.name
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None
        self._fps: float | None = None

    def _open_capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name} is not a readable video (OpenCV cannot open it)")
        return cap

    def open(self) -> SourceInfo:
        self.close()
        _check_file(self.path)
        cap = self._open_capture()
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise SourceError(f"{self.name}: OpenCV opened it but read no frame")
        self._cap = cap
        self._first = _bgr_to_rgb(bgr)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if 0.0 < fps < 10_000.0 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        height, width = self._first.shape[:2]
        self.info = SourceInfo(
            name=self.name,
            kind="video",
            width=width,
            height=height,
            fps=self._fps,
            frame_count=count if count > 0 else None,
            live=False,
        )
        return self.info

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._first = None

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        """Frames from the one on screen at ``start_s`` (index ``floor(start_s * fps)``) to the end."""
        if self._cap is None:
            raise RuntimeError("OpenCVVideoSource.frames() called before open()")
        start_s = max(0.0, float(start_s))
        first_index = int(start_s * self._fps + 1e-6) if self._fps else 0
        index = 0
        if self._first is not None:
            first, self._first = self._first, None
            if first_index == 0:
                yield RawFrame(first, 0.0)
            index = 1
        else:
            self._cap.release()
            self._cap = self._open_capture()
        while True:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                return
            index += 1
            if index - 1 < first_index:
                continue
            yield RawFrame(_bgr_to_rgb(bgr), (index - 1) / self._fps if self._fps else None)


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A)/gray frame as the RGB (or gray) array a RawFrame carries."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

