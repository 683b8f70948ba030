"""The B-mode phantom as a live source: a simulated breast scan, no file or device needed.

It renders frames on demand (≈6 ms each at 640×480 on one core), so it behaves like a scanner feed: the
capture thread paces it at ``fps``. ``seconds=None`` streams for ever (lesions keep coming); a finite
``seconds`` ends after ``round(seconds × fps)`` frames, the same frames ``sonolens simulate`` writes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

from ..errors import SourceError
from ..messages import RawFrame
from ..phantom_render import KINDS, Phantom, check_kind
from .base import Source, SourceInfo

__all__ = ["PhantomSource", "KINDS"]


class PhantomSource(Source):
    """``PhantomSource("malignant", seed=0)``: frames of a simulated scan; ``pts_s = i / fps``."""

    def __init__(self, kind: str, seed: int = 0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
                 seconds: float | None = None) -> None:
        self.kind = check_kind(kind)
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise SourceError(f"phantom fps must be a positive number, got {fps!r}")
        self.seed, self.fps, self.size, self.seconds = int(seed), float(fps), (int(size[0]), int(size[1])), seconds
        self._phantom: Phantom | None = None
        self.info = SourceInfo(name=f"phantom:{kind}", kind="phantom", width=self.size[0], height=self.size[1],
                               fps=self.fps, frame_count=None, live=True)

    @property
    def phantom(self) -> Phantom:
        """The renderer (opens the source if needed): ground truth via ``phantom.truth(i)``."""
        if self._phantom is None:
            self.open()
        return self._phantom

    def open(self) -> SourceInfo:
        if self._phantom is None:
            self._phantom = Phantom(self.kind, seed=self.seed, fps=self.fps, size=self.size, seconds=self.seconds)
        self.info = SourceInfo(name=f"phantom:{self.kind}", kind="phantom", width=self.size[0],
                               height=self.size[1], fps=self.fps, frame_count=self._phantom.frame_count, live=True)
        return self.info

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        phantom = self.phantom
        n = phantom.frame_count
        i = max(0, int(round(start_s * self.fps)))
        while n is None or i < n:
            yield RawFrame(pixels=phantom.render(i), pts_s=i / self.fps)
            i += 1

    def close(self) -> None:
        self._phantom = None
