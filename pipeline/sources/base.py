"""The one interface every frame source implements.

A source is opened, yields ``RawFrame``s until it ends, and is closed. Sources do not pace, loop or
number frames: the capture thread does that, so every source behaves the same way under
``--realtime`` / ``--max-rate`` / ``--loop``. Errors a user can cause raise ``SourceError`` with a
one-line message, at ``open()`` when they can be detected there, else from ``frames()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from ..messages import RawFrame


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What is known about a source once open. ``fps`` is None for stills and unknown camera rates."""

    name: str
    kind: str  # "video" | "camera" | "image" | "folder" | "phantom" | "igtl"
    width: int
    height: int
    fps: float | None
    frame_count: int | None  # None when unknown (cameras, some containers)
    live: bool  # True for cameras/phantoms: frames arrive in real time by themselves
    # (x, y, w, h) of the image area when the source knows it (DICOM Sequence of Ultrasound Regions), else None
    roi_hint: tuple[int, int, int, int] | None = None


class Source(ABC):
    """Base class: ``with source: for raw in source.frames(): ...``"""

    info: SourceInfo
    #: What a report must say about the input itself (a header that undercounts its frames, packets that could not
    #: be decoded), one line each; a source that finds one also logs it as a warning when it finds it.
    notes: tuple[str, ...] = ()

    @abstractmethod
    def open(self) -> SourceInfo:
        """Open the source and return its info; raise ``SourceError`` if it cannot be used."""

    @abstractmethod
    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        """Yield frames from ``start_s`` seconds on. Calling it again restarts from ``start_s`` (used to loop)."""

    def close(self) -> None:  # noqa: B027 - a no-op default: sources without resources need not override it
        """Release the device or file. Safe to call twice."""

    def interrupt(self) -> None:  # noqa: B027 - a no-op default: only a source that waits for input overrides it
        """From another thread, as the pipeline stops: end a ``frames()`` iterator that is waiting (a held still)."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
