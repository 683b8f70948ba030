"""The drawn heat map is the map the pytorch-grad-cam parity test checks (``pipeline.cam.heatmap``)."""

from __future__ import annotations

import cv2
import numpy as np

from sonolens.pipeline.cam import cam_for_display, heatmap
from sonolens.pipeline.overlay import blend_heatmap


def _raw_cam() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.maximum(rng.normal(size=(7, 7)).astype(np.float32), 0)


def test_blend_uses_the_parity_checked_heatmap_at_roi_size():
    cam = _raw_cam()
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    roi = (30, 10, 97, 83)
    out = blend_heatmap(frame, cam, roi, alpha=0.5, colormap="jet")
    x, y, w, h = roi
    heat = heatmap(cam, (h, w))
    colour = cv2.cvtColor(cv2.applyColorMap((np.clip(heat * 255.0, 0, 255)).astype(np.uint8), cv2.COLORMAP_JET),
                          cv2.COLOR_BGR2RGB)
    expect = cv2.addWeighted(colour, 0.5, frame[y:y + h, x:x + w], 0.5, 0.0)
    assert np.array_equal(out[y:y + h, x:x + w], expect)
    # outside the ROI the frame is untouched, and the input frame is not modified
    assert np.array_equal(out[:y], frame[:y]) and np.array_equal(out[:, :x], frame[:, :x])


def test_heatmap_is_normalise_resize_normalise():
    cam = _raw_cam()
    m = heatmap(cam, (50, 70))
    assert m.shape == (50, 70) and m.dtype == np.float32
    assert m.min() == 0.0 and abs(float(m.max()) - 1.0) < 1e-6
    # cam_for_display (what the parity test calls) is heatmap of one class
    assert np.array_equal(cam_for_display(np.stack([cam * 0, cam]), 1, (50, 70)), m)
    # the old single normalisation before resizing differs from it (the viewer drew that map before)
    single = cv2.resize(cam / cam.max(), (70, 50), interpolation=cv2.INTER_LINEAR)
    assert not np.allclose(single, m, atol=1e-3)
