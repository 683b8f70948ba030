"""Find the recordings under a folder: video files, DICOM files (cine loops and stills), folders of still images.

The rules, in the walk's (sorted) order:

* a folder that directly holds still images (PNG, JPEG, BMP, TIFF; segmentation masks ``*_mask.*`` aside) is one
  recording — what ``sonolens run FOLDER`` plays: every image and DICOM file below it, as one slideshow; below such
  a folder only video files are recordings of their own;
* elsewhere, every DICOM file (``.dcm``/``.dicom``, or any file with the ``DICM`` preamble) is one recording;
* every video file (by extension, ``VIDEO_EXTENSIONS``) is one recording;
* hidden files and folders (``.name``) and the folder ``skip`` (the batch's own output, when it lies under ROOT) are
  left out; any other file is counted in ``ignored``.

Each recording carries a fingerprint (size and modification time; for a folder: the count, total size and latest
modification time of every file below it): a result is reused only while the fingerprint still matches.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sonolens.pipeline.sources.dicom import is_dicom_path
from sonolens.pipeline.sources.stills import DEFAULT_EXCLUDE, IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ts",
                              ".mts", ".m2ts", ".ogv", ".flv", ".3gp", ".mxf"})
KINDS = ("video", "dicom", "images")


@dataclass(frozen=True)
class Recording:
    """One recording: ``path`` (absolute, as workers open it), ``rel`` (POSIX path relative to ROOT; ``.`` for ROOT
    itself), ``kind`` (video | dicom | images), ``size`` in bytes, ``stamp`` (the fingerprint) and ``id`` (a file
    name made from ``rel``, unique within a batch)."""

    path: str
    rel: str
    kind: str
    size: int
    stamp: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return recording_id(self.rel)

    @property
    def folder(self) -> str:
        """The first folder level under ROOT that holds the recording (``.`` for one directly in ROOT)."""
        parts = self.rel.split("/")
        if self.kind == "images":
            return parts[0]
        return parts[0] if len(parts) > 1 else "."


@dataclass
class Discovery:
    recordings: list[Recording]
    ignored: int = 0


def recording_id(rel: str) -> str:
    """A readable, unique file name for a recording: its path with separators made safe, cut to 80 characters,
    and a hash of the whole path (two paths that read alike after the cut never collide)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__")).strip("._") or "root"
    return f"{slug[:80]}-{hashlib.sha1(rel.encode('utf-8')).hexdigest()[:10]}"


def is_still(name: str) -> bool:
    lower = name.lower()
    return Path(lower).suffix in IMAGE_EXTENSIONS and not any(fnmatch.fnmatch(lower, ex) for ex in DEFAULT_EXCLUDE)


def file_kind(path: Path) -> str | None:
    """video | dicom | None (not a recording), by extension and, for other files, the DICOM preamble."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return None
    return "dicom" if is_dicom_path(path) else None


def _file_stamp(path: Path) -> tuple[int, dict]:
    st = path.stat()
    return st.st_size, {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _folder_stamp(folder: Path) -> tuple[int, dict]:
    count = total = latest = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            count, total, latest = count + 1, total + st.st_size, max(latest, st.st_mtime_ns)
    return total, {"files": count, "size": total, "mtime_ns": latest}


def _rel(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel or "."


def _same(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def discover(root: str | os.PathLike, skip: str | os.PathLike | None = None) -> Discovery:
    """The recordings under ``root`` (see the module's rules), sorted by path."""
    root = Path(root)
    skip_path = Path(skip) if skip is not None else None
    found = Discovery([])
    covered: set[str] = set()  # folders inside an image-folder recording
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _same(here / d, skip_path))
        files = sorted(f for f in filenames if not f.startswith("."))
        inside = os.path.dirname(dirpath) in covered and here != root
        if not inside and any(is_still(f) for f in files):
            size, stamp = _folder_stamp(here)
            found.recordings.append(Recording(os.path.abspath(here), _rel(root, here), "images", size, stamp))
            inside = True
        if inside:
            covered.add(dirpath)
        for name in files:
            _add_file(found, root, here / name, inside)
    found.recordings.sort(key=lambda r: r.rel)
    return found


def _add_file(found: Discovery, root: Path, path: Path, inside_images: bool) -> None:
    if inside_images and (is_still(path.name) or path.suffix.lower() not in VIDEO_EXTENSIONS):
        return  # part of the folder's slideshow (or not a recording)
    kind = file_kind(path)
    if kind is None or not path.is_file():
        found.ignored += 1
        return
    try:
        size, stamp = _file_stamp(path)
    except OSError:
        size, stamp = 0, {}
    found.recordings.append(Recording(os.path.abspath(path), _rel(root, path), kind, size, stamp))


__all__ = ["Recording", "Discovery", "discover", "recording_id", "file_kind", "VIDEO_EXTENSIONS", "KINDS"]
