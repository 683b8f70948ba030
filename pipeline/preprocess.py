"""Frame → model input: ROI crop → grayscale → resize → normalise with the model file's mean/std.

Ultrasound is grayscale; models are trained on grayscale replicated to three channels, so the same happens here.
Normalisation is a per-channel lookup table on the uint8 grey values (256 entries), which is exact and cheaper
than float arithmetic over the image. The ROI is found automatically over the first ``roi_frames`` frames (see
``roi.py``) unless given; until then a provisional ROI from the frames seen so far is used.
"""

from __future__ import annotations

import cv2
import numpy as np

from .modelfile import ModelSpec
from .roi import Roi, clamp_roi, detect_roi


def normalisation_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """[3, 256] float32 table: lut[c, v] = (v/255 - mean[c]) / std[c]."""
    v = np.arange(256, dtype=np.float32) / 255.0
    return np.stack([(v - m) / s for m, s in zip(mean, std)]).astype(np.float32)


def to_gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def preprocess_gray(gray: np.ndarray, input_size: tuple[int, int], lut: np.ndarray) -> np.ndarray:
    """uint8 grayscale crop → float32 [1, 3, H, W]. Training's eval transform does exactly this."""
    h, w = input_size
    small = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    return lut[:, small][None]


class Preprocessor:
    def __init__(self, meta: ModelSpec | None, roi: Roi | None = None, roi_frames: int = 8) -> None:
        self.meta = meta
        self.fixed_roi = roi
        self.roi_frames = max(1, roi_frames)
        self._seen: list[np.ndarray] = []
        self.roi: Roi | None = None
        self.roi_final = False
        self.lut = normalisation_lut(meta.mean, meta.std) if meta else None

    def update_roi(self, pixels: np.ndarray) -> Roi:
        """Return the ROI for this frame, refining the automatic one over the first frames."""
        h, w = pixels.shape[:2]
        if self.fixed_roi is not None:
            if self.roi is None:
                self.roi = clamp_roi(self.fixed_roi, w, h)
                self.roi_final = True
            return self.roi
        if not self.roi_final:
            if self.roi is not None and pixels.shape[:2] != self._seen[0].shape[:2]:
                self._seen.clear()  # the source changed size: start over
            self._seen.append(pixels)
            if len(self._seen) == 1 or len(self._seen) >= self.roi_frames:
                self.roi = detect_roi(self._seen)
            if len(self._seen) >= self.roi_frames:
                self.roi_final = True
                self._seen.clear()
        assert self.roi is not None
        return self.roi

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray | None, Roi]:
        roi = self.update_roi(pixels)
        if self.meta is None:
            return None, roi
        x, y, w, h = roi
        gray = to_gray(pixels[y : y + h, x : x + w])
        return preprocess_gray(gray, self.meta.input_size, self.lut), roi
