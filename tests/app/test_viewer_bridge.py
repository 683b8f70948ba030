"""``app.bridge``: rendering on the worker side and the one-frame hand-over to the GUI (no window)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import make_result  # noqa: E402

from sonolens.app.bridge import FrameBridge, RenderSettings, fit_rect, render_rgb  # noqa: E402
from sonolens.pipeline.overlay import blend_heatmap  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def test_bridge_keeps_only_newest_frame_and_one_signal(qtbot):
    bridge = FrameBridge(RenderSettings(area=(128, 96)))
    signals = []
    bridge.frame_ready.connect(lambda: signals.append(1), Qt.ConnectionType.DirectConnection)
    for i in range(5):  # the GUI is "busy": nothing is taken
        bridge(make_result(i, np.zeros((48, 64, 3), np.uint8)))
    assert len(signals) == 1  # one signal until the GUI takes the frame: never a backlog of queued signals
    df = bridge.take()
    assert df.result.index == 4 and bridge.skipped == 4
    assert (df.image.width(), df.image.height()) == (128, 96)  # scaled on the worker side
    assert bridge.take() is None
    bridge(make_result(5, np.zeros((48, 64, 3), np.uint8)))
    assert len(signals) == 2 and bridge.take().result.index == 5 and bridge.skipped == 4
    bridge.enabled = False  # a replaced pipeline's bridge renders nothing more
    bridge(make_result(6, np.zeros((48, 64, 3), np.uint8)))
    assert len(signals) == 2 and bridge.take() is None


def test_render_rgb_blends_the_raw_cam_like_the_overlay():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    r = make_result(0, frame)  # cam: a raw [4, 4] map, as the worker delivers it
    st = RenderSettings(heatmap=True, alpha=0.5, colormap="jet", area=(0, 0))
    rgb, rect, blended = render_rgb(r, st)
    assert blended and rect == (0, 0, 64, 48)
    np.testing.assert_array_equal(rgb, blend_heatmap(frame, r.cam, r.roi, 0.5, "jet"))
    rgb, _, blended = render_rgb(r, RenderSettings(heatmap=True, show_predictions=False, area=(0, 0)))
    assert not blended and np.array_equal(rgb, frame)  # blinded: never blended


def test_warm_up_renders_without_delivering(qtbot):
    bridge = FrameBridge(RenderSettings(area=(320, 240)))
    signals = []
    bridge.frame_ready.connect(lambda: signals.append(1), Qt.ConnectionType.DirectConnection)
    bridge.warm_up(192, 144)
    assert signals == [] and bridge.take() is None and bridge.skipped == 0


def test_fit_rect_keeps_aspect():
    assert fit_rect(640, 480, 800, 800) == (0, 100, 800, 600)
    assert fit_rect(100, 50, 100, 50) == (0, 0, 100, 50)
