"""Is there an ultrasound image at all? A check that needs no model.

Before asking whether a frame is *like the training data* (the model's out-of-domain score), ask whether it is an
image: a capture card without signal gives black or uniform frames, a scanner in freeze mode or a stalled stream
repeats one frame, and a probe held in the air shows only dark noise below a few reverberation lines. In each case
any prediction would be about nothing. ``InputHealth`` looks at the model's own input tensor (the ROI, grey,
resized; every 4th pixel of it each way, a few hundredths of a millisecond a frame) and says whether the frame
shows an image.

Rules (grey levels 0..255 of the model input):

* blank: the 99th percentile is below ``dark_level`` (nearly black everywhere);
* uniform: the standard deviation is below ``flat_std`` (one grey, e.g. a blue/grey "no signal" screen);
* frozen: the frame is identical to the previous one for ``frozen_frames`` frames in a row (1 s at 30 Hz);
* probe in the air: below the top ``air_top`` of the image, fewer than ``air_bright_frac`` of the pixels are
  brighter than ``air_level`` (tissue gives echoes all the way down; air gives none past the reverberations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HealthRules:
    dark_level: float = 12.0
    flat_std: float = 2.0
    frozen_frames: int = 30
    air_top: float = 0.25
    air_level: float = 40.0
    air_bright_frac: float = 0.01


class InputHealth:
    """``__call__(x, mean, std) -> reason or None``: why the frame shows no image ("blank", "uniform", "frozen",
    "air"), or None when it shows one. ``x`` is the model input [1, 3, H, W] normalised with ``mean``/``std``
    (channel 0 is used). Keeps the previous frame for the frozen rule: ``reset()`` at a discontinuity."""

    def __init__(self, rules: HealthRules | None = None) -> None:
        self.rules = rules or HealthRules()
        self._prev: np.ndarray | None = None
        self._same = 0

    def reset(self) -> None:
        self._prev = None
        self._same = 0

    def __call__(self, x: np.ndarray, mean: float, std: float) -> str | None:
        r = self.rules
        plane = np.asarray(x)[0, 0]
        step = max(1, min(plane.shape) // 56)  # every 4th pixel of a 224×224 input: the same statistics, 16× cheaper
        grey = (plane[::step, ::step] * np.float32(std) + np.float32(mean)) * np.float32(255.0)
        if self._prev is not None and self._prev.shape == grey.shape and np.array_equal(self._prev, grey):
            self._same += 1
        else:
            self._same = 0
        self._prev = grey
        if float((grey >= r.dark_level).mean()) < 0.01:  # the 99th percentile is below dark_level
            return "blank"
        if float(grey.std()) < r.flat_std:
            return "uniform"
        if self._same >= r.frozen_frames:
            return "frozen"
        deep = grey[int(grey.shape[0] * r.air_top):]
        if deep.size and float((deep > r.air_level).mean()) < r.air_bright_frac:
            return "air"
        return None


__all__ = ["HealthRules", "InputHealth"]
