"""Find the ultrasound image inside a scanner screen capture.

Screen captures carry the scanner's UI around the B-mode image: text, depth scales, logos, calipers. Two cues
separate the image from the UI: the image is *textured* (speckle has high local variance, flat UI panels do not)
and it *changes* from frame to frame (the UI is static). The region is the largest connected blob where both hold
(texture alone for a single still), closed morphologically so dark anechoic areas inside the image are kept, and
returned as a bounding box. A manual ``--roi x,y,w,h`` always wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .errors import ConfigError

Roi = tuple[int, int, int, int]

_SCALE = 4  # detect on a 1/4-size image: fast, and text strokes vanish
_TEXTURE_STD = 3.0  # grey levels of local std-dev that count as "textured" (dark, deep tissue is ~3-6)
_CHANGE_STD = 2.0  # grey levels of temporal std-dev that count as "changing"
_MIN_AREA_FRAC = 0.05  # smaller than this is not an ultrasound image: fall back to the full frame


def parse_roi(text: str) -> Roi:
    """Parse ``x,y,w,h`` (pixels)."""
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(f"--roi must be x,y,w,h in pixels, got {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ConfigError(f"--roi needs x,y >= 0 and w,h > 0, got {text!r}")
    return x, y, w, h


def clamp_roi(roi: Roi, width: int, height: int) -> Roi:
    x, y, w, h = roi
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    return x, y, max(1, min(w, width - x)), max(1, min(h, height - y))


def _gray_small(pixels: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    h, w = g.shape
    return cv2.resize(g, (max(1, w // _SCALE), max(1, h // _SCALE)), interpolation=cv2.INTER_AREA).astype(np.float32)


def detect_roi(frames: Sequence[np.ndarray]) -> Roi:
    """Bounding box (x, y, w, h) of the ultrasound image in full-resolution pixel coordinates."""
    if not frames:
        raise ValueError("detect_roi needs at least one frame")
    height, width = frames[0].shape[:2]
    small = [_gray_small(f) for f in frames]
    mean = small[0]
    sq = cv2.blur(mean * mean, (5, 5))
    mu = cv2.blur(mean, (5, 5))
    texture = np.sqrt(np.maximum(sq - mu * mu, 0.0)) > _TEXTURE_STD
    mask = texture
    if len(small) >= 3:
        stack = np.stack(small)
        change = cv2.blur(stack.std(axis=0), (5, 5)) > _CHANGE_STD
        # Use the temporal cue only where it is informative: a frozen clip has no change at all.
        if change.mean() > _MIN_AREA_FRAC:
            mask = texture & change
    mask = mask.astype(np.uint8)
    raw = mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=3)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return 0, 0, width, height
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[best])
    if area < _MIN_AREA_FRAC * mask.size:
        return 0, 0, width, height
    # An anechoic band (a vessel, the vitreous of an eye, a cyst) can split one image into several blobs stacked
    # in depth. Join blobs that share the largest one's columns and are not specks.
    x0, y0, x1, y1 = x, y, x + w, y + h
    for i in range(1, n):
        bx, by, bw, bh, barea = (int(v) for v in stats[i])
        overlap = min(x + w, bx + bw) - max(x, bx)
        if i != best and barea >= 0.1 * area and overlap >= 0.5 * min(w, bw):
            x0, y0, x1, y1 = min(x0, bx), min(y0, by), max(x1, bx + bw), max(y1, by + bh)
    x0, y0, x1, y1 = _trim_sparse_edges(raw, x0, y0, x1, y1)
    return clamp_roi((x0 * _SCALE, y0 * _SCALE, (x1 - x0) * _SCALE, (y1 - y0) * _SCALE), width, height)


def _trim_sparse_edges(raw: np.ndarray, x0: int, y0: int, x1: int, y1: int, min_frac: float = 0.1
                       ) -> tuple[int, int, int, int]:
    """Peel off border rows/columns of the box that are mostly empty in the unclosed mask.

    Closing glues thin UI next to the image (a depth scale, a running clock) onto it; those strips are sparse.
    """
    box = raw[y0:y1, x0:x1].astype(np.float32)
    cols, rows = box.mean(axis=0), box.mean(axis=1)
    good_c, good_r = np.flatnonzero(cols >= min_frac), np.flatnonzero(rows >= min_frac)
    if good_c.size < 2 or good_r.size < 2:
        return x0, y0, x1, y1
    return x0 + int(good_c[0]), y0 + int(good_r[0]), x0 + int(good_c[-1]) + 1, y0 + int(good_r[-1]) + 1
