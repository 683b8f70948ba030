"""A probe-like clip made from still images: each still is shown for a few seconds while the view pans and zooms
slowly over it, with fresh speckle on every frame, as a hand-held probe resting on a lesion would show it.

For demo samples made from real images (``assets/sample_videos/busi_demo.mp4``, from BUSI's leak-free *test*
split, which no bundled model was trained on): the pixels are the stills', so what the model sees is real anatomy;
the motion and the speckle are this module's, and the clip's notes say it was made from still images.
Numpy/OpenCV only, like the rest of the simulator; deterministic for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from .errors import PhantomError

__all__ = ["StillsPan"]


class StillsPan:
    """Frames of a clip over ``stills`` (greyscale uint8 images), ``dwell_s`` seconds each at ``fps``.

    Each frame is ``size`` (width, height) RGB: black, with the current still letterboxed in the middle (a
    scanner-like screen whose image the ROI step finds). Over a still's dwell the view zooms from 1 to
    ``1 + zoom`` and pans by up to ``pan`` of the image size along a slow ellipse; ``speckle`` is the standard
    deviation of the multiplicative speckle (Gaussian, blurred to a grain of ~2 px) drawn fresh for every frame.
    The first and last ``fade_s`` of each still fade from and to black.
    """

    def __init__(self, stills: Sequence[np.ndarray], *, dwell_s: float = 4.0, fps: float = 30.0,
                 size: tuple[int, int] = (640, 480), zoom: float = 0.12, pan: float = 0.04, speckle: float = 0.08,
                 fade_s: float = 0.3, seed: int = 0):
        if not stills:
            raise PhantomError("no still images given")
        if not (dwell_s > 0 and math.isfinite(dwell_s)) or not (fps > 0 and math.isfinite(fps)):
            raise PhantomError(f"dwell and fps must be positive, got {dwell_s} s and {fps} fps")
        if size[0] < 64 or size[1] < 64:
            raise PhantomError(f"frame size must be at least 64x64, got {size[0]}x{size[1]}")
        self.stills = [self._grey(s) for s in stills]
        self.fps, self.size, self.seed = float(fps), (int(size[0]), int(size[1])), int(seed)
        self.per_still = max(1, round(dwell_s * fps))
        self.zoom, self.pan, self.speckle = float(zoom), float(pan), float(speckle)
        self.fade = max(0, round(fade_s * fps))

    @staticmethod
    def _grey(img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise PhantomError(f"a still must be a uint8 image, got {img.dtype} of shape {img.shape}")
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)

    @property
    def frame_count(self) -> int:
        return self.per_still * len(self.stills)

    def still_of(self, index: int) -> int:
        """Which still frame ``index`` shows."""
        return min(index // self.per_still, len(self.stills) - 1)

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as an H×W×3 uint8 RGB screen."""
        k, j = self.still_of(index), index % self.per_still
        t = j / max(1, self.per_still - 1)
        view = self._view(self.stills[k], t)
        view = self._speckled(view, index)
        gain = min(1.0, (j + 1) / (self.fade + 1), (self.per_still - j) / (self.fade + 1)) if self.fade else 1.0
        w, h = self.size
        out = np.zeros((h, w, 3), np.uint8)
        vh, vw = view.shape
        y, x = (h - vh) // 2, (w - vw) // 2
        out[y:y + vh, x:x + vw] = (view.astype(np.float32) * gain).astype(np.uint8)[:, :, None]
        return out

    def frames(self) -> Iterator[np.ndarray]:
        for i in range(self.frame_count):
            yield self.render(i)

    def _view(self, still: np.ndarray, t: float) -> np.ndarray:
        """The still seen at time ``t`` in [0, 1] of its dwell: zoomed, panned, fitted into 90 % of the frame."""
        sh, sw = still.shape
        w, h = self.size
        fit = min(0.9 * w / sw, 0.9 * h / sh)
        z = 1.0 + self.zoom * 0.5 * (1 - math.cos(math.pi * t))       # eases in and out
        ang = 2 * math.pi * t
        dx, dy = self.pan * sw * math.sin(ang), 0.5 * self.pan * sh * (1 - math.cos(ang))
        out_w, out_h = round(sw * fit), round(sh * fit)
        s = fit * z
        # output pixel (u, v) samples the still at ((u - out_w/2) / s + sw/2 + dx, (v - out_h/2) / s + sh/2 + dy)
        m = np.array([[s, 0.0, out_w / 2 - s * (sw / 2 + dx)], [0.0, s, out_h / 2 - s * (sh / 2 + dy)]])
        return cv2.warpAffine(still, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def _speckled(self, view: np.ndarray, index: int) -> np.ndarray:
        if self.speckle <= 0:
            return view
        rng = np.random.default_rng([self.seed, index])
        noise = np.asarray(cv2.GaussianBlur(rng.standard_normal(view.shape).astype(np.float32), (0, 0), 1.0),
                           np.float32)
        noise *= self.speckle / max(float(noise.std()), 1e-6)
        return np.clip(view.astype(np.float32) * (1.0 + noise), 0, 255).astype(np.uint8)
