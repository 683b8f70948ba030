"""Find the ultrasound image inside a scanner screen capture, a cropped recording or a still.

Screen captures carry the scanner's UI around the B-mode image: text, depth scales, logos, body markers. What sets
the image apart is that it is *active*: it changes from frame to frame (the UI is static) and, in a single frame,
it is speckle, textured at the finest scale even where it is dark. Both cues are measured at full detail (half
resolution) and only then pooled onto a 1/4-size grid, so faint deep tissue, whose grey levels are a few units,
still counts (pooling first, as before, averaged it away and cut the deep third of lung clips off). Outside the
image a capture is flat (0 activity, compression included), so a low threshold separates the two.

1. *Active cells*: in a clip with motion (>= 3 frames and change over >= 5 % of the frame), cells whose mean
   absolute frame-to-frame change exceeds ``_CHANGE``: static UI drops out however textured it is. Otherwise (a
   still, a frozen clip) cells whose mean absolute deviation from the 3x3 mean exceeds ``_TEXTURE``.
2. *The image*: a small closing bridges speckle holes, an opening keeps only solid areas (thin text, ticks and
   scales vanish), and the largest solid component is the image. Other solid components join it when they are a
   fifth of its size (a dual-panel capture) or sit above/below it in its columns (tissue split in depth by an
   anechoic band, a shadow or a dark layer). A sector's dark corners and an acoustic shadow inside the fan (a rib
   shadow is pure black) do not matter as long as the fan's edge is textured somewhere.
3. *Trim*: border columns (rows) of that box without a vertical (horizontal) run of active cells >= 6 % of the
   box are peeled off, and so is a thin block of them (<= 12 % of the box) cut off by such a gap: UI glued on by
   the closing (a depth scale, a grey bar, a body marker) goes, a fan's tapering edge (one contiguous run per
   column) stays.
4. *Symmetry*: a fan is left-right symmetric about the middle of its top rows (the probe). Where a shadow hides
   one flank (the rib shadow of a lung clip can black out a side for a second), the box is widened to the mirror
   image of the other flank, over columns that are mostly flat.
5. *Cropped frames*: when the image spans the full frame width, the frame is a crop of the image (a dataset still,
   a cropped clip), not a screen with UI below it, so flat rows under it are the image's deep field attenuated to
   black; they are kept when nearly empty (<= 12 % active, no row > 25 %). Losing anatomy costs more than keeping a
   few black rows.

The result is the bounding box in full-resolution pixels (an edge on the last grid cell goes to the frame edge).
Measured against hand-drawn boxes by ``roi_eval`` (``benchmarks/roi_accuracy.md``). A manual ``--roi x,y,w,h``
always wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .errors import ConfigError

Roi = tuple[int, int, int, int]

_SCALE = 4  # decide on a 1/4-size grid (cells of 4x4 pixels): fast, and thin UI strokes are easy to open away
_TEXTURE = 0.3  # mean |pixel - 3x3 mean| (grey levels, half resolution) of a speckle cell; flat UI/background: 0
_CHANGE = 0.3  # mean |frame - previous frame| (grey levels, half resolution) of a live image cell; static UI: 0
_MIN_AREA_FRAC = 0.05  # smaller than this is not an ultrasound image: fall back to the full frame
_CLOSE = 3  # cells: bridges speckle holes (and gaps of up to ~8 px between pieces of tissue)
_OPEN = 6  # cells: what is thinner than ~24 px (text lines, ticks, scales, bars) is not image
_JOIN_FRAC = 0.2  # another solid component of this share of the largest joins it (dual-panel capture)
_STACK_FRAC = 0.05  # ... or of this share when it lies in the largest one's columns (tissue split in depth)
_RUN_FRAC = 0.06  # a column/row is image when it holds a run of active cells this long (share of the box)
_THIN_FRAC = 0.12  # a block of columns/rows this thin, cut off from the rest by a gap, is UI
_EMPTY_FRAC = 0.12  # below a full-width image: at most this share active (and no row over 25 %) = deep field
_MIN_SIDE = 16  # pixels; a smaller frame is used whole


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


def _gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_RGB2GRAY)


def half_gray(gray: np.ndarray) -> np.ndarray:
    """What the detector looks at in one frame: its grey ``[H, W]`` at half resolution (``INTER_AREA``), uint8.

    ``Preprocessor`` keeps these, not the frames, over its detection window: each frame is converted once, and the
    window holds a quarter of the pixels."""
    height, width = gray.shape[:2]
    return cv2.resize(gray, (max(1, width // 2), max(1, height // 2)), interpolation=cv2.INTER_AREA)


def _active_cells(halves: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """uint8 0/1 grid (1/4 size) of a ``width``×``height`` frame from its frames' ``half_gray``: where the frames
    change, or, without motion, where the last frame is textured."""
    grid = (max(1, width // _SCALE), max(1, height // _SCALE))
    if len(halves) >= 3:
        acc = np.zeros(halves[0].shape, np.float32)
        for a, b in zip(halves[1:], halves[:-1]):
            cv2.accumulate(cv2.absdiff(a, b), acc)
        change = cv2.resize(acc, grid, interpolation=cv2.INTER_AREA) > _CHANGE * (len(halves) - 1)
        if change.mean() > _MIN_AREA_FRAC:  # a frozen clip (or a duplicated first second) has no change at all
            return change.astype(np.uint8)
    last = halves[-1].astype(np.float32)
    texture = cv2.resize(cv2.absdiff(last, cv2.blur(last, (3, 3))), grid, interpolation=cv2.INTER_AREA)
    return (texture > _TEXTURE).astype(np.uint8)


def _has_run(active: np.ndarray, axis: int) -> np.ndarray:
    """Per column (``axis=0``) or row (``axis=1``): does it hold a run of active cells >= ``_RUN_FRAC`` of its
    length (single-cell holes bridged)?"""
    run = max(4, round(_RUN_FRAC * active.shape[axis]))
    bridge, line = ((3, 1), (run, 1)) if axis == 0 else ((1, 3), (1, run))
    a = cv2.morphologyEx(active, cv2.MORPH_CLOSE, np.ones(bridge, np.uint8))
    a = cv2.morphologyEx(a, cv2.MORPH_OPEN, np.ones(line, np.uint8))
    return np.asarray(a.any(axis=axis))


def _trim(good: np.ndarray) -> tuple[int, int]:
    """``[a, b)``: ``good`` without its non-good ends and without a thin good block cut off by a gap at either end."""
    n = len(good)
    a, b = 0, n
    for _ in range(2):
        while a < b and not good[a]:
            a += 1
        j = a
        while j < b and good[j]:
            j += 1
        if j - a > _THIN_FRAC * n or j >= b:
            break
        a = j
    for _ in range(2):
        while b > a and not good[b - 1]:
            b -= 1
        j = b
        while j > a and good[j - 1]:
            j -= 1
        if b - j > _THIN_FRAC * n or j <= a:
            break
        b = j
    return (a, b) if b > a else (0, n)


def _mirror(active: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int]:
    """Widen ``[x0, x1)`` to its mirror image about the image's axis, the middle of its top rows.

    A sector (and a rectangle, a trapezoid) is left-right symmetric about the scan line under the middle of the
    probe, and its top rows, the near field, are where it is seen whole. A shadow can black out one flank of the
    fan lower down; the other flank says how far it reaches. The widening only crosses columns that are mostly
    flat (<= 25 % active), never a block of something else; for a symmetric box it does nothing."""
    top = active[y0 : y0 + max(2, (y1 - y0) // 20), x0:x1].any(axis=0)
    cols = np.flatnonzero(top)
    if cols.size < 2:
        return x0, x1
    twice_axis = 2 * x0 + int(cols[0]) + int(cols[-1]) + 1
    want0, want1 = max(0, twice_axis - x1), min(active.shape[1], twice_axis - x0)
    busy = active[y0:y1].mean(axis=0) > 0.25
    while x1 < want1 and not busy[x1]:
        x1 += 1
    while x0 > want0 and not busy[x0 - 1]:
        x0 -= 1
    return x0, x1


def detect_roi(frames: Sequence[np.ndarray]) -> Roi:
    """Bounding box (x, y, w, h) of the ultrasound image in full-resolution pixel coordinates (see the module).

    ``frames``: uint8 ``[H, W]`` grey or ``[H, W, 3|4]`` RGB(A), all of one size."""
    if not frames:
        raise ValueError("detect_roi needs at least one frame")
    height, width = frames[0].shape[:2]
    if min(height, width) < _MIN_SIDE:
        return 0, 0, width, height
    return detect_roi_halves([half_gray(_gray(f)) for f in frames], width, height)


def detect_roi_halves(halves: Sequence[np.ndarray], width: int, height: int) -> Roi:
    """``detect_roi`` of frames given by their ``half_gray`` (same result), for a ``width``×``height`` frame."""
    if not halves:
        raise ValueError("detect_roi needs at least one frame")
    if min(height, width) < _MIN_SIDE:
        return 0, 0, width, height
    active = _active_cells(halves, width, height)
    gh, gw = active.shape
    closed = cv2.morphologyEx(active, cv2.MORPH_CLOSE, np.ones((_CLOSE, _CLOSE), np.uint8))
    solid = cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones((_OPEN, _OPEN), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if n <= 1:
        return 0, 0, width, height
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    big = int(areas.max())
    if big < _MIN_AREA_FRAC * solid.size:
        return 0, 0, width, height
    bx, bw = int(stats[best, cv2.CC_STAT_LEFT]), int(stats[best, cv2.CC_STAT_WIDTH])

    def joins(i: int) -> bool:
        x, w, area = (int(v) for v in stats[i, [cv2.CC_STAT_LEFT, cv2.CC_STAT_WIDTH, cv2.CC_STAT_AREA]])
        shared_cols = min(bx + bw, x + w) - max(bx, x)
        return area >= _JOIN_FRAC * big or (area >= _STACK_FRAC * big and shared_cols >= 0.5 * w)

    keep = [i for i in range(1, n) if joins(i)]
    x0 = min(int(stats[i, cv2.CC_STAT_LEFT]) for i in keep)
    y0 = min(int(stats[i, cv2.CC_STAT_TOP]) for i in keep)
    x1 = max(int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]) for i in keep)
    y1 = max(int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]) for i in keep)
    a, b = _trim(_has_run(active[y0:y1, x0:x1], axis=0))
    x0, x1 = x0 + a, x0 + b
    a, b = _trim(_has_run(active[y0:y1, x0:x1], axis=1))
    y0, y1 = y0 + a, y0 + b
    x0, x1 = _mirror(active, x0, y0, x1, y1)
    below = active[y1:, :]
    if x0 == 0 and x1 == gw and y1 < gh and below.mean() <= _EMPTY_FRAC and below.mean(axis=1).max() <= 0.25:
        y1 = gh  # a crop of the image: its deep field, attenuated to black, is image too
    left, top = x0 * _SCALE, y0 * _SCALE
    right = width if x1 == gw else x1 * _SCALE
    bottom = height if y1 == gh else y1 * _SCALE
    return clamp_roi((left, top, right - left, bottom - top), width, height)
