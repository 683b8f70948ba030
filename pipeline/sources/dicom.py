"""DICOM: ultrasound cine loops and stills as they leave the scanner (needs the ``dicom`` extra).

A multi-frame file plays as a video, a single-frame file as a still; a folder of DICOM files is a slideshow (the
folder source reads each file through :func:`read_dicom_still`). Files are recognised by the ``.dcm``/``.dicom``
extension or, without one, by the ``DICM`` marker after the 128-byte preamble.

* **Decoding**: pydicom with the pylibjpeg plugins (uncompressed, RLE, JPEG baseline/extended/lossless, JPEG-LS,
  JPEG 2000 and HTJ2K), one frame at a time so a long cine never sits in memory whole; a compressed syntax whose
  plugin is missing names the package to install. A NumberOfFrames below what the pixel data holds plays the
  declared frames with one warning (and a note in the report).
  Photometric interpretations MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422 and PALETTE COLOR all become uint8 RGB
  or grey. The video transfer syntaxes (MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265), which pydicom cannot decode, are
  decoded with PyAV. A transfer syntax nothing here can decode is a one-line ``SourceError`` naming it.
* **Pacing**: each frame's ``pts_s`` comes from Frame Time Vector (0018,1065), Frame Time (0018,1063), Cine Rate
  (0018,0040) or Recommended Display Frame Rate (0008,2144), in the order the Frame Increment Pointer asks for;
  ``info.fps`` is the mean rate. Without any of them ``pts_s`` is None and ``fps`` None.
* **ROI**: the Sequence of Ultrasound Regions (0018,6011) names where the scanner drew the image; the largest 2-D
  region becomes ``roi_hint = (x, y, w, h)`` (on the source and in its ``SourceInfo``).
* **Privacy**: nothing read from the dataset but pixel geometry, timing and transfer syntax reaches a name, a log
  line or an error: ``info.name`` is the file name, and pydicom's own warnings (which may quote element values) are
  silenced while it reads.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from collections.abc import Sequence as CollectionSequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError, reason
from ..messages import RawFrame
from .base import Source, SourceInfo

log = logging.getLogger(__name__)

__all__ = [
    "DICOM_EXTENSIONS",
    "DicomSource",
    "DicomUnavailable",
    "EXTRA_HINT",
    "has_dicom_preamble",
    "is_dicom_path",
    "read_dicom_still",
]

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
EXTRA_HINT = "install the 'dicom' extra: pip install 'sonolens[dicom]'"

# The plugin of the 'dicom' extra behind each family of compressed syntaxes (PS3.5 Annex A.4).
_PLUGINS = (
    ("1.2.840.10008.1.2.4.9", "pylibjpeg-openjpeg"),  # .90/.91 JPEG 2000 (.92/.93 multi-component)
    ("1.2.840.10008.1.2.4.20", "pylibjpeg-openjpeg"),  # .201–.203 High-Throughput JPEG 2000
    ("1.2.840.10008.1.2.4.5", "pylibjpeg-libjpeg"),  # .50/.51/.57 JPEG baseline, extended, lossless
    ("1.2.840.10008.1.2.4.70", "pylibjpeg-libjpeg"),
    ("1.2.840.10008.1.2.4.8", "pylibjpeg-libjpeg"),  # .80/.81 JPEG-LS
)

# Transfer syntaxes whose pixel data is one encapsulated video stream (PS3.5 §8.2.5–8.2.8): PyAV decodes them.
_VIDEO_SYNTAXES = {
    "1.2.840.10008.1.2.4.100": "mpegvideo",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1": "mpegvideo",
    "1.2.840.10008.1.2.4.101": "mpegvideo",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1": "mpegvideo",
    "1.2.840.10008.1.2.4.102": "h264",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1": "h264",
    "1.2.840.10008.1.2.4.103": "h264",
    "1.2.840.10008.1.2.4.103.1": "h264",
    "1.2.840.10008.1.2.4.104": "h264",
    "1.2.840.10008.1.2.4.104.1": "h264",
    "1.2.840.10008.1.2.4.105": "h264",
    "1.2.840.10008.1.2.4.105.1": "h264",
    "1.2.840.10008.1.2.4.106": "h264",
    "1.2.840.10008.1.2.4.106.1": "h264",
    "1.2.840.10008.1.2.4.107": "hevc",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108": "hevc",
}

_FRAME_TIME = 0x00181063
_FRAME_TIME_VECTOR = 0x00181065
_CINE_RATE = 0x00180040
_DISPLAY_RATE = 0x00082144


class DicomUnavailable(SourceError):
    """pydicom, or a decoder plugin for a transfer syntax, is not installed: every such file fails alike."""


def is_dicom_path(path: Path) -> bool:
    """A DICOM file by extension (``.dcm``/``.dicom``) or, whatever its name, by its ``DICM`` preamble."""
    return path.suffix.lower() in DICOM_EXTENSIONS or has_dicom_preamble(path)


def has_dicom_preamble(path: Path) -> bool:
    """True when bytes 128–131 of the file are ``DICM`` (the DICOM Part 10 file marker)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pydicom warns (and logs) about odd element values, quoting them: none of that may reach the user's terminal."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _import_pydicom(name: str) -> Any:
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401  (pydicom >= 3: frame-by-frame decoding)
    except ImportError:
        raise DicomUnavailable(f"{name} is a DICOM file; reading DICOM needs pydicom 3 or later ({EXTRA_HINT})") \
            from None
    return pydicom


def _reason(err: BaseException) -> str:
    """``reason`` with the error's type in front (pydicom's messages rarely say what kind of failure they are)."""
    why, kind = reason(err), type(err).__name__
    return kind if why == kind else f"{kind}: {why}"


def _missing_plugin(syntax: Any) -> str:
    """What to install for a compressed syntax pydicom cannot decode here: the plugin of the 'dicom' extra
    that decodes it (JPEG 2000 and HTJ2K: pylibjpeg-openjpeg; JPEG and JPEG-LS: pylibjpeg-libjpeg)."""
    uid = str(syntax)
    plugin = next((pkg for prefix, pkg in _PLUGINS if uid.startswith(prefix)), None)
    if plugin is None:
        return EXTRA_HINT
    return f"it needs {plugin}: pip install {plugin} (part of the 'dicom' extra: pip install 'sonolens[dicom]')"


def _syntax_name(uid: Any) -> str:
    name = getattr(uid, "name", "") or ""
    return f"{name} ({uid})" if name and name != str(uid) else f"transfer syntax {uid}"


def _read_header(path: Path, name: str) -> Any:
    pydicom = _import_pydicom(name)
    from pydicom.errors import InvalidDicomError

    try:
        with _quiet():
            return pydicom.dcmread(str(path), stop_before_pixels=True, force=path.suffix.lower() in DICOM_EXTENSIONS)
    except InvalidDicomError:
        raise SourceError(f"{name} is not a readable DICOM file") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, NotImplementedError) as err:
        raise SourceError(f"{name} is not a readable DICOM file ({type(err).__name__})") from None


# ------------------------------------------------------------------------------------------------ timing and ROI
def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _as_list(value: Any) -> list:
    """A multi-valued element as a list; a single value as a one-item list; None as []."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, CollectionSequence):
        return [value]
    return list(value)


def frame_times(ds: Any, n: int) -> tuple[list[float] | None, float | None]:
    """``(pts of each frame in seconds, mean fps)`` from the dataset's timing elements, or ``(None, None)``."""
    if n <= 1:
        return [0.0] * max(n, 1), None
    pointers: set[int] = set()
    for v in _as_list(ds.get("FrameIncrementPointer")):
        with contextlib.suppress(TypeError, ValueError):
            pointers.add(int(v))

    def vector() -> tuple[list[float], float] | None:
        raw = ds.get("FrameTimeVector")
        if raw is None:
            return None
        try:
            inc = [float(v) for v in _as_list(raw)]
        except (TypeError, ValueError):
            return None
        if len(inc) == n:
            inc = inc[1:]  # the first frame's increment is 0 by definition
        if len(inc) != n - 1 or not all(math.isfinite(v) and v > 0 for v in inc):
            return None
        pts = [0.0]
        for v in inc:
            pts.append(pts[-1] + v / 1000.0)
        return pts, (n - 1) / pts[-1]

    def constant(tag: str, per_frame_ms: bool) -> tuple[list[float], float] | None:
        v = _positive(ds.get(tag))
        if v is None:
            return None
        fps = 1000.0 / v if per_frame_ms else v
        return [i / fps for i in range(n)], fps

    order = []
    if _FRAME_TIME_VECTOR in pointers:
        order.append(vector)
    if _FRAME_TIME in pointers:
        order.append(lambda: constant("FrameTime", True))
    order += [lambda: constant("FrameTime", True), vector, lambda: constant("CineRate", False),
              lambda: constant("RecommendedDisplayFrameRate", False)]
    for get in order:
        got = get()
        if got is not None:
            return got
    return None, None


def roi_hint_of(ds: Any, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The largest 2-D region of the Sequence of Ultrasound Regions as ``(x, y, w, h)`` inside the image, or None.

    Tissue regions (Region Data Type 1) are preferred over colour-flow or Doppler ones when both are present."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    best: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None
    for item in regions:
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        spatial = item.get("RegionSpatialFormat")
        if spatial is not None and int(spatial) != 1:  # 1 = 2D; M-mode, spectral Doppler and waveforms are not images
            continue
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(width - 1, x1), min(height - 1, y1)
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w < 2 or h < 2:
            continue
        tissue = int(item.get("RegionDataType") or 0) == 1
        key = (int(tissue), w * h)
        if best is None or key > best[0]:
            best = (key, (x0, y0, w, h))
    return best[1] if best else None


# ------------------------------------------------------------------------------------------------ pixels
def _to_uint8(arr: np.ndarray, ds: Any) -> np.ndarray:
    """One decoded frame (as pydicom gives it: YBR already turned into RGB) → uint8 RGB (H×W×3) or grey (H×W)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:
            bits = 16
            desc = ds.get("RedPaletteColorLookupTableDescriptor")
            with contextlib.suppress(TypeError, ValueError, IndexError):
                bits = int(desc[2]) if desc is not None else 16
            rgb = (rgb >> max(0, bits - 8)).clip(0, 255).astype(np.uint8) if rgb.dtype.kind in "ui" else \
                np.clip(rgb, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb[..., :3])
    if arr.dtype != np.uint8:
        arr = _scale(arr, ds)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[:, :, :3]
    if photometric == "MONOCHROME1" and arr.ndim == 2:
        arr = 255 - arr
    return np.ascontiguousarray(arr)


def _scale(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Deeper than 8 bits → uint8: by the window (VOI) when the file has one, else by the bits stored."""
    a = arr.astype(np.float64)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None and arr.ndim == 2:
        try:
            c, w = float(_as_list(center)[0]), float(_as_list(width)[0])
        except (TypeError, ValueError, IndexError):
            c = w = float("nan")
        if math.isfinite(c) and math.isfinite(w) and w > 1:
            return np.clip(np.rint((a - (c - 0.5)) / (w - 1) * 255.0 + 127.5), 0, 255).astype(np.uint8)
    bits = int(ds.get("BitsStored") or (8 * arr.dtype.itemsize))
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    lo = -(2 ** (bits - 1)) if signed else 0
    span = float(2**bits - 1)
    return np.clip((a - lo) / span * 255.0, 0, 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------------ reading
class _Reader:
    """The decoding half of a DICOM file: ``frame_count``, ``frames(start)`` → uint8 arrays, one at a time."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self.ds = _read_header(path, name)
        ds = self.ds
        if "Rows" not in ds or "Columns" not in ds:
            raise SourceError(f"{name} is a DICOM file without an image")
        self.height, self.width = int(ds.Rows), int(ds.Columns)
        try:
            self.frame_count = max(1, int(ds.get("NumberOfFrames") or 1))
        except (TypeError, ValueError):
            self.frame_count = 1
        meta = getattr(ds, "file_meta", None)
        from pydicom.uid import UID, ImplicitVRLittleEndian

        self.syntax = UID(str(meta.get("TransferSyntaxUID") or ImplicitVRLittleEndian)) if meta is not None \
            else ImplicitVRLittleEndian
        self.video_format = _VIDEO_SYNTAXES.get(str(self.syntax))
        if self.video_format is None:
            self._check_decoder()

    def _check_decoder(self) -> None:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(self.syntax)
        except (NotImplementedError, ValueError, KeyError):
            raise SourceError(f"{self.name}: cannot decode its {_syntax_name(self.syntax)}; sonolens reads "
                              "uncompressed, RLE, JPEG, JPEG-LS, JPEG 2000, HTJ2K and MPEG-2/H.264/HEVC DICOM"
                              ) from None
        if not decoder.is_available:
            raise DicomUnavailable(f"{self.name}: no decoder for its {_syntax_name(self.syntax)} is installed "
                                   f"({_missing_plugin(self.syntax)})")

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        if start >= self.frame_count:
            return
        if self.video_format is not None:
            yield from self._video_frames(start)
            return
        from pydicom.pixels import iter_pixels, pixel_array

        index = start
        try:
            native_422 = not self.syntax.is_compressed and \
                str(self.ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422"
            it: Iterator[np.ndarray]
            if native_422:  # pydicom 3.0's iter_pixels miscounts the frame length of native 4:2:2 data
                it = (pixel_array(str(self.path), index=i) for i in range(start, self.frame_count))
            else:
                with _quiet():
                    it = iter_pixels(str(self.path), indices=range(start, self.frame_count))
            while True:
                with _quiet():
                    arr = next(it, None)
                if arr is None:
                    return
                yield _to_uint8(arr, self.ds)
                index += 1
        except SourceError:
            raise
        except Exception as err:  # pydicom and its plugins raise anything from ValueError to RuntimeError
            where = f"frame {index + 1} of {self.frame_count}" if self.frame_count > 1 else "its image"
            raise SourceError(f"{self.name}: decoding {where} failed ({_reason(err)})") from None

    def _video_frames(self, start: int) -> Iterator[np.ndarray]:
        """MPEG-2/H.264/HEVC DICOM: the fragments of the (single) encapsulated item are one elementary stream."""
        import av
        import pydicom
        from pydicom.encaps import generate_fragments

        try:
            with _quiet():
                full = pydicom.dcmread(str(self.path), force=True)
                data = b"".join(generate_fragments(full.PixelData))
        except Exception as err:
            raise SourceError(f"{self.name}: its {_syntax_name(self.syntax)} pixel data cannot be read "
                              f"({_reason(err)})") from None
        index = 0
        try:
            with av.open(io.BytesIO(data), mode="r", format=self.video_format) as container:
                stream = container.streams.video[0]
                for frame in container.decode(stream):
                    if index >= start:
                        yield frame.to_ndarray(format="rgb24")
                    index += 1
        except av.FFmpegError as err:
            raise SourceError(f"{self.name}: decoding its {_syntax_name(self.syntax)} stream failed after "
                              f"{index} frames ({getattr(err, 'strerror', None) or err})") from None
        except IndexError:
            raise SourceError(f"{self.name}: its {_syntax_name(self.syntax)} pixel data holds no video") from None


def _stored_frames(path: Path, reader: _Reader) -> int | None:
    """How many frames the pixel data really holds, read from its length (native data) or from the headers of its
    fragments (encapsulated data: the basic offset table, else the fragments that open a JPEG, JPEG-LS or JPEG 2000
    codestream), without decoding a pixel; None where it cannot tell."""
    import pydicom
    from pydicom.encaps import parse_basic_offsets, parse_fragments

    try:
        with _quiet():
            ds = pydicom.dcmread(str(path), defer_size=64, force=True)
        elem = ds.get_item("PixelData", keep_deferred=True)
        if elem is None or elem.value_tell is None:
            return None
        if elem.length != 0xFFFFFFFF:  # native: a defined length, frames of a fixed size
            frame_bytes = _native_frame_bytes(reader.ds)
            return elem.length // frame_bytes if frame_bytes else None
        if reader.video_format is not None:  # one video stream: its frame count is the container's business
            return None
        with path.open("rb") as fp:
            fp.seek(elem.value_tell)
            offsets = parse_basic_offsets(fp)
            if offsets:
                return len(offsets)
            starts = 0
            for position in parse_fragments(fp)[1]:
                fp.seek(position + 8)  # after the item tag and length
                starts += fp.read(2) in (b"\xff\xd8", b"\xff\x4f")
            return starts or None
    except Exception:  # a check for a warning: a file it cannot parse is the decoder's to report
        log.debug("%s: the stored frame count could not be read", path.name, exc_info=True)
        return None


def _native_frame_bytes(ds: Any) -> int:
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 8) or 8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        return rows * columns * 2 * bits // 8  # two samples a pixel (PS3.5 §8.2.1)
    return rows * columns * samples * bits // 8


def read_dicom_still(path: Path) -> np.ndarray:
    """The (first) image of a DICOM file as uint8 RGB or grey; raises ``SourceError`` (one line) when it cannot."""
    path = Path(path)
    reader = _Reader(path, path.name)
    for pixels in reader.frames(0):
        return pixels
    raise SourceError(f"{path.name} holds no decodable frame")


class DicomSource(Source):
    """One DICOM file: a cine loop (``kind="video"``) or a still (``kind="image"``).

    ``frames(start_s)`` starts at the frame on screen at ``start_s`` (the last with ``pts_s <= start_s``); without
    timing information ``start_s`` is ignored for stills and counts frames at 30 per second otherwise.
    ``roi_hint`` is the scanner's image region (or None), available after ``open()``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.name = self.path.name
        self.roi_hint: tuple[int, int, int, int] | None = None
        self._reader: _Reader | None = None
        self._pts: list[float] | None = None
        self._first: np.ndarray | None = None

    def open(self) -> SourceInfo:
        self.close()
        if not self.path.exists():
            raise SourceError(f"no such file: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a DICOM file")
        self.notes = ()
        reader = _Reader(self.path, self.name)
        first = next(reader.frames(0), None)
        if first is None:
            raise SourceError(f"{self.name} holds no decodable frame")
        n = reader.frame_count
        stored = _stored_frames(self.path, reader)
        if stored is not None and stored > n:
            note = (f"{self.name}: its NumberOfFrames says {n} but its pixel data holds {stored} frames; "
                    f"only the {n} declared are played")
            log.warning("%s", note)
            self.notes = (note,)
        self._pts, fps = frame_times(reader.ds, n)
        self.roi_hint = roi_hint_of(reader.ds, first.shape[1], first.shape[0])
        self._reader, self._first = reader, first
        self.info = SourceInfo(
            name=self.name,
            kind="video" if n > 1 else "image",
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            fps=fps,
            frame_count=n,
            live=False,
            roi_hint=self.roi_hint,
        )
        return self.info

    def _start_index(self, start_s: float) -> int:
        n = self._reader.frame_count if self._reader else 0
        if start_s <= 0 or n <= 1:
            return 0
        if self._pts is None:
            return min(n, int(start_s * 30.0 + 1e-6))
        limit = start_s + 1e-3
        index = 0
        for i, p in enumerate(self._pts):
            if p <= limit:
                index = i
            else:
                break
        if index == n - 1:  # past the last frame: show it only while it is still on screen
            step = (self._pts[-1] - self._pts[0]) / (n - 1)
            if start_s > self._pts[-1] + step:
                return n
        return index

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        if self._reader is None:
            raise RuntimeError("DicomSource.frames() called before open()")
        reader = self._reader
        start = self._start_index(max(0.0, float(start_s)))
        first, self._first = self._first, None
        if reader.frame_count == 1:
            yield RawFrame(first if first is not None else next(reader.frames(0)), 0.0)
            return
        index = start
        if start == 0 and first is not None:
            yield RawFrame(first, self._pts[0] if self._pts else None)
            index = 1
        yielded = index - start
        for pixels in reader.frames(index):
            yield RawFrame(pixels, self._pts[index] if self._pts else None)
            index += 1
            yielded += 1
        if start == 0 and yielded < reader.frame_count:
            raise SourceError(f"{self.name} ends after {yielded} of its {reader.frame_count} frames "
                              "(a truncated file?)")

    def close(self) -> None:
        self._reader = None
        self._first = None
