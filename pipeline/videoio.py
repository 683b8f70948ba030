"""Write RGB frames to an MP4 file with PyAV: the one video writer the simulator and the recorder share.

Why PyAV and not ``cv2.VideoWriter``: OpenCV wheels often ship without an H.264 encoder and cannot set a
rational frame rate, CRF or a per-frame timestamp. PyAV links FFmpeg, so the same code writes H.264
(``libx264``) wherever FFmpeg has it and falls back to MPEG-4 Part 2 (``mpeg4``) where it does not.

Timing: the stream's time base is ``1/fps`` as an exact fraction (``12.69`` becomes ``1269/100``), and frame
``i`` gets ``pts = i``, so non-integer rates survive a round trip and a reader sees ``pts * time_base = i / fps``.

Pixels: frames are ``H×W×3`` uint8 RGB (or ``H×W`` uint8 grayscale). H.264 in ``yuv420p`` needs even
dimensions, so an odd width or height is padded with one black column/row on the right/bottom; the file's
size is then the padded one (``VideoWriter.size``).

What a crash leaves behind:

* an exception inside ``with VideoWriter(...)`` (or any caller using ``try/finally: close()``) still flushes
  the encoder and writes the MP4 index, so every frame written before the error is playable;
* ``close()`` is idempotent, and an error while closing after a failed write never hides the first error;
* a process that is *killed* (SIGKILL, power loss) cannot write the index of a normal MP4 at the end, and the
  file will not play. Pass ``fragmented=True`` to write a fragmented MP4 instead (an empty index up front and a
  self-contained fragment at every keyframe): then a killed process loses at most the frames since the last
  keyframe (``gop`` frames, 2 s by default). Fragmented files play in FFmpeg/VLC/browsers; the default
  (unfragmented, index moved to the front at close, "faststart") suits files meant for sharing.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.stream import VideoStream

from .errors import ConfigError, SourceError, reason
from .outputs import vanished_message

__all__ = ["VideoWriter", "pick_codec", "fps_fraction", "TIMESTAMP_BASE"]

TIMESTAMP_BASE = Fraction(1, 90000)
"""Time base of a writer with per-frame timestamps: MPEG's 90 kHz clock."""


def pick_codec() -> str:
    """``libx264`` when this FFmpeg build can encode H.264 with it, else ``mpeg4`` (always built in)."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - PyAV raises different types across versions for a missing encoder
        return "mpeg4"


def fps_fraction(fps: float) -> Fraction:
    """An exact, small rational for a frame rate: 30 → 30/1, 29.97 → 2997/100, 30000/1001 stays as given."""
    if isinstance(fps, Fraction):
        return fps
    if not np.isfinite(fps) or fps <= 0:
        raise ConfigError(f"frame rate must be a positive number, got {fps!r}")
    frac = Fraction(float(fps)).limit_denominator(1001)
    if abs(float(frac) - fps) > 1e-6 * fps:  # rates like 12.6934 need a finer denominator
        frac = Fraction(float(fps)).limit_denominator(100000)
    return frac


class VideoWriter:
    """Encode RGB uint8 frames to ``path`` (MP4) at ``fps``; use as a context manager.

    ``size=(width, height)`` fixes the frame size up front; when None it is taken from the first frame.
    ``crf``/``preset`` are x264's quality (lower = better, 18–28 sensible) and speed knobs; with the
    ``mpeg4`` fallback ``crf`` maps to a comparable fixed quantiser. ``gop`` is the keyframe interval in frames
    (default: 2 s). See the module docstring for what a crash leaves behind and for ``fragmented``.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None, crf: int = 23,
                 preset: str = "veryfast", *, codec: str | None = None, fragmented: bool = False,
                 gop: int | None = None, timestamps: bool = False) -> None:
        self.path = Path(path)
        self.fps = fps_fraction(fps)
        self.crf = int(crf)
        self.preset = preset
        self.codec = codec or pick_codec()
        self.fragmented = fragmented
        self.gop = int(gop) if gop else max(1, round(2 * float(self.fps)))
        self.timestamps = timestamps
        self._last_pts: int | None = None
        self._pts_origin: float | None = None
        self.frames_written = 0
        self.frames_on_disk: int | None = None  # set when the file turned out shorter than what was written
        self.bytes_muxed = 0  # encoded bytes handed to the muxer: a file shorter than this lost its end
        # bytes muxed after each packet (rising), 8 bytes a packet: how many frames a short file still holds
        self._packet_end_bytes = array("q")
        self._input_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None  # encoded (even) size, known once the stream exists
        self._stream: VideoStream | None = None
        self._closed = False
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be in 0..51, got {crf}")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"cannot write video {self.path}: folder {parent} does not exist")
        if self.path.is_dir():
            raise ConfigError(f"cannot write video {self.path}: it is a folder")
        try:  # PyAV opens the file only when the header is written: find an unwritable path now, not later
            with open(self.path, "wb"):
                pass
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot write video {self.path}: {reason(exc)}") from None
        self._identity = (st.st_dev, st.st_ino)  # to notice at close that the file was removed under us
        # fragmented: a self-contained fragment at every keyframe, and FFmpeg's write buffer flushed at every packet,
        # so each finished fragment is in the file (not in a 256 KiB buffer) when the process is killed
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"} if fragmented \
            else {"movflags": "+faststart"}
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4", options=options)
        except (OSError, av.FFmpegError) as exc:
            raise ConfigError(f"cannot write video {self.path}: {reason(exc)}") from None
        if size is not None:
            self._open_stream(int(size[0]), int(size[1]))

    # -- setup ---------------------------------------------------------------------------------------------
    def _open_stream(self, width: int, height: int) -> None:
        if width < 2 or height < 2:
            raise ConfigError(f"video size must be at least 2x2, got {width}x{height}")
        self._input_size = (width, height)
        enc_w, enc_h = width + (width & 1), height + (height & 1)
        if self.codec == "libx264":
            options = {"crf": str(self.crf), "preset": self.preset}
            if self.fragmented:  # no B-frames or look-ahead: a frame is in the file as soon as its fragment ends
                options["tune"] = "zerolatency"
        else:  # mpeg4: fixed quantiser; x264 crf 18..28 looks roughly like qscale 2..8
            options = {"qscale": str(int(np.clip(round((self.crf - 14) * 0.6), 1, 31)))}
        stream = cast(VideoStream, self._container.add_stream(self.codec, rate=self.fps, options=options))
        stream.width, stream.height = enc_w, enc_h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = TIMESTAMP_BASE if self.timestamps else 1 / self.fps
        stream.codec_context.gop_size = self.gop
        if self.codec == "mpeg4":
            stream.codec_context.flags |= av.codec.context.Flags.qscale
        self._stream = stream
        self.size = (enc_w, enc_h)

    # -- writing -------------------------------------------------------------------------------------------
    def write(self, rgb: np.ndarray, pts_s: float | None = None) -> None:
        """Append one frame (``H×W×3`` RGB uint8, or ``H×W`` grayscale uint8).

        Without ``timestamps`` its pts is its index (constant rate ``fps``). With ``timestamps=True`` the frame is
        shown at ``pts_s`` seconds (``TIMESTAMP_BASE`` resolution; a variable-rate source keeps its timing); a
        ``pts_s`` that is None or not after the previous frame's is placed one nominal frame interval after it.
        """
        if self._closed:
            raise ConfigError(f"cannot write to {self.path}: the video writer is closed")
        frame = np.asarray(rgb)
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
            raise ConfigError(f"video frames must be HxWx3 or HxW uint8, got {frame.dtype} {frame.shape}")
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        h, w = frame.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        stream, input_size, size = self._stream, self._input_size, self.size
        assert stream is not None and input_size is not None and size is not None
        if (w, h) != input_size:
            iw, ih = input_size
            raise ConfigError(f"frame {self.frames_written} of {self.path} is {w}x{h}, the video is {iw}x{ih}")
        enc_w, enc_h = size
        if (w, h) != (enc_w, enc_h):  # odd size: pad with black to even
            padded = np.zeros((enc_h, enc_w, 3), np.uint8)
            padded[:h, :w] = frame
            frame = padded
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self._next_pts(pts_s)
        vf.time_base = stream.codec_context.time_base
        try:
            for packet in stream.encode(vf):
                self._mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise SourceError(f"writing video {self.path} failed at frame {self.frames_written}: "
                              f"{reason(exc)}") from None
        self.frames_written += 1
        if self.frames_written % self.gop == 0 and not self.still_there():  # once a fragment (≤ 2 s), not at the end
            raise self._vanished()

    def _vanished(self) -> SourceError:
        return SourceError(vanished_message("recording", self.path, f"its {self.frames_written} frames are lost"))

    def _next_pts(self, pts_s: float | None) -> int:
        """The frame's pts: its index, or (``timestamps``) its time since the first frame in 1/90000 s, never
        decreasing — after a loop or a seek back the clock continues one frame interval after the last frame."""
        if not self.timestamps:
            return self.frames_written
        den = TIMESTAMP_BASE.denominator
        step = max(1, round(den / float(self.fps)))
        if pts_s is None:
            pts = 0 if self._last_pts is None else self._last_pts + step
        else:
            if self._pts_origin is None:
                self._pts_origin = pts_s
            pts = round((pts_s - self._pts_origin) * den)
            if self._last_pts is not None and pts <= self._last_pts:
                self._pts_origin = pts_s - (self._last_pts + step) / den
                pts = self._last_pts + step
        self._last_pts = pts
        return pts

    def close(self) -> None:
        """Flush the encoder and finish the file. Safe to call twice; a file with no frames is removed."""
        if self._closed:
            return
        self._closed = True
        error: Exception | None = None
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._mux(packet)
        except (OSError, av.FFmpegError) as exc:
            error = exc
        finally:
            try:
                self._container.close()
            except (OSError, av.FFmpegError) as exc:
                error = error or exc
        if self.frames_written == 0:
            self.path.unlink(missing_ok=True)  # an MP4 with no stream is not a video; leave nothing behind
        if error is not None:
            raise SourceError(f"finishing video {self.path} failed: {reason(error)}")
        if self.frames_written and not self.still_there():
            raise self._vanished()
        if self.frames_written:
            self._check_complete()

    def _mux(self, packet) -> None:
        self._container.mux(packet)
        self.bytes_muxed += int(packet.size or 0)
        self._packet_end_bytes.append(self.bytes_muxed)

    def _check_complete(self) -> None:
        """The file holds every encoded byte (it is at least as long as the packets muxed into it), or one line
        saying how many frames at most reached the disk: FFmpeg does not report a failed write of the last fragment
        when the container is closed on a full disk."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return  # still_there() said so already
        if size >= self.bytes_muxed:
            return
        on_disk = bisect_right(self._packet_end_bytes, size)
        self.frames_on_disk = min(on_disk, self.frames_written)
        raise SourceError(f"the recording {self.path} is incomplete: {size} of at least {self.bytes_muxed} bytes "
                          f"reached the disk (full?); at most {self.frames_on_disk} of {self.frames_written} frames "
                          f"are in it")

    def still_there(self) -> bool:
        """Whether the path still names the file this writer opened (not removed, its folder not removed)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing: finish the file as far as possible, but never mask the original error
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __del__(self) -> None:  # last resort if a caller forgot close(): keep what was written playable
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001
                pass

