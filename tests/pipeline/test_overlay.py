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


def test_the_burned_in_score_shows_its_threshold_and_a_switched_off_gate():
    """At c28fbd5 recordings showed "ood score 113.95" with no threshold, "fps 0.0" on the first frame, and nothing
    about a gate switched off with --no-gate."""
    import numpy as np

    from sonolens.pipeline.messages import Result, Timings
    from sonolens.pipeline.overlay import OverlayStyle, _info_block
    from sonolens.pipeline.run_cli import _live_fps

    t = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                t_delivered_ns=0)
    r = Result(index=0, frame=np.zeros((8, 8, 3), np.uint8), roi=(0, 0, 8, 8), timings=t, class_names=("a", "b"),
               probs=np.array([0.3, 0.7], np.float32), ood_score=113.95)

    def texts(style: OverlayStyle) -> str:
        return " | ".join(row[1] for row in _info_block(r, style, {"fps": "-"}, 1.0).rows)

    assert "ood score 113.95 / 39.71" in texts(OverlayStyle(ood_threshold=39.71))
    assert "(gate off)" in texts(OverlayStyle(ood_threshold=39.71, gate_off=True))
    assert "fps -" in texts(OverlayStyle())

    class Tele:
        def __init__(self, fps):
            self.fps = fps

        def live_fps(self):
            return self.fps

    class Pipe:
        def __init__(self, fps):
            self.telemetry = Tele(fps)

    assert _live_fps(Pipe(0.0)) == "-" and _live_fps(Pipe(29.96)) == "30.0"


def test_a_frozen_still_says_frozen_frame_and_why():
    """At c28fbd5 a clearly visible still read "No image (frozen)"."""
    import numpy as np

    from sonolens.pipeline.messages import Result, Timings, state_text
    from sonolens.pipeline.overlay import OverlayStyle, _prediction_block

    assert state_text("no_image", "frozen")[0] == "Frozen frame" and "1 s" in state_text("no_image", "frozen")[1]
    assert state_text("no_image", "air") == ("No image", "(probe in the air)")
    assert state_text("out_of_domain", None)[0].startswith("Outside the model's training domain")
    t = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                t_delivered_ns=0)
    r = Result(index=0, frame=np.zeros((8, 8, 3), np.uint8), roi=(0, 0, 8, 8), timings=t, class_names=("a", "b"),
               probs=np.array([0.3, 0.7], np.float32), state="no_image", no_image="frozen")
    rows = [row[1] for row in _prediction_block(r, OverlayStyle(), 1.0).rows]
    assert rows[0] == "Frozen frame" and "No image" not in rows
