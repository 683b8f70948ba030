"""The B-mode phantom as a live source: a simulated breast scan, no file or device needed.

A live source paces itself (the capture thread never paces ``live`` sources). Like a scanner, it delivers
frame ``i`` at ``start + i / fps`` of wall-clock time. If its reader falls more than a frame behind, it skips
ahead to the frame that is due, as a probe that kept scanning would; ``frames_skipped`` counts those frames.
Rendering takes about 6 ms per 640×480 frame on one core, so at 30 Hz it only falls behind on a starved CPU.

``realtime=False`` makes it behave like a file instead (``live=False``). Frames then come as fast as they are
asked for and the capture thread paces them by ``pts``, or does not pace them at all for benchmarks.

``seconds=None`` streams for ever, and lesions keep coming. A finite ``seconds`` ends after
``round(seconds × fps)`` frames, the same frames ``sonolens simulate`` writes.

The pictures come from the simulator (``sonolens.simulator``, which does not import the pipeline); this
module only paces them, wraps them in ``RawFrame``s and turns a ``PhantomError`` into a ``SourceError``.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterator

from sonolens.simulator import KINDS, Phantom, PhantomError, check_kind

from ..errors import SourceError
from ..messages import RawFrame
from .base import Source, SourceInfo

__all__ = ["PhantomSource", "KINDS"]


class PhantomSource(Source):
    """``PhantomSource("malignant", seed=0)``: frames of a simulated scan; ``pts_s = i / fps``.

    ``phantom.truth(i)`` gives the lesion boxes of frame ``i`` (ground truth for demos and tests). Raises
    ``SourceError`` for an unknown kind or a frame rate that is not a positive number (here), and for a size
    under 64×64 or a length that is not positive (on ``open()``).
    """

    def __init__(self, kind: str, seed: int = 0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
                 seconds: float | None = None, *, realtime: bool = True) -> None:
        try:
            self.kind = check_kind(kind)
        except PhantomError as exc:
            raise SourceError(str(exc)) from None
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise SourceError(f"phantom fps must be a positive number, got {fps!r}")
        self.seed: int = int(seed)
        self.fps: float = float(fps)
        self.size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.seconds: float | None = seconds
        self.realtime: bool = bool(realtime)
        self.frames_skipped: int = 0
        self._phantom: Phantom | None = None
        self.info = SourceInfo(name=f"phantom:{kind}", kind="phantom", width=self.size[0], height=self.size[1],
                               fps=self.fps, frame_count=None, live=self.realtime)

    @property
    def phantom(self) -> Phantom:
        """The renderer (opens the source if needed): ground truth via ``phantom.truth(i)``."""
        if self._phantom is None:
            self.open()
        assert self._phantom is not None
        return self._phantom

    def open(self) -> SourceInfo:
        if self._phantom is None:
            try:
                self._phantom = Phantom(self.kind, seed=self.seed, fps=self.fps, size=self.size,
                                        seconds=self.seconds)
            except PhantomError as exc:
                raise SourceError(str(exc)) from None
        self.info = SourceInfo(name=f"phantom:{self.kind}", kind="phantom", width=self.size[0],
                               height=self.size[1], fps=self.fps, frame_count=self._phantom.frame_count,
                               live=self.realtime)
        return self.info

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        phantom = self.phantom
        n = phantom.frame_count
        i = i0 = max(0, int(round(start_s * self.fps)))
        period = 1.0 / self.fps
        t0 = time.perf_counter()
        while n is None or i < n:
            if self.realtime:
                late = time.perf_counter() - (t0 + (i - i0) * period)
                if late > period:                    # the reader fell behind: skip to the frame due now
                    skip = int(late * self.fps)
                    self.frames_skipped += skip
                    i += skip
                    if n is not None and i >= n:
                        return
            pixels = phantom.render(i)
            if self.realtime:                        # render first, then deliver on the frame's tick
                wait = t0 + (i - i0) * period - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            yield RawFrame(pixels=pixels, pts_s=i / self.fps)
            i += 1

    def close(self) -> None:
        self._phantom = None
