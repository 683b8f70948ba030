"""A capture timestamp written *into the pixels*, so capture→display latency can be measured from the screen.

Every internal timestamp (``Timings``) is taken by the pipeline itself; a latency computed from them cannot see
what happens after the result leaves the worker (signal delivery, painting, the window system). The self-check
closes that gap: at capture, the frame gets a strip of 64 black/white cells below the image that encodes
``time.perf_counter_ns()``; the viewer grabs its own pixels after painting, decodes the strip and subtracts.
Nothing but the pixels on the glass carries the number, so the measurement does not trust the pipeline.

Layout of the strip (``StampLayout``), 64 cells in 1, 2 or 4 rows depending on the frame width:

* 4 sync cells ``1 1 0 1`` (locate/validate), 48 data bits (perf_counter µs modulo 2**48, MSB first),
  8 bits of CRC-8 (poly 0x07) over the 6 data bytes, 4 sync cells ``0 0 1 0``;
* cells are at least ``MIN_CELL`` pixels (6) wide, white = 1 and black = 0, on a black band; decoding
  averages the middle half of each cell and thresholds at mid-grey, so the strip survives being scaled to
  a third of its size or enlarged with any interpolation (tested). Frames narrower than 96 pixels cannot carry
  a readable stamp and pass through unstamped (``band_height`` is then 0).

Where the strip goes (and why the ROI never sees it): ``StampHook`` *adds* the band below the source's
image (a padded copy of each frame) instead of painting over it, so no image content is lost.
``ImageAreaPreprocessor`` then hands the model, and the automatic ROI detector, only the rows of the original
image: the stamp changes every frame and would otherwise attract the detector, which looks for texture that
changes. A ``--roi`` given by the user is in original-image coordinates and stays valid.

When: ``StampHook`` is a capture hook. The capture thread paces the frame (the one place pacing happens),
takes ``t_captured_ns`` and hands both to the hook, so the stamp is the frame's own capture time.

numpy only: no OpenCV, no Qt, so the decoder can be used on any grabbed image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

N_CELLS = 64
DATA_BITS = 48
SYNC_START = (1, 1, 0, 1)
SYNC_END = (0, 0, 1, 0)
MIN_CELL = 6
_US_MOD = 1 << DATA_BITS


def crc8(data: bytes, poly: int = 0x07) -> int:
    """CRC-8 (ATM/SMBus polynomial x^8 + x^2 + x + 1), init 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def stamp_bits(t_ns: int) -> np.ndarray:
    """The 64 cell values (0/1) that encode ``t_ns``."""
    us = (int(t_ns) // 1000) % _US_MOD
    data = us.to_bytes(6, "big")
    bits = [(us >> (DATA_BITS - 1 - i)) & 1 for i in range(DATA_BITS)]
    crc = crc8(data)
    bits += [(crc >> (7 - i)) & 1 for i in range(8)]
    return np.array(list(SYNC_START) + bits + list(SYNC_END), dtype=np.uint8)


def bits_to_us(bits: np.ndarray) -> int | None:
    """The encoded microsecond counter, or None when the sync cells or the CRC do not match."""
    b = [int(v) for v in np.asarray(bits).reshape(-1)]
    if len(b) != N_CELLS or tuple(b[:4]) != SYNC_START or tuple(b[-4:]) != SYNC_END:
        return None
    us = 0
    for v in b[4 : 4 + DATA_BITS]:
        us = (us << 1) | v
    crc = 0
    for v in b[4 + DATA_BITS : 4 + DATA_BITS + 8]:
        crc = (crc << 1) | v
    return us if crc8(us.to_bytes(6, "big")) == crc else None


def unwrap_us(us48: int, now_ns: int) -> int:
    """Full perf_counter nanoseconds of a 48-bit µs stamp, taken as the latest such time not after ``now_ns``."""
    now_us = int(now_ns) // 1000
    return (now_us - ((now_us - int(us48)) % _US_MOD)) * 1000


@dataclass(frozen=True)
class StampLayout:
    """Where the cells are, in the coordinates of the padded frame (image rows on top, band below)."""

    image_width: int
    image_height: int
    cols: int  # cells per row: 64, 32 or 16
    rows: int  # 1, 2 or 4
    cell: int  # cell size in pixels (square)
    margin: int  # black rows above and below the cells

    @classmethod
    def for_width(cls, width: int, height: int) -> StampLayout:
        for cols in (64, 32, 16):
            cell = width // cols
            if cell >= MIN_CELL:
                return cls(width, height, cols, N_CELLS // cols, cell, max(2, cell // 2))
        raise ValueError(f"frame too narrow for a self-check stamp: {width} px (need >= {16 * MIN_CELL})")

    @property
    def band_height(self) -> int:
        return self.rows * self.cell + 2 * self.margin

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the padded frame."""
        return self.image_height + self.band_height, self.image_width

    @property
    def x0(self) -> int:
        return (self.image_width - self.cols * self.cell) // 2

    @property
    def y0(self) -> int:
        return self.image_height + self.margin

    def cell_rects(self) -> list[tuple[int, int, int, int]]:
        """(x, y, w, h) of each cell, in bit order, in frame coordinates."""
        return [(self.x0 + (i % self.cols) * self.cell, self.y0 + (i // self.cols) * self.cell, self.cell, self.cell)
                for i in range(N_CELLS)]


def band_height(width: int) -> int:
    """Height of the stamp band of a frame ``width`` pixels wide (it depends on the width only); 0 when the frame
    is too narrow to carry a stamp (such frames pass through unstamped)."""
    if width // 16 < MIN_CELL:
        return 0
    return StampLayout.for_width(width, 0).band_height


def pad_with_band(pixels: np.ndarray, layout: StampLayout) -> np.ndarray:
    """A new H+band × W × 3 uint8 frame: the image on top (grey replicated to RGB), a black band below."""
    h, w = pixels.shape[:2]
    out = np.zeros((h + layout.band_height, w, 3), dtype=np.uint8)
    if pixels.ndim == 2:
        out[:h] = pixels[:, :, None]
    elif pixels.shape[2] == 1:
        out[:h] = pixels
    else:
        out[:h] = pixels[:, :, :3]
    return out


def write_stamp(frame: np.ndarray, layout: StampLayout, t_ns: int) -> None:
    """Write the cells of ``t_ns`` into a padded frame, in place."""
    for bit, (x, y, w, h) in zip(stamp_bits(t_ns), layout.cell_rects()):
        frame[y : y + h, x : x + w] = 255 if bit else 0


def encode_stamp(pixels: np.ndarray, t_ns: int, layout: StampLayout | None = None) -> tuple[np.ndarray, StampLayout]:
    """Padded copy of ``pixels`` with ``t_ns`` stamped into the band below the image."""
    layout = layout or StampLayout.for_width(pixels.shape[1], pixels.shape[0])
    out = pad_with_band(pixels, layout)
    write_stamp(out, layout, t_ns)
    return out, layout


def read_bits(img: np.ndarray, layout: StampLayout,
              frame_rect: tuple[float, float, float, float] | None = None) -> np.ndarray | None:
    """Cell values read from ``img``, in which the whole padded frame was drawn at ``frame_rect`` (x, y, w, h;
    default: the whole image). ``img`` may be RGB/RGBA/grey and show the frame at any scale; ``frame_rect``
    may lie partly outside ``img`` (e.g. when only the band was grabbed). None if a cell is outside ``img``."""
    a = np.asarray(img)
    gray = a[:, :, :3].mean(axis=2) if a.ndim == 3 else a.astype(np.float64)
    ih, iw = gray.shape
    fh, fw = layout.frame_shape
    fx, fy, rw, rh = frame_rect if frame_rect is not None else (0, 0, iw, ih)
    sx, sy = rw / fw, rh / fh
    bits = np.zeros(N_CELLS, dtype=np.uint8)
    for i, (x, y, w, h) in enumerate(layout.cell_rects()):
        # the middle half of the cell, in image pixels; at least one pixel
        x0 = fx + (x + 0.25 * w) * sx
        x1 = fx + (x + 0.75 * w) * sx
        y0 = fy + (y + 0.25 * h) * sy
        y1 = fy + (y + 0.75 * h) * sy
        c0, c1 = int(np.floor(x0)), max(int(np.floor(x0)) + 1, int(np.ceil(x1)))
        r0, r1 = int(np.floor(y0)), max(int(np.floor(y0)) + 1, int(np.ceil(y1)))
        if c0 < 0 or r0 < 0 or c1 > iw or r1 > ih:
            return None
        bits[i] = 1 if gray[r0:r1, c0:c1].mean() >= 128 else 0
    return bits


def decode_stamp(img: np.ndarray, layout: StampLayout, frame_rect=None, now_ns: int | None = None) -> int | None:
    """The stamped perf_counter time (ns, µs resolution) shown in ``img``, or None when it cannot be read."""
    bits = read_bits(img, layout, frame_rect)
    if bits is None:
        return None
    us = bits_to_us(bits)
    if us is None:
        return None
    return unwrap_us(us, time.perf_counter_ns() if now_ns is None else now_ns)


class StampHook:
    """Capture hook: pads each frame with the stamp band and writes the capture time into it.

    The capture thread calls it with every frame right after pacing, with the frame's ``t_captured_ns``, and
    enqueues what it returns (``pipeline.capture.CaptureHook``). Pacing stays the capture thread's alone, so a
    stamped run plays at the same times as an unstamped one. Frames narrower than ``16 * MIN_CELL`` pixels
    pass through unstamped. ``stamped`` counts stamped frames; ``layout`` is the last layout used.
    """

    def __init__(self) -> None:
        self.layout: StampLayout | None = None
        self.stamped = 0

    def __call__(self, pixels: np.ndarray, t_captured_ns: int) -> np.ndarray:
        h, w = pixels.shape[:2]
        if w // 16 < MIN_CELL:
            return pixels
        if self.layout is None or (self.layout.image_width, self.layout.image_height) != (w, h):
            self.layout = StampLayout.for_width(w, h)
        out = pad_with_band(pixels, self.layout)
        write_stamp(out, self.layout, t_captured_ns)
        self.stamped += 1
        return out


class ImageAreaPreprocessor:
    """Give the model (and the ROI detector) only the image rows above the stamp band.

    Rows are cut with a slice (a view, no copy); the band is at the bottom, so ROI coordinates are the same in
    the cut image and the padded frame. Everything else is delegated to the wrapped ``Preprocessor``.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, pixels: np.ndarray):
        return self.inner(pixels[: pixels.shape[0] - band_height(pixels.shape[1])])

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


__all__ = ["StampLayout", "StampHook", "ImageAreaPreprocessor", "encode_stamp", "decode_stamp", "read_bits",
           "write_stamp", "pad_with_band", "band_height", "stamp_bits", "bits_to_us", "unwrap_us", "crc8"]
