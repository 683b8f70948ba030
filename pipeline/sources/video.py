"""Video files: PyAV (FFmpeg) first, OpenCV as a fallback for the odd file PyAV rejects.

Why PyAV: it gives real presentation timestamps, frame-threaded decoding (``thread_type = "AUTO"``) and a
direct YUV→RGB conversion whose ``ndarray`` is a view over the converted frame, so each frame costs one
decode plus one colour conversion and no extra copy. The conversion goes through one ``VideoReformatter``
kept for the whole file: ``frame.to_ndarray(format="rgb24")`` would build a new swscale context for every
decoded frame, which measured ~2× slower end to end on a 960×720 H.264 clip. ``open()`` decodes the first frame to
prove the file really works (a renamed text file, a cut-off mp4 or an empty stream is reported there, with the file
name), and keeps it so it is not decoded twice.

Timing comes from the frames, not from container guesses (``_scan`` reads the packet index once at ``open()``,
without decoding): a raw H.264/HEVC/MJPEG elementary stream, whose timestamps FFmpeg invents at 25 fps, is paced
at the codec's own rate (the SPS timing of an H.264 stream); frames without a timestamp before the first one that
has one (the pre-roll a stream-copy cut leaves in a Matroska file) are decoded but not shown, as players do;
``pts_s`` never decreases; ``info.fps`` of a variable-rate file is the measured mean rate of its frames and
``info.frame_count`` the number of frames a player shows (None when it cannot be counted). The display matrix
(phone videos shot in portrait) is applied to every frame (``pipeline.orientation``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from ..errors import SourceError, reason
from ..messages import RawFrame
from ..orientation import FrameOrientation, apply_orientation
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


# Demuxers of elementary streams: their timestamps are FFmpeg's invention (a frame counter at a guessed 25 fps).
_ELEMENTARY_FORMATS = frozenset({
    "h264", "hevc", "vvc", "mpegvideo", "m4v", "mjpeg", "mpjpeg", "cavsvideo", "avs2", "avs3", "rawvideo",
    "jpeg_pipe", "image2pipe", "obu", "dirac", "vc1",
})
SCAN_BUDGET = 200_000  # packets read at open() to count frames and measure the rate (~1 s; ~2 h of 30 fps video)


def _rate(stream, elementary: bool = False) -> float | None:
    """Frames per second as a float; non-integer rates such as 4428/349 (≈12.69) are kept exact-ish. For an
    elementary stream the codec's rate (from the bitstream) comes first: the container's is a 25 fps guess."""
    codec_rate = getattr(stream.codec_context, "framerate", None)
    order = (codec_rate, stream.guessed_rate, stream.average_rate) if elementary else (
        stream.average_rate, stream.guessed_rate, stream.base_rate, codec_rate)
    for rate in order:
        if rate:
            value = float(rate)
            if 0.0 < value < 10_000.0:
                return value
    return None


def is_elementary(container) -> bool:
    """True for a raw elementary stream (no container timestamps of its own)."""
    return any(name in _ELEMENTARY_FORMATS for name in (container.format.name or "").split(","))


@dataclass(frozen=True)
class _Scan:
    """What the packets say, before decoding: frames a player shows, whether any has a timestamp, the rate."""

    frames: int | None  # None: not counted (over budget, or the scan failed)
    has_pts: bool
    mean_fps: float | None  # measured over the shown frames' timestamps
    variable: bool  # frame intervals differ by more than rounding
    first_pts: float | None = None  # the earliest presentation time shown (demuxed containers only)


def _rate_from_times(times: list[float]) -> tuple[float | None, bool]:
    """(mean rate, variable?) of presentation times (any order)."""
    if len(times) < 2:
        return None, False
    ts = sorted(times)
    span = ts[-1] - ts[0]
    if span <= 0:
        return None, False
    deltas = np.diff(np.asarray(ts))
    deltas = deltas[deltas > 0]
    if deltas.size == 0:
        return None, False
    median = float(np.median(deltas))
    variable = bool(np.max(np.abs(deltas - median)) > 0.25 * median + 1e-3)
    return (len(ts) - 1) / span, variable


def _scan(path: Path, elementary: bool, budget: int | None = None) -> _Scan:
    """Count the frames a player shows and measure their rate from the packets (no decoding).

    MP4/MOV carry a full sample index: it is read without touching the media data (entries flagged *discard*, the
    pre-roll an edit list hides, are not shown). Other containers are demuxed once, up to ``budget`` packets:
    empty and discard-flagged packets and, in a file that has timestamps, the untimestamped pre-roll packets
    before the first timestamped one are not counted.
    """
    budget = SCAN_BUDGET if budget is None else budget
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            tb = float(stream.time_base) if stream.time_base else 0.0
            entries = None
            try:
                entries = stream.index_entries if stream.frames and not elementary else None
                if entries is not None and len(entries) != stream.frames:
                    entries = None
            except (AttributeError, av.FFmpegError):
                entries = None
            if entries is not None:
                shown = [e.timestamp * tb for e in entries if not e.is_discard]
                mean, variable = _rate_from_times(shown)
                if stream.average_rate:  # MOV's is frames / duration over the whole index: the mean already
                    mean = float(stream.average_rate)
                return _Scan(len(shown), True, mean, variable)
            count, seen_pts, times, leading, end = 0, False, [], 0, None
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if count + leading >= budget:
                    return _Scan(None, seen_pts or not elementary, None, False)
                if packet.pts is None and not seen_pts:
                    leading += 1
                    continue
                if packet.pts is not None:
                    seen_pts = True
                    times.append(packet.pts * tb)
                    if packet.duration:
                        stop = (packet.pts + packet.duration) * tb
                        end = stop if end is None else max(end, stop)
                count += 1
            if not seen_pts or elementary:
                return _Scan(count + leading, False, None, False)
            mean, variable = _rate_from_times(times)
            if end is not None and times and end > min(times):
                mean = len(times) / (end - min(times))  # frames / duration, as ffprobe's avg_frame_rate
            return _Scan(count, True, mean, variable, min(times) if times else None)
    except (av.FFmpegError, IndexError, OSError):
        return _Scan(None, not elementary, None, False)


class _Timeline:
    """Turns decoded frames into ``pts_s`` for one decoding pass.

    ``by_index``: ``index / fps`` (elementary streams; files without any timestamp). Otherwise the frame's time
    relative to the stream start; an untimestamped frame before the first timestamped one of a pass that started
    at the beginning is pre-roll (``SKIP``); a later untimestamped frame gets the previous time plus one frame
    interval; and no time is ever smaller than the previous one.
    """

    SKIP = object()

    def __init__(self, by_index: bool, fps: float | None, t0: float, index: int = 0,
                 hide_preroll: bool = True) -> None:
        self.by_index, self.fps, self.t0 = by_index, fps, t0
        self.index = index
        self.hide_preroll = hide_preroll
        self.last: float | None = None

    def __call__(self, frame: av.VideoFrame):
        if self.by_index:
            pts = self.index / self.fps if self.fps else None
            self.index += 1
            return pts
        t = frame.time
        if t is None:
            if self.last is None:
                if self.hide_preroll:
                    return self.SKIP
                pts = 0.0
            else:
                pts = self.last + (1.0 / self.fps if self.fps else 0.0)
        else:
            pts = t - self.t0
        if self.last is not None and pts < self.last:
            pts = self.last
        self.last = pts
        return pts


class _Skips:
    """The packets a file's decoder rejected: how many, the first reason, and the gaps they left in the timeline
    (the times of the frames either side of a jump in the decoded frames' timestamps after a rejected packet; the
    decoder may still hand out frames it held before the jump)."""

    def __init__(self) -> None:
        self.packets = 0
        self.reason = ""
        self.gaps: list[tuple[float | None, float | None]] = []
        self.frame_s = 0.1  # a frame's duration: a jump of more than 1.5 of them after a rejected packet is a gap
        self._last: float | None = None
        self._pending = False  # packets rejected since the last gap was found

    def skip(self, name: str, why: str) -> None:
        if not self.packets:
            self.reason = why
            log.warning("%s: a damaged packet after %s could not be decoded (%s); skipping to the next decodable one",
                        name, "the start" if self._last is None else f"{self._last:.2f} s", why)
        self.packets += 1
        self._pending = True

    def resume(self, t: float | None) -> None:
        if self._pending and (self._last is None or t is None or t - self._last > 1.5 * self.frame_s):
            self.gaps.append((self._last, t))
            self._pending = False
        self._last = t

    def summary(self, name: str) -> str:
        def at(t: float | None, missing: str) -> str:
            return missing if t is None else f"{t:.2f} s"

        gaps = self.gaps + ([(self._last, None)] if self._pending else [])
        where = ", ".join(f"{at(a, 'the start')}–{at(b, 'the end')}" for a, b in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        return (f"{name}: {self.packets} damaged packet(s) could not be decoded ({self.reason}) and were skipped, "
                f"leaving a gap at {where}{more}")


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
        self._container: Any = None  # av.container.InputContainer once open
        self._stream: Any = None  # its first video stream
        self._fallback: OpenCVVideoSource | None = None
        self._first: RawFrame | None = None  # decoded at open(), handed out by the first frames() call
        self._fresh_decoder: Iterator[av.VideoFrame] | None = None  # decoder positioned after _first
        self._fresh_timeline: _Timeline | None = None  # and the timing state of that pass
        self._fps: float | None = None
        self._t0 = 0.0  # stream start time (s), subtracted from frame.time
        self._has_pts = True
        self._skips = _Skips()  # packets the codec rejected, and the gaps they left
        self._rgb = VideoReformatter()  # one swscale context reused for every frame
        self._orientation = FrameOrientation()  # reads frame.side_data once per open, not per frame (see there)

    # ------------------------------------------------------------------ open / close
    def open(self) -> SourceInfo:
        self.close()
        _check_file(self.path)
        self._skips, self.notes = _Skips(), ()
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
            raise SourceError(f"{self.name} is not a readable video ({reason(err)})") from None
        self._container = container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            found = f"only {', '.join(kinds)}" if kinds else "no streams at all"
            raise SourceError(f"{self.name} has no video stream ({found})")
        stream = container.streams.video[0]
        stream.thread_type = self.thread_type
        self._stream = stream
        elementary = is_elementary(container)
        scan = _scan(self.path, elementary)
        self._has_pts = scan.has_pts and not elementary
        self._fps = scan.mean_fps if scan.variable and scan.mean_fps else _rate(stream, elementary)
        self._skips.frame_s = 1.0 / self._fps if self._fps else self._skips.frame_s
        start, tb = stream.start_time, stream.time_base
        self._t0 = float(start * tb) if start is not None and tb is not None else 0.0
        if scan.first_pts is not None and scan.first_pts < self._t0:
            # FFmpeg takes the start from the first packet in decoding order; with B-frames an earlier one may follow
            self._t0 = scan.first_pts

        self._orientation.reset()
        decoder = self._decode_packets()
        timeline = self._timeline()
        skipped = 0
        try:
            while True:
                first = next(decoder, None)
                if first is None:
                    if skipped and self._has_pts:  # no frame had a timestamp after all: number them instead
                        self._has_pts, skipped = False, 0
                        decoder, timeline = self._seek(0.0), self._timeline()
                        continue
                    raise SourceError(f"{self.name} contains no video frames")
                pts = timeline(first)
                if pts is not _Timeline.SKIP:
                    break
                skipped += 1
        except av.FFmpegError as err:
            raise SourceError(f"{self.name}: the first frame cannot be decoded ({reason(err)})") from None
        self._first = RawFrame(self._to_rgb(first), pts)
        self._fresh_decoder, self._fresh_timeline = decoder, timeline
        height, width = self._first.pixels.shape[:2]
        return SourceInfo(
            name=self.name,
            kind="video",
            width=width,
            height=height,
            fps=self._fps,
            frame_count=scan.frames,
            live=False,
        )

    def _decode_packets(self) -> Iterator[av.VideoFrame]:
        """``container.decode(stream)`` one packet at a time, so a packet the codec rejects (garbage spliced into the
        file, a damaged sector) is skipped and counted, as ffmpeg does, instead of ending the file there."""
        skips = self._skips
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError as err:
                skips.skip(self.name, reason(err))
                continue
            for frame in frames:
                skips.resume(None if frame.time is None else frame.time - self._t0)
                yield frame

    def _timeline(self, index: int = 0) -> _Timeline:
        return _Timeline(not self._has_pts, self._fps, self._t0, index)

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
        """H×W×3 uint8 RGB, upright (display matrix applied); a view over a freshly allocated RGB frame (or a fresh
        rotated copy), so arrays never alias each other."""
        return apply_orientation(self._rgb.reformat(frame, format="rgb24").to_ndarray(), self._orientation(frame))

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        """Frames from the one on screen at ``start_s`` (the last with ``pts_s <= start_s``) to the end."""
        if self._fallback is not None:
            yield from self._fallback.frames(start_s)
            return
        if self._container is None:
            raise RuntimeError("VideoSource.frames() called before open()")
        start_s = max(0.0, float(start_s))
        first, decoder, timeline = self._first, self._fresh_decoder, self._fresh_timeline
        self._first = self._fresh_decoder = self._fresh_timeline = None  # a later call must seek
        if decoder is not None and first is not None and timeline is not None \
                and start_s < (first.pts_s or 0.0) + 1.0:
            # The decoder still sits just after the frame open() decoded: carry on from there.
            yield from self._decode(decoder, start_s, held=first, timeline=timeline)
        else:
            decoder = self._seek(start_s)
            yield from self._decode(decoder, start_s, held=None, timeline=self._timeline())

    def _seek(self, start_s: float) -> Iterator[Any]:
        """A decoder positioned at the keyframe at or before ``start_s``."""
        stream = self._stream
        # No self._orientation.reset() here: a pass over the same file has the same display matrix, and reading
        # frame.side_data again on every pass left one decoded picture per loop in a reference cycle until a
        # full collection (+55 MB over a 30-minute looped soak; see FrameOrientation).
        # Seek (also to 0, when looping): reopening the container on every loop kept ~5 MB of FFmpeg's decoder state
        # alive per pass (a 30-minute looped soak grew by 848 MB); the reopen below is only the fallback.
        if self._has_pts and start_s >= 0:
            target = int((start_s + self._t0) / stream.time_base)
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
                decoder = self._decode_packets()
                frame = next(decoder, None)
                # A keyframe without a timestamp (pre-roll) cannot be found by seeking: FFmpeg lands on a later one.
                # Landing after start_s would show the wrong frame: decode from the beginning instead.
                if frame is not None and (frame.time is None or frame.time - self._t0 <= start_s + 1e-3):
                    return itertools.chain([frame], decoder)
                log.debug("%s: seek to %.3f s landed later; decoding from the start", self.name, start_s)
            except av.FFmpegError as err:
                log.debug("%s: seek failed (%s); reopening", self.name, reason(err))
        # From the start, no timestamps to seek by, or a container that cannot seek: decode again from the beginning
        # (a seek to 0 can skip an untimestamped pre-roll keyframe, which the frames after it need).
        self._container.close()
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as err:
            raise SourceError(f"{self.name} can no longer be read ({reason(err)})") from None
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = self.thread_type
        return self._decode_packets()

    def _decode(
        self, decoder: Iterator[av.VideoFrame], start_s: float, held: RawFrame | None, timeline: _Timeline
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
                pts = timeline(frame)
                if pts is _Timeline.SKIP:  # pre-roll: decoded as a reference, never shown
                    continue
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
                f"{self.name}: decoding failed after {yielded} frames ({reason(err)})"
            ) from None
        if self._skips.packets:
            # every decodable frame has been delivered; a damaged file still ends the run with exit 2
            self.notes = (self._skips.summary(self.name),)
            raise SourceError(f"{self.notes[0]}; the {yielded} decodable frames were processed")
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

