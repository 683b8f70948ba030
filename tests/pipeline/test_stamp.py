"""The latency stamp itself (``pipeline.stamp``): the codec, ``StampHook`` and ``ImageAreaPreprocessor``. No Qt.

They test the pipeline's stamp as the viewer's self-check uses it; they may move to ``tests/pipeline/test_stamp.py``.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from fakes import FakeEngine

from sonolens.pipeline.preprocess import Preprocessor
from sonolens.pipeline.stamp import (
    ImageAreaPreprocessor,
    StampHook,
    StampLayout,
    band_height,
    decode_stamp,
    encode_stamp,
)

W, H = 192, 144


def _image(seed: int = 0) -> np.ndarray:
    """A textured W×H RGB frame (the ROI detector needs texture)."""
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.integers(0, 255, (H, W), dtype=np.uint8), (3, 3), 0)
    return np.repeat(g[:, :, None], 3, axis=2)


# ===================================================================================================== stamp codec
@pytest.mark.parametrize("w,h", [(640, 480), (192, 144), (1280, 720)])
def test_stamp_roundtrip_and_after_resize(w, h):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    t = time.perf_counter_ns()
    out, layout = encode_stamp(img, t)
    assert out.shape == (h + layout.band_height, w, 3)
    assert np.array_equal(out[:h], img)  # the image itself is untouched: the stamp is in an added band
    assert abs(decode_stamp(out, layout) - t) < 1000  # µs resolution
    for scale in (0.5, 0.77, 1.6):
        for interp in (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC):
            small = cv2.resize(out, (round(out.shape[1] * scale), round(out.shape[0] * scale)), interpolation=interp)
            assert abs(decode_stamp(small, layout) - t) < 1000, (scale, interp)


def test_stamp_rejects_garbage_and_reads_from_a_sub_rectangle():
    img = np.zeros((144, 192, 3), np.uint8)
    t = time.perf_counter_ns()
    out, layout = encode_stamp(img, t)
    assert decode_stamp(np.zeros_like(out), layout) is None  # sync cells missing
    flipped = out.copy()
    x, y, cw, ch = layout.cell_rects()[10]
    flipped[y : y + ch, x : x + cw] = 255 - flipped[y : y + ch, x : x + cw]  # one data bit flipped: CRC fails
    assert decode_stamp(flipped, layout) is None
    # the frame drawn at (37, 20) scaled 1.5x inside a bigger screen, and only the band grabbed back
    big = cv2.resize(out, (288, round(out.shape[0] * 1.5)), interpolation=cv2.INTER_LINEAR)
    screen = np.full((400, 400, 3), 30, np.uint8)
    screen[20 : 20 + big.shape[0], 37 : 37 + 288] = big
    band_top = 20 + int(144 * 1.5)
    grab = screen[band_top:]
    got = decode_stamp(grab, layout, (37, 20 - band_top, 288, big.shape[0]))
    assert abs(got - t) < 1000


# ===================================================================================================== StampHook
def test_stamp_hook_pads_and_stamps_the_given_capture_time():
    hook = StampHook()
    img = _image()
    t = 123_456_789_012_345  # any perf_counter value: the hook writes what it is given, it reads no clock
    out = hook(img, t)
    layout = StampLayout.for_width(W, H)
    assert out.shape == (H + band_height(W), W, 3) and hook.layout == layout and hook.stamped == 1
    assert np.array_equal(out[:H], img)
    assert decode_stamp(out, layout, now_ns=t + 5_000_000) == t // 1000 * 1000
    gray = img[:, :, 0]
    out2 = hook(gray, t + 1000)  # grey frames come out RGB, same layout
    assert out2.shape == out.shape and np.array_equal(out2[:H, :, 2], gray) and hook.stamped == 2
    assert decode_stamp(out2, layout, now_ns=t + 5_000_000) == (t + 1000) // 1000 * 1000


def test_stamp_hook_follows_a_size_change_and_skips_narrow_frames():
    hook = StampHook()
    hook(np.zeros((144, 192, 3), np.uint8), 1000)
    out = hook(np.zeros((480, 640, 3), np.uint8), 2000)
    assert hook.layout == StampLayout.for_width(640, 480) and out.shape[0] == 480 + band_height(640)
    narrow = np.zeros((48, 64, 3), np.uint8)
    assert hook(narrow, 3000) is narrow and band_height(64) == 0 and hook.stamped == 2  # passed through


def test_image_area_preprocessor_excludes_band():
    pre = ImageAreaPreprocessor(Preprocessor(FakeEngine().meta, roi_frames=1))
    frame, _ = encode_stamp(_image(), time.perf_counter_ns())
    x, roi = pre(frame)
    assert roi[1] + roi[3] <= H  # the ROI stays inside the original image
    assert x.shape == (1, 3, 32, 32)
