"""Still images: one file (``ImageSource``) or a folder shown as a slideshow (``FolderSource``).

Stills are read with ``cv2.imdecode(IMREAD_UNCHANGED)`` on the file's bytes (``cv2.imread`` cannot open
non-ASCII paths on Windows), then brought to what a ``RawFrame`` carries: uint8 RGB, or uint8 gray for
gray files. 16-bit files are scaled by 1/257 (full range → full range, so an 8-bit image saved as 16-bit
comes back exactly); alpha is dropped. The EXIF orientation is applied (``pipeline.orientation``), so a photo
taken in portrait is upright. DICOM files (``.dcm``, or no extension and the ``DICM`` preamble) are read by
``sources.dicom`` (first frame of a multi-frame file). ``read_still`` is the one still reader: the training and
evaluation image loader (``training.data.load_gray``) calls it too.

A folder is searched recursively, so a folder-per-class dataset (``busi/benign/…``, ``busi/malignant/…``)
plays as one slideshow. Files are decoded lazily, one per frame, so a folder of thousands of images opens
at once; unreadable files are skipped with a warning and counted in ``skipped``.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from ..messages import RawFrame
from ..orientation import apply_orientation, exif_orientation
from .base import Source, SourceInfo
from .dicom import DICOM_EXTENSIONS, DicomUnavailable, has_dicom_preamble, is_dicom_path, read_dicom_still

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "FolderSource", "read_still"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# Segmentation datasets (BUSI among them) keep masks next to the images as "name_mask.png" or
# "name_mask_1.png"; a slideshow of the scans should not show them.
DEFAULT_EXCLUDE = ("*_mask.*", "*_mask_[0-9]*.*")


def read_still(path: Path) -> np.ndarray | None:
    """The image at ``path``, upright, as uint8 RGB (H×W×3) or gray (H×W), or None when it cannot be decoded.

    A DICOM file that cannot be read raises ``SourceError`` instead (one line saying why: a missing extra, a
    transfer syntax without a decoder), because "unreadable" would hide what the user has to fix."""
    path = Path(path)
    if is_dicom_path(path):
        return read_dicom_still(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # IMREAD_UNCHANGED ignores EXIF: applied below, once
    if image is None or image.size == 0:
        return None
    return apply_orientation(to_uint8_rgb_or_gray(image), exif_orientation(data))


def to_uint8_rgb_or_gray(image: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (BGR/BGRA/gray, any depth) → uint8 RGB or gray."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        elif channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif channels == 2:  # gray + alpha
            image = np.ascontiguousarray(image[:, :, 0])
    return image


class ImageSource(Source):
    """One still image, yielded once with ``pts_s = 0.0`` (the capture thread repeats it with ``--loop``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.name = self.path.name
        self._pixels: np.ndarray | None = None

    def open(self) -> SourceInfo:
        if not self.path.exists():
            raise SourceError(f"no such file: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not an image file")
        pixels = read_still(self.path)
        if pixels is None:
            raise SourceError(f"{self.name} is not a readable image")
        self._pixels = pixels
        height, width = pixels.shape[:2]
        self.info = SourceInfo(
            name=self.name, kind="image", width=width, height=height, fps=None, frame_count=1, live=False
        )
        return self.info

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        if self._pixels is None:
            raise RuntimeError("ImageSource.frames() called before open()")
        yield RawFrame(self._pixels, 0.0, file=self.path.name)

    def close(self) -> None:
        self._pixels = None


def _natural_key(path: Path, root: Path) -> list:
    """Sort "img2" before "img10" and "benign (9)" before "benign (10)"."""
    rel = path.relative_to(root).as_posix().lower()
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", rel)]


class FolderSource(Source):
    """The stills under ``folder`` (recursively, in natural sort order) as a slideshow at ``fps``, or held.

    ``hold=True``: each image is yielded once and the iterator then waits until ``advance()`` is called (from any
    thread: the viewer's step key, a reader study's answer); the source is then ``live`` (the capture thread does
    not pace it) and ``pts_s`` is the time since ``open()`` at which the image was shown. The last image also waits
    for ``advance()``, so the slideshow ends when the reader is done with it. ``interrupt()`` ends a waiting
    iterator (the pipeline stopping).

    ``paths`` lists the files in play order; frame ``i`` is ``paths[i]`` with ``pts_s = i / fps`` (a
    skipped file leaves a gap, so a timestamp always names the same file); ``frames(start_s)`` starts at
    the file on screen at ``start_s``. Images may differ in size:
    ``info.width/height`` are those of the first readable one. ``current_path`` is the file behind the
    frame most recently yielded, for a viewer to show.
    """

    def __init__(
        self,
        folder: str | Path,
        fps: float = 1.0,
        *,
        recursive: bool = True,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        hold: bool = False,
    ) -> None:
        if not fps or fps <= 0:
            raise SourceError(f"slideshow rate must be positive, got fps={fps}")
        self.folder = Path(folder).expanduser()
        self.name = self.folder.name or str(self.folder)
        self.fps = float(fps)
        self.recursive = recursive
        self.exclude = tuple(exclude)
        self.paths: list[Path] = []
        self.skipped_paths: list[Path] = []
        self.current_path: Path | None = None
        self._first: tuple[int, np.ndarray] | None = None
        self.hold = bool(hold)
        self._advance = threading.Event()
        self._interrupted = False
        self._t_open = 0.0

    @property
    def skipped(self) -> int:
        """How many files could not be read (each counted once, however often the slideshow loops)."""
        return len(self.skipped_paths)

    def _list(self) -> list[Path]:
        pattern = "**/*" if self.recursive else "*"
        found = [
            p
            for p in self.folder.glob(pattern)
            if (p.suffix.lower() in IMAGE_EXTENSIONS or p.suffix.lower() in DICOM_EXTENSIONS
                or (not p.suffix and p.is_file() and has_dicom_preamble(p)))
            and not p.name.startswith(".")
            and not any(fnmatch.fnmatch(p.name.lower(), ex) for ex in self.exclude)
            and p.is_file()
        ]
        return sorted(found, key=lambda p: _natural_key(p, self.folder))

    def _skip(self, path: Path) -> None:
        if path not in self.skipped_paths:
            self.skipped_paths.append(path)
            log.warning("%s: skipping unreadable image %s", self.name, path.relative_to(self.folder))

    def _read(self, path: Path) -> np.ndarray | None:
        """``read_still``, with one bad DICOM file skipped like any unreadable image; a missing DICOM extra or
        decoder still ends the slideshow with its one-line error (every DICOM file of the folder would fail)."""
        try:
            return read_still(path)
        except DicomUnavailable:
            raise
        except SourceError as exc:
            log.debug("%s", exc)
            return None

    def open(self) -> SourceInfo:
        if not self.folder.exists():
            raise SourceError(f"no such folder: {self.folder}")
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder} is not a folder")
        self.paths = self._list()
        self.skipped_paths = []
        if not self.paths:
            exts = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS | {".dcm"}))
            raise SourceError(f"{self.name} contains no images ({exts})")
        for index, path in enumerate(self.paths):
            pixels = self._read(path)
            if pixels is not None:
                self._first = (index, pixels)
                break
            self._skip(path)
        else:
            raise SourceError(f"{self.name}: none of its {len(self.paths)} image files could be read")
        height, width = self._first[1].shape[:2]
        self._advance.clear()
        self._interrupted, self._t_open = False, time.monotonic()
        self.info = SourceInfo(
            name=self.name,
            kind="folder",
            width=width,
            height=height,
            fps=None if self.hold else self.fps,
            frame_count=len(self.paths),
            live=self.hold,
        )
        return self.info

    def advance(self) -> None:
        """Show the next image now (``hold``); thread-safe; a call while nothing waits is kept for the next wait."""
        self._advance.set()

    def interrupt(self) -> None:
        self._interrupted = True
        self._advance.set()

    def _wait_for_advance(self) -> bool:
        """Block until ``advance()`` (True) or ``interrupt()`` (False)."""
        self._advance.wait()
        self._advance.clear()
        return not self._interrupted

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        if not self.paths:
            raise RuntimeError("FolderSource.frames() called before open()")
        # The frame on screen at start_s; the epsilon makes start_s = i / fps land on frame i despite float error.
        start = max(0, int(float(start_s) * self.fps + 1e-6))
        first, self._first = self._first, None
        for index in range(start, len(self.paths)):
            path = self.paths[index]
            pixels: np.ndarray | None
            if first is not None and first[0] == index:
                pixels = first[1]
            else:
                pixels = self._read(path)
            if pixels is None:
                self._skip(path)
                continue
            self.current_path = path
            pts = time.monotonic() - self._t_open if self.hold else index / self.fps
            yield RawFrame(pixels, pts, file=path.relative_to(self.folder).as_posix())
            if self.hold and not self._wait_for_advance():
                return

    def close(self) -> None:
        self._first = None
