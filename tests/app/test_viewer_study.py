"""Study mode in the window (``app.study_mode``): calls, flags, freeze, what is shown and what is logged, and a
log that survives a killed viewer. The log format itself is tested in ``test_study.py``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import NEUTRAL_CWD, H, W, grab_view, opts, subprocess_env, wait_frames  # noqa: E402

from sonolens.app.options import StudyOptions  # noqa: E402
from sonolens.study.log import read_log  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def test_study_ai_log_complete_after_normal_exit(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "s.jsonl"
    win = make_window(opts(clip, loop=True, study=StudyOptions("p1", "ai", str(log))))
    wait_frames(qtbot, win, 4)
    view = win.ui.view
    qtbot.keyClick(view, Qt.Key.Key_2)
    qtbot.keyClick(view, Qt.Key.Key_F)
    qtbot.keyClick(view, Qt.Key.Key_Space)
    assert "FROZEN" in view.state_text
    qtbot.keyClick(view, Qt.Key.Key_3)
    qtbot.keyClick(view, Qt.Key.Key_Space)
    qtbot.keyClick(view, Qt.Key.Key_4)  # only three classes: no fourth call key
    wait_frames(qtbot, win, win.stats.frames_displayed + 2)
    win.presenter.refresh_hud()
    assert "participant <b>p1</b>" in win.ui.study_label.text() and "2=benign" in win.ui.study_label.text()
    win.finish(0)
    recs = read_log(log)
    assert recs.complete and not recs.torn_last_line
    h = recs.header
    assert (h["participant"], h["condition"], h["source"]) == ("p1", "ai", str(clip))
    assert h["model"]["classes"] == ["normal", "benign", "malignant"] and h["sonolens_version"]
    assert len(recs.frames) == win.stats.frames_displayed
    assert all(f["shown"] and len(f["probs"]) == 3 and f["capture_to_result_ms"] > 0 for f in recs.frames)
    kinds = [e["kind"] for e in recs.events]
    assert kinds == ["call", "flag", "freeze", "call", "unfreeze"]
    calls = [e for e in recs.events if e["kind"] == "call"]
    assert [c["label"] for c in calls] == ["benign", "malignant"]
    shown_idx = {f["index"] for f in recs.frames}
    assert all(c["frame_index"] in shown_idx and c["model_top"] is not None for c in calls)


def test_study_blinded_hides_predictions_but_logs_them(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "b.jsonl"
    win = make_window(opts(clip, loop=True, study=StudyOptions("p2", "blinded", str(log))))
    view = win.ui.view
    view.setFixedSize(W, H + view.STRIP_H)
    pb = win.playback
    qtbot.waitUntil(lambda: pb.current is not None and pb.current.area == (W, H), timeout=8000)
    df = pb.current
    img = grab_view(win)
    x, y, w, h = view.image_rect(df)
    assert np.array_equal(img[y : y + h, x : x + w], df.result.frame)  # no heat map, no ROI box: raw frame
    bars = win.ui.bars
    assert bars.hidden_text and bars.probs.size == 0 and bars.top_text == ""
    assert view.chip[0] == "blinded" and not win.ui.heatmap_box.isEnabled()
    qtbot.keyClick(view, Qt.Key.Key_H)
    assert not win.settings.heatmap  # cannot be switched on
    qtbot.keyClick(view, Qt.Key.Key_1)
    win.finish(0)
    recs = read_log(log)
    assert recs.frames and all(not f["shown"] and len(f["probs"]) == 3 for f in recs.frames)
    assert recs.events[0]["kind"] == "call" and recs.events[0]["model_top"] is not None


def test_study_off_runs_no_model(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "o.jsonl"
    win = make_window(opts(clip, model=None, study=StudyOptions("p3", "off", str(log))))
    wait_frames(qtbot, win, 3)
    pb = win.playback
    assert win.engine is None and pb.pipe.engine is None and pb.pipe.cfg.model is None
    assert pb.current.result.probs.size == 0 and win.ui.bars.probs.size == 0
    assert win.ui.view.chip[0] == "no model"
    win.finish(0)
    recs = read_log(log)
    assert recs.header["model"] is None
    assert recs.frames and all(f["probs"] is None and not f["shown"] for f in recs.frames)


def test_study_logs_the_other_controllers_events(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "e.jsonl"
    win = make_window(opts(clip, loop=True, snapshot_dir=str(tmp_path), record_dir=str(tmp_path),
                           study=StudyOptions("p5", "ai", str(log))))
    wait_frames(qtbot, win, 2)
    view = win.ui.view
    for key in (Qt.Key.Key_S, Qt.Key.Key_R, Qt.Key.Key_R, Qt.Key.Key_Space, Qt.Key.Key_Right):
        qtbot.keyClick(view, key)
    assert win.playback.open_source(str(clip))
    win.finish(0)
    kinds = [e["kind"] for e in read_log(log).events]
    assert kinds == ["snapshot", "record_start", "record_stop", "freeze", "step", "source_opened"]


def test_study_log_readable_after_kill(clip, tmp_path):
    log = tmp_path / "k.jsonl"
    cmd = [sys.executable, "-m", "sonolens", "view", str(clip), "--loop", "--study", "--participant", "p4",
           "--condition", "off", "--log", str(log), "--exit-after-seconds", "60"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), cwd=NEUTRAL_CWD, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for 15 frames on disk (a wait for an event, with a deadline)
            if log.exists() and log.read_bytes().count(b'"type":"frame"') >= 15:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    recs = read_log(log)
    assert not recs.complete and recs.header["participant"] == "p4"
    assert len(recs.frames) >= 15 and recs.bad_lines == 0
    idx = [f["index"] for f in recs.frames]
    assert idx == sorted(idx)
