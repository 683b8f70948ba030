"""The cheaper preprocessing path gives the engine exactly what the plain chain gave it.

``Preprocessor`` now looks the normalisation up with ``cv2.LUT``, keeps each frame's half-size grey (not the frame)
while the automatic ROI is found, and, over that window, cuts the model's crop from the frame's whole grey. These
tests compare it, bit for bit, with the chain written out as it was (crop → ``RGB2GRAY`` → ``INTER_AREA`` →
``lut[:, small][None]``, the ROI from ``detect_roi`` over the full frames seen so far) on synthetic and real frames.
No timing is asserted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from sonolens.pipeline import roi as roi_mod
from sonolens.pipeline.modelfile import ModelSpec
from sonolens.pipeline.preprocess import Preprocessor, normalisation_lut, normalise_gray, spec_lut
from sonolens.pipeline.roi import detect_roi, detect_roi_halves, half_gray
from sonolens.pipeline.sources import VideoSource

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "sample_videos"
SPEC = ModelSpec(arch="test", class_names=("a", "b", "c"), input_size=(224, 224), mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225))


def reference_input(pixels: np.ndarray, roi: tuple[int, int, int, int], spec: ModelSpec) -> np.ndarray:
    """The model input as the chain was written before: crop, grey, ``INTER_AREA``, numpy's table lookup."""
    x, y, w, h = roi
    part = pixels[y : y + h, x : x + w]
    if part.ndim == 3:
        part = part[:, :, 0] if part.shape[2] == 1 else cv2.cvtColor(part, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(part, (spec.input_size[1], spec.input_size[0]), interpolation=cv2.INTER_AREA)
    return normalisation_lut(spec.mean, spec.std)[:, small][None]


def reference_rois(frames: Sequence[np.ndarray], roi_frames: int) -> list[tuple[int, int, int, int]]:
    """The ROI of each frame as ``Preprocessor`` gave it before: detected on the first frame, again over the first
    ``roi_frames`` frames, then kept."""
    first = detect_roi(frames[:1])
    final = detect_roi(frames[:roi_frames]) if len(frames) >= roi_frames else first
    return [first if i + 1 < roi_frames else final for i in range(len(frames))]


def old_active_cells(frames: Sequence[np.ndarray]) -> np.ndarray:
    """``roi._active_cells`` as it was, taking the full frames (the reference for the half-size window)."""
    height, width = frames[0].shape[:2]
    half = (max(1, width // 2), max(1, height // 2))
    grid = (max(1, width // 4), max(1, height // 4))
    halves = [cv2.resize(roi_mod._gray(f), half, interpolation=cv2.INTER_AREA) for f in frames]
    if len(halves) >= 3:
        acc = np.zeros((half[1], half[0]), np.float32)
        for a, b in zip(halves[1:], halves[:-1]):
            cv2.accumulate(cv2.absdiff(a, b), acc)
        change = cv2.resize(acc, grid, interpolation=cv2.INTER_AREA) > 0.3 * (len(halves) - 1)
        if change.mean() > 0.05:
            return change.astype(np.uint8)
    last = halves[-1].astype(np.float32)
    texture = cv2.resize(cv2.absdiff(last, cv2.blur(last, (3, 3))), grid, interpolation=cv2.INTER_AREA)
    return (texture > 0.3).astype(np.uint8)


def screen_clip(n: int = 12, size: tuple[int, int] = (322, 241), moving: bool = True) -> list[np.ndarray]:
    """RGB screens: static coloured UI (text, a bar) around a speckle image that changes from frame to frame."""
    w, h = size
    rng = np.random.default_rng(7)
    out: list[np.ndarray] = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        cv2.putText(img, "GAIN 52  DR 60", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 200, 0), 1)
        cv2.rectangle(img, (w - 14, 30), (w - 6, h - 30), (0, 180, 255), -1)
        fresh = moving or i == 0
        speckle = rng.integers(0, 200, (h - 70, w - 110), dtype=np.uint8) if fresh else out[0][40:-30, 50:-60, 0]
        img[40:-30, 50:-60] = speckle[:, :, None]
        out.append(img)
    return out


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    src = VideoSource(path)
    with src:
        return [raw.pixels for _, raw in zip(range(n), src.frames())]


def check_stream(frames: Sequence[np.ndarray], roi_frames: int = 8, spec: ModelSpec = SPEC) -> None:
    pre = Preprocessor(spec, roi_frames=roi_frames)
    for i, (pixels, want_roi) in enumerate(zip(frames, reference_rois(frames, roi_frames))):
        x, roi = pre(pixels)
        assert roi == want_roi, f"frame {i}"
        assert x is not None and x.dtype == np.float32 and x.shape == (1, 3, *spec.input_size)
        assert np.array_equal(x, reference_input(pixels, roi, spec)), f"frame {i}"


# -- the normalisation lookup ---------------------------------------------------------------------------------
def test_normalise_gray_matches_numpy_indexing_on_every_grey_level():
    lut = spec_lut(SPEC)
    small = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = normalise_gray(small, lut)
    assert x.dtype == np.float32 and x.shape == (1, 3, 16, 16) and x.flags.c_contiguous and x.flags.writeable
    assert np.array_equal(x, lut[:, small][None])


def test_normalise_gray_on_views_other_tables_and_empty_images():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 257), dtype=np.uint8)
    view = big[3:229:1, 5:250:2]  # a strided view, not contiguous
    lut = spec_lut(SPEC)
    assert np.array_equal(normalise_gray(view, lut), lut[:, view][None])
    lut64 = normalisation_lut((0.5,), (0.25,)).astype(np.float64)  # one channel, float64
    got = normalise_gray(view, lut64)
    assert got.dtype == np.float64 and np.array_equal(got, lut64[:, view][None])
    ints = np.arange(256 * 3, dtype=np.int64).reshape(3, 256)  # a table cv2.LUT is not asked to take
    assert np.array_equal(normalise_gray(view, ints), ints[:, view][None])
    empty = np.zeros((0, 4), np.uint8)
    assert normalise_gray(empty, lut).shape == (1, 3, 0, 4)
    with pytest.raises(ValueError):
        normalise_gray(view.astype(np.float32), lut)


def test_each_input_is_a_new_array():
    pre = Preprocessor(SPEC, roi=(0, 0, 64, 48))
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a, _ = pre(frame)
    b, _ = pre(frame)
    assert a is not None and b is not None and not np.shares_memory(a, b) and np.array_equal(a, b)


# -- the ROI window ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("moving", [True, False])
def test_half_size_window_finds_the_same_cells_and_roi(moving):
    frames = screen_clip(moving=moving)
    height, width = frames[0].shape[:2]
    for k in range(1, len(frames) + 1):
        halves = [half_gray(roi_mod._gray(f)) for f in frames[:k]]
        assert np.array_equal(roi_mod._active_cells(halves, width, height), old_active_cells(frames[:k]))
        assert detect_roi_halves(halves, width, height) == detect_roi(frames[:k])


def test_preprocessor_equals_the_plain_chain_on_synthetic_screens():
    check_stream(screen_clip(n=12))  # odd width and height, coloured UI
    check_stream(screen_clip(n=5, moving=False), roi_frames=3)


def test_grey_and_one_channel_frames():
    rgb = screen_clip(n=10)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    check_stream(grey)
    check_stream([g[:, :, None] for g in grey])
    a, b = Preprocessor(SPEC), Preprocessor(SPEC)  # grey frames and their RGB give the same inputs and ROIs
    for f, g in zip(rgb, grey):
        xa, ra = a(f)
        xb, rb = b(g)
        assert ra == rb and xa is not None and xb is not None and np.array_equal(xa, xb)


def test_a_size_change_starts_the_window_again():
    small, big = screen_clip(n=9), screen_clip(n=9, size=(400, 300))
    pre = Preprocessor(SPEC, roi_frames=4)
    for frames in (small, big, small):
        for i, (pixels, want) in enumerate(zip(frames, reference_rois(frames, 4))):
            x, roi = pre(pixels)
            assert roi == want and x is not None and np.array_equal(x, reference_input(pixels, roi, SPEC)), i


def test_a_fixed_roi_or_hint_skips_the_window():
    frames = screen_clip(n=4)
    for pre in (Preprocessor(SPEC, roi=(10, 20, 200, 150)), Preprocessor(SPEC, roi_hint=(10, 20, 200, 150))):
        for f in frames:
            x, roi = pre(f)
            assert roi == (10, 20, 200, 150) and x is not None and np.array_equal(x, reference_input(f, roi, SPEC))
    no_model = Preprocessor(None, roi_frames=3)
    assert [no_model(f) for f in frames] == [(None, r) for r in reference_rois(frames, 3)]


# -- real frames --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", ["sweep.mp4", "busi_demo.mp4"])  # a screen with coloured UI; a grey-only clip
def test_preprocessor_equals_the_plain_chain_on_sample_clips(clip):
    path = SAMPLES / clip
    if not path.exists():
        pytest.skip(f"{path} not available")
    check_stream(read_frames(path, 14))
