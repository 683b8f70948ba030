"""Image → model input: ROI crop → grayscale → resize (``cv2.INTER_AREA``) → normalise with the spec's mean/std.

This module is the *one* implementation of that chain. The runtime (``Preprocessor``), evaluation
(``training.evaluate``), training's validation pass (``training.inputs``: ``runtime_resized`` calls ``resize_gray``
once, ``validation_input`` applies the same ``normalisation_lut`` on the device), INT8 calibration
(``models.quantize``) and ``training.cam_compare`` all call it, so a model is scored on exactly the tensors it will
see live.

Ultrasound is grayscale; models are trained on grayscale replicated to three channels, so the same happens here.
Normalisation is a per-channel lookup table on the uint8 grey values (256 entries), which is exact and cheaper
than float arithmetic over the image: ``lut[c, v] = (v/255 - mean[c]) / std[c]`` in float32, looked up with
``cv2.LUT`` one channel at a time (the same values as numpy's ``lut[:, small]``, ~8x faster at 224×224). The ROI
is found automatically over the first ``roi_frames`` frames (see ``roi.py``) unless given; until then a provisional
ROI from the frames seen so far is used. While it is being found, each frame is turned grey once, whole: the
detector keeps its half-size copy, and the model's crop is cut from it (grey of a crop = crop of the grey).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from .errors import ConfigError
from .modelfile import ModelSpec
from .roi import Roi, clamp_roi, detect_roi_halves, half_gray

log = logging.getLogger(__name__)


def normalisation_lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """[3, 256] float32 table: ``lut[c, v] = (v/255 - mean[c]) / std[c]`` (float32 arithmetic throughout)."""
    v = np.arange(256, dtype=np.float32) / np.float32(255.0)
    return np.stack([(v - np.float32(m)) / np.float32(s) for m, s in zip(mean, std)]).astype(np.float32)


@lru_cache(maxsize=32)
def _cached_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    lut = normalisation_lut(mean, std)
    lut.setflags(write=False)  # shared between callers
    return lut


def spec_lut(spec: ModelSpec) -> np.ndarray:
    """The (cached, read-only) ``normalisation_lut`` of ``spec``'s mean/std."""
    return _cached_lut(tuple(spec.mean), tuple(spec.std))


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` from ``[H, W]``, ``[H, W, 1]`` or RGB ``[H, W, 3]`` (OpenCV's BT.601 weights)."""
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def crop(pixels: np.ndarray, roi: Roi | None) -> np.ndarray:
    """The ``roi = (x, y, w, h)`` part of ``pixels`` (a view); ``None``: the whole image."""
    if roi is None:
        return pixels
    x, y, w, h = roi
    return pixels[y : y + h, x : x + w]


def resize_gray(gray: np.ndarray, input_size: Sequence[int]) -> np.ndarray:
    """uint8 ``[H0, W0]`` → uint8 ``[H, W]`` with ``cv2.INTER_AREA``; ``input_size = (H, W)``."""
    h, w = int(input_size[0]), int(input_size[1])
    return cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)


def normalise_gray(small: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` (already at input size) → float32 ``[1, 3, H, W]`` through ``lut`` ([3, 256]): a new array
    holding ``lut[:, small][None]`` (of ``lut``'s dtype), filled one channel at a time by ``cv2.LUT``."""
    if small.dtype != np.uint8 or small.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 grayscale image, got {small.dtype} {small.shape}")
    if small.size == 0 or lut.ndim != 2 or lut.shape[1] != 256 or lut.dtype not in (np.float32, np.float64):
        return lut[:, small][None]  # nothing to look up, or a table cv2.LUT does not take: numpy's indexing
    out = np.empty((1, lut.shape[0], *small.shape), lut.dtype)
    for c in range(lut.shape[0]):
        plane = out[0, c]
        got = cv2.LUT(small, np.ascontiguousarray(lut[c]), dst=plane)
        if got is not plane:  # OpenCV did not write into ``plane`` (it always does for these types): copy it in
            plane[...] = got
    return out


def preprocess_gray(gray: np.ndarray, input_size: Sequence[int], lut: np.ndarray) -> np.ndarray:
    """uint8 grayscale crop ``[H0, W0]`` → float32 ``[1, 3, H, W]``: ``resize_gray`` then ``normalise_gray``."""
    return normalise_gray(resize_gray(gray, input_size), lut)


def preprocess_image(pixels: np.ndarray, spec: ModelSpec, roi: Roi | None = None,
                     lut: np.ndarray | None = None) -> np.ndarray:
    """A frame or image file's pixels → the model input, float32 ``[1, 3, H, W]`` with ``(H, W) = spec.input_size``.

    ``pixels``: uint8 ``[H0, W0]`` grey or ``[H0, W0, 3]`` RGB; ``roi``: ``(x, y, w, h)`` crop (``None``: whole
    image), expected inside the image (``roi.clamp_roi``); ``lut``: ``spec_lut(spec)`` unless given.
    """
    return preprocess_gray(to_gray(crop(pixels, roi)), spec.input_size, spec_lut(spec) if lut is None else lut)


def checked_roi(roi: Roi, width: int, height: int, what: str) -> Roi:
    """``roi`` clamped to a ``width``×``height`` frame; ``ConfigError`` when none of it is inside, a one-line
    warning when it had to be clamped."""
    x, y, w, h = roi
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ConfigError(f"{what} {x},{y},{w},{h} lies outside the {width}x{height} frame")
    clamped = clamp_roi(roi, width, height)
    if tuple(clamped) != tuple(roi):
        log.warning("%s %d,%d,%d,%d does not fit the %dx%d frame: using %d,%d,%d,%d", what, x, y, w, h, width,
                    height, *clamped)
    return clamped


class Preprocessor:
    """The runtime's per-frame preprocessing: ROI tracking plus ``preprocess_image``.

    ``meta``: the engine's spec (``None``: no model, only the ROI is tracked); ``roi``: a fixed ROI, otherwise it
    is detected over the first ``roi_frames`` frames.
    """

    def __init__(self, meta: ModelSpec | None, roi: Roi | None = None, roi_frames: int = 8, *,
                 roi_hint: Roi | None = None) -> None:
        self.meta = meta
        self.fixed_roi = roi
        self.roi_hint = roi_hint  # the source's own statement of its image region (DICOM ultrasound regions)
        self.roi_frames = max(1, roi_frames)
        self._halves: list[np.ndarray] = []  # ``roi.half_gray`` of the frames seen while detecting
        self._size: tuple[int, int] | None = None
        self.roi: Roi | None = None
        self.roi_final = False
        self.lut = spec_lut(meta) if meta else None

    def update_roi(self, pixels: np.ndarray) -> Roi:
        """Return the ROI for this frame, refining the automatic one over the first frames.

        Priority: the user's ROI (``--roi``), then the source's hint, then detection over the first ``roi_frames``
        frames. When the frame size changes mid-stream, the ROI is found again at the new size. A user ROI that
        lies outside the frame is a ``ConfigError``; one that has to be clamped is a one-line warning.
        """
        return self._track(pixels)[0]

    def _track(self, pixels: np.ndarray) -> tuple[Roi, np.ndarray | None]:
        """``update_roi``, and the frame's grey ``[H, W]`` when the detector needed it (while the automatic ROI is
        being found; else None), so it is converted once for both the detector and the model."""
        h, w = pixels.shape[:2]
        if self._size != (w, h):
            if self._size is not None:
                log.warning("the source changed size from %dx%d to %dx%d: finding the image region again",
                            *self._size, w, h)
            self._size = (w, h)
            self._halves.clear()
            self.roi, self.roi_final = None, False
            if self.fixed_roi is not None:
                self.roi, self.roi_final = checked_roi(self.fixed_roi, w, h, "--roi"), True
            elif self.roi_hint is not None:
                self.roi, self.roi_final = checked_roi(self.roi_hint, w, h, "the source's image region"), True
        gray = None
        if not self.roi_final:
            gray = to_gray(pixels)
            self._halves.append(half_gray(gray))  # the detector's view of the frame; the frame itself is not kept
            if len(self._halves) == 1 or len(self._halves) >= self.roi_frames:
                self.roi = detect_roi_halves(self._halves, w, h)
            if len(self._halves) >= self.roi_frames:
                self.roi_final = True
                self._halves.clear()
        assert self.roi is not None
        return self.roi, gray

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray | None, Roi]:
        """``pixels`` uint8 ``[H, W, 3]`` (or grey) → (float32 ``[1, 3, H, W]`` or ``None`` without a model, ROI)."""
        roi, gray = self._track(pixels)
        if self.meta is None:
            return None, roi
        assert self.lut is not None  # set with meta
        if gray is not None:  # the same values as preprocess_image: the grey of a crop is the crop of the grey
            return preprocess_gray(crop(gray, roi), self.meta.input_size, self.lut), roi
        return preprocess_image(pixels, self.meta, roi, self.lut), roi
