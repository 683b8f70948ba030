"""A cap on frame size: frames larger than ``MAX_SIDE`` pixels on their long side are downscaled as they arrive.

A 10000×10000 PNG or a stream of 8000×8000 OpenIGTLink images would otherwise travel through the queue, the
preprocessing, the heat map, the overlay and the recorder at full size (1.9–2.3 GB resident measured): the model
sees 160–224 px, and no screen or recording needs more than 4096. ``SizeCappedSource`` wraps the source of every
pipeline (``stream.build``: run, view): ``info`` (width, height, the DICOM ultrasound region) is given capped, each
larger frame is resized with pixel-area interpolation the moment the source yields it, one warning says so, and
``scale`` (≤ 1) is what a user's ``--roi``, given in the source's own pixels, is multiplied by.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from ..messages import RawFrame
from .base import Source, SourceInfo

log = logging.getLogger(__name__)

MAX_SIDE = 4096  # pixels on the long side: documented in the README (SOURCE) and RELIABILITY.md

__all__ = ["MAX_SIDE", "SizeCappedSource", "cap_scale", "scale_box"]


def cap_scale(width: int, height: int, max_side: int = MAX_SIDE) -> float:
    """The factor that brings ``width × height`` within ``max_side`` on its long side (1.0 when it fits)."""
    long_side = max(width, height)
    return 1.0 if long_side <= max_side else max_side / long_side


def scale_box(box: tuple[int, int, int, int] | None, scale: float) -> tuple[int, int, int, int] | None:
    """An ``(x, y, w, h)`` box in source pixels, in the pixels of the frame downscaled by ``scale``."""
    if box is None or scale == 1.0:
        return box
    x, y, w, h = box
    return round(x * scale), round(y * scale), max(1, round(w * scale)), max(1, round(h * scale))


def _capped(pixels: np.ndarray, max_side: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    scale = cap_scale(w, h, max_side)
    if scale == 1.0:
        return pixels
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


class SizeCappedSource(Source):
    """``inner`` with every frame at most ``max_side`` pixels on its long side; everything else is the inner
    source's (its counters, notes and methods are read through this object)."""

    def __init__(self, inner: Source, max_side: int = MAX_SIDE) -> None:
        self.inner = inner
        self.max_side = max_side
        self.scale = 1.0  # of the frames at open(); a stream whose size changes is capped frame by frame
        self._warned = False

    def __getattr__(self, name: str) -> Any:  # only called for what this wrapper does not have itself
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def notes(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.inner.notes

    def open(self) -> SourceInfo:
        info = self.inner.open()
        self.scale = cap_scale(info.width, info.height, self.max_side)
        if self.scale < 1.0:
            self._warn(info.width, info.height)
        self.info = SourceInfo(
            name=info.name, kind=info.kind, width=max(1, round(info.width * self.scale)),
            height=max(1, round(info.height * self.scale)), fps=info.fps, frame_count=info.frame_count,
            live=info.live, roi_hint=scale_box(info.roi_hint, self.scale))
        return self.info

    def _warn(self, width: int, height: int) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s: its %d×%d frames are larger than %d px on the long side and are downscaled as they "
                        "arrive (ROIs with them)", self.inner.info.name if hasattr(self.inner, "info") else "source",
                        width, height, self.max_side)

    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        for raw in self.inner.frames(start_s):
            h, w = raw.pixels.shape[:2]
            if max(h, w) <= self.max_side:
                yield raw
                continue
            self._warn(w, h)
            yield RawFrame(_capped(raw.pixels, self.max_side), raw.pts_s, file=raw.file)

    def interrupt(self) -> None:
        self.inner.interrupt()

    def close(self) -> None:
        self.inner.close()
