"""The window's layout and overlay controls: every shortcut exists, the heat-map keys do what they say, and the
pixels inside the ROI are the source's own when the heat map is off."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtGui import QKeySequence  # noqa: E402
from viewer_harness import H, W, grab_view, opts, wait_frames  # noqa: E402

from sonolens.app.options import StudyOptions  # noqa: E402
from sonolens.pipeline.overlay import COLORMAPS  # noqa: E402

KEYS = {"Ctrl+O", "Ctrl+Shift+O", "Ctrl+K", "S", "R", "Ctrl+Q", "Space", "Right", ".", "L", "[", "]", "H", "C",
        "M", "F11", "F1", "?"}

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def _window_shortcuts(win) -> set[str]:
    return {s.toString(QKeySequence.SequenceFormat.PortableText) for a in win.actions() for s in a.shortcuts()}


def test_every_shortcut_is_a_window_action(qtbot, make_window, clip, tmp_path):
    win = make_window(opts(clip), start=False)
    assert _window_shortcuts(win) == KEYS  # window actions: they work in full screen, without the menu bar
    study = make_window(opts(clip, study=StudyOptions("p", "ai", str(tmp_path / "s.jsonl"))), start=False)
    assert _window_shortcuts(study) == KEYS | {str(k) for k in range(1, 10)} | {"F"}


def test_overlay_keys_and_controls_stay_in_step(qtbot, make_window, clip):
    win = make_window(opts(clip, loop=True))
    wait_frames(qtbot, win, 2)
    ui, pipe = win.ui, win.playback.pipe
    assert win.settings.heatmap and ui.heatmap_box.isChecked() and ui.act_heatmap.isChecked()
    qtbot.keyClick(ui.view, Qt.Key.Key_H)
    assert not win.settings.heatmap and not ui.heatmap_box.isChecked() and not ui.act_heatmap.isChecked()
    ui.heatmap_box.setChecked(True)
    assert win.settings.heatmap and ui.act_heatmap.isChecked()
    names = list(COLORMAPS)
    cmap = win.settings.colormap
    qtbot.keyClick(ui.view, Qt.Key.Key_M)
    assert win.settings.colormap == names[(names.index(cmap) + 1) % len(names)]
    assert ui.cmap_combo.currentText() == win.settings.colormap
    assert pipe.worker.cam_class is None  # top class of each frame
    qtbot.keyClick(ui.view, Qt.Key.Key_C)
    assert pipe.worker.cam_class == 0 and ui.cam_combo.currentText() == "normal"
    qtbot.keyClick(ui.view, Qt.Key.Key_C)
    assert pipe.worker.cam_class == 1
    for _ in range(2):
        qtbot.keyClick(ui.view, Qt.Key.Key_C)
    assert pipe.worker.cam_class is None  # around again to "top class"
    ui.opacity.setValue(70)
    assert win.settings.alpha == pytest.approx(0.7) and ui.opacity_label.text() == "70%"
    qtbot.keyClick(ui.view, Qt.Key.Key_F1)
    assert ui.help_box.isVisible() and "Ctrl+K" in ui.help_box.text()
    ui.help_box.close()


def test_style_change_while_paused_rerenders_the_frame_on_screen(qtbot, make_window, clip):
    win = make_window(opts(clip, loop=True))
    wait_frames(qtbot, win, 2)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Space)
    before = win.playback.current
    assert before.heatmap
    qtbot.keyClick(win.ui.view, Qt.Key.Key_H)
    after = win.playback.current
    assert after.result is before.result and not after.heatmap  # same frame, rendered again without the map
    assert win.ui.view.frame is after


def test_heatmap_off_shows_raw_pixels_in_roi(qtbot, make_window, clip):
    win = make_window(opts(clip, loop=True, heatmap=False))
    view = win.ui.view
    view.setFixedSize(W, H + view.STRIP_H)  # area == frame size: the frame is shown 1:1
    pb = win.playback
    qtbot.waitUntil(lambda: pb.current is not None and pb.current.area == (W, H), timeout=8000)
    wait_frames(qtbot, win, win.stats.frames_displayed + 2)
    df = pb.current
    img = grab_view(win)
    x, y, w, h = view.image_rect(df)
    assert (w, h) == (W, H)
    rx, ry, rw, rh = df.result.roi
    painted = img[y + ry : y + ry + rh, x + rx : x + rx + rw]
    raw = df.result.frame[ry : ry + rh, rx : rx + rw]
    assert np.array_equal(painted[2:-2, 2:-2], raw[2:-2, 2:-2])  # inside the ROI outline: the source's pixels
    # heat map on: the same place is now coloured
    win.overlay.set_heatmap(True)
    qtbot.waitUntil(lambda: pb.current.heatmap and pb.current.area == (W, H), timeout=8000)
    wait_frames(qtbot, win, win.stats.frames_displayed + 1)
    df = pb.current
    img = grab_view(win)
    painted = img[y + ry : y + ry + rh, x + rx : x + rx + rw].astype(int)
    raw = df.result.frame[ry : ry + rh, rx : rx + rw].astype(int)
    assert df.heatmap and np.abs(painted - raw).mean() > 5
