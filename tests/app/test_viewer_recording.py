"""``app.recording``: R records an MP4 of the overlay as one more pipeline sink; S saves a snapshot."""

from __future__ import annotations

import cv2
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import opts, wait_frames  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def test_record_toggle_adds_and_removes_a_sink_and_writes_mp4(qtbot, make_window, clip, tmp_path):
    import av

    win = make_window(opts(clip, loop=True, record_dir=str(tmp_path)))
    wait_frames(qtbot, win, 2)
    pipe = win.playback.pipe
    qtbot.keyClick(win.ui.view, Qt.Key.Key_R)
    rec = win.recording.recorder
    assert rec is not None and rec in pipe.worker.sinks and win.ui.act_record.isChecked()
    assert "REC" in win.ui.view.state_text and rec.path.name in win.ui.status_label.text()
    qtbot.keyClick(win.ui.view, Qt.Key.Key_H)
    assert rec.style.heatmap is False  # the recording follows the overlay style
    qtbot.waitUntil(lambda: rec.frames_written >= 5, timeout=5000)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_R)
    assert win.recording.recorder is None and rec not in pipe.worker.sinks and not win.ui.act_record.isChecked()
    assert "REC" not in win.ui.view.state_text
    qtbot.waitUntil(lambda: not rec._thread.is_alive(), timeout=5000)
    with av.open(str(rec.path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == rec.frames_written


def test_opening_another_source_stops_the_recording(qtbot, make_window, clip, tmp_path):
    win = make_window(opts(clip, loop=True, record_dir=str(tmp_path)))
    wait_frames(qtbot, win, 1)
    old = win.playback.pipe
    win.recording.toggle()
    rec = win.recording.recorder
    assert rec in old.worker.sinks
    assert win.playback.open_source(str(clip))
    assert win.recording.recorder is None and rec not in old.worker.sinks
    assert rec not in win.playback.pipe.worker.sinks and not win.ui.act_record.isChecked()


def test_snapshot_key_saves_the_window(qtbot, make_window, clip, tmp_path):
    win = make_window(opts(clip, loop=True, snapshot_dir=str(tmp_path)))
    wait_frames(qtbot, win, 2)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_S)
    snaps = list(tmp_path.glob("sonolens_*.png"))
    assert len(snaps) == 1
    saved = cv2.imread(str(snaps[0]))
    assert saved.shape[:2] == (win.centralWidget().height(), win.centralWidget().width())
