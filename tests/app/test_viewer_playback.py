"""``app.playback`` in the window: frames in, pause/step, a blocked worker, the end of a source, opening sources.

Pause/step and drops use ``GatedSource``/``GatedEngine`` (frames and answers released by the test), so every
assertion is an exact count, not a guess about what a sleep let through.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from fakes import FakeEngine  # noqa: E402
from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtWidgets import QMessageBox  # noqa: E402
from viewer_harness import GATED, GatedEngine, GatedSource, H, W, make_result, opts, release_on_stop, wait_frames  # noqa: E402

from sonolens.pipeline.postprocess import softmax  # noqa: E402
from sonolens.pipeline.preprocess import Preprocessor  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def _expected_probs(result, engine) -> np.ndarray:
    x, _ = Preprocessor(engine.meta, roi=result.roi)(result.frame)
    logits, _ = engine.run(x)
    return softmax(logits)


def _show_one(qtbot, win, src, index: int) -> None:
    """Release one frame and wait until it is on screen (painted)."""
    n = win.stats.frames_displayed
    src.release()
    qtbot.waitUntil(lambda: win.stats.frames_displayed == n + 1, timeout=5000)
    assert win.playback.current_index == index


def test_window_paints_frames_and_shows_the_results_probabilities(qtbot, make_window, clip):
    win = make_window(opts(clip))
    wait_frames(qtbot, win, 8)
    shown = win.playback.current.result
    # what the bars show is the model's answer for *that* frame, recomputed independently
    np.testing.assert_allclose(win.ui.bars.probs, _expected_probs(shown, FakeEngine()), rtol=1e-5, atol=1e-6)
    name = shown.class_names[int(np.argmax(win.ui.bars.probs))]
    assert win.ui.bars.top_text.startswith(name)
    assert win.ui.view.chip[0].startswith(name)
    assert win.stats.display_fps > 0
    win.presenter.refresh_hud()
    assert "fps" in win.ui.hud.text() and "inference" in win.ui.hud.text()


def test_pause_holds_frames_in_flight_and_step_shows_exactly_the_next(qtbot, make_window, gated):
    src = gated(GatedSource())
    win = make_window(opts(GATED))
    release_on_stop(win, src)
    pb = win.playback
    for i in range(3):
        _show_one(qtbot, win, src, i)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Space)
    assert pb.paused and pb.pipe.capture.paused and "PAUSED" in win.ui.view.state_text
    # a frame that was already past capture when pause was pressed is held, not shown
    in_flight = make_result(1000, np.zeros((H, W, 3), np.uint8))
    pb.bridge(in_flight)
    pb.on_frame_ready(pb.bridge)
    assert len(pb.held) == 1 and pb.current_index == 2 and win.stats.frames_displayed == 3
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Right)  # step: the held frame first
    assert pb.current_index == 1000 and not pb.held and pb.step_credit == 0
    qtbot.waitUntil(lambda: win.stats.frames_displayed == 4, timeout=5000)
    src.release()  # frame 3 is read and waits in the paused capture thread
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Right)  # nothing held: capture lets exactly one frame through
    assert pb.step_credit == 1
    qtbot.waitUntil(lambda: win.stats.frames_displayed == 5, timeout=5000)
    assert pb.current_index == 3 and pb.step_credit == 0
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Period)  # "." steps too; the frame arrives after the key
    src.release()
    qtbot.waitUntil(lambda: win.stats.frames_displayed == 6, timeout=5000)
    assert pb.current_index == 4 and pb.step_credit == 0 and pb.paused
    # resume: frames held meanwhile are discarded and counted; the next captured frame is shown
    src.release()  # frame 5 waits in the paused capture thread
    pb.bridge(make_result(2000, np.zeros((H, W, 3), np.uint8)))
    pb.on_frame_ready(pb.bridge)
    skipped = pb.frames_skipped
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Space)
    assert not pb.paused and not pb.held and pb.frames_skipped == skipped + 1
    qtbot.waitUntil(lambda: win.stats.frames_displayed == 7, timeout=5000)
    assert pb.current_index == 5



def test_blocked_worker_drops_in_the_queue_and_the_window_stays_responsive(qtbot, make_window, gated):
    src = gated(GatedSource())
    engine = GatedEngine()
    win = make_window(opts(GATED), engine=engine)
    release_on_stop(win, src, engine)
    pipe = win.playback.pipe
    src.release()
    qtbot.waitUntil(lambda: engine.entered == 1, timeout=5000)  # frame 0 is in the model, which does not answer
    src.release(4)  # frames 1..4: the "latest" queue keeps one, so 1, 2 and 3 are dropped
    qtbot.waitUntil(lambda: pipe.queue.dropped == 3, timeout=5000)  # frame 4 evicted 3; no frame 5 is released
    assert list(pipe.queue.dropped_indices) == [1, 2, 3] and len(pipe.queue) == 1
    qtbot.keyClick(win.ui.view, Qt.Key.Key_H)  # handled at once, although inference has not answered
    assert not win.settings.heatmap
    win.presenter.refresh_hud()
    assert "dropped 3 (queue)" in win.ui.hud.text()
    engine.go.set()
    qtbot.waitUntil(lambda: win.playback.current_index == 4, timeout=5000)  # then the newest frame, not a backlog
    assert engine.calls == 2


def test_end_of_stream_keeps_the_last_frame(qtbot, make_window, clip):
    win = make_window(opts(clip, automation=False, realtime=False))  # max rate, blocking queue: no drops
    pb = win.playback
    qtbot.waitUntil(lambda: pb.is_ended, timeout=10000)
    assert pb.pipe.capture.frames_in == 45 and pb.frames_dropped_queue == 0
    assert pb.current_index == 44 and "end of stream" in win.ui.view.state_text
    assert pb.pipe.worker.finished.is_set()  # nothing more can arrive: the last frame stays
    qtbot.keyClick(win.ui.view, Qt.Key.Key_H)  # and the window still answers
    assert not win.settings.heatmap
    assert win.exit_codes == []  # interactive: the end of the source does not close the window


def test_speed_and_loop_keys_drive_the_capture_thread(qtbot, make_window, clip):
    win = make_window(opts(clip, loop=True))
    wait_frames(qtbot, win, 1)
    capture = win.playback.pipe.capture
    qtbot.keyClick(win.ui.view, Qt.Key.Key_BracketRight)
    assert capture.speed == 1.5 and win.opts.speed == 1.5 and "speed ×1.5" in win.ui.status_label.text()
    for _ in range(3):
        qtbot.keyClick(win.ui.view, Qt.Key.Key_BracketLeft)
    assert capture.speed == 0.5 and win.opts.speed == 0.5
    qtbot.keyClick(win.ui.view, Qt.Key.Key_L)
    assert not capture.loop and not win.opts.loop and not win.ui.act_loop.isChecked()
    qtbot.keyClick(win.ui.view, Qt.Key.Key_L)
    assert capture.loop and win.ui.act_loop.isChecked()


def test_loop_on_after_the_end_starts_again(qtbot, make_window, clip):
    win = make_window(opts(clip, automation=False, realtime=False))
    qtbot.waitUntil(lambda: win.playback.is_ended, timeout=10000)
    gen = win.playback.generation
    qtbot.keyClick(win.ui.view, Qt.Key.Key_L)
    assert win.playback.generation == gen + 1 and not win.playback.is_ended  # a new pipeline on the same file
    qtbot.waitUntil(lambda: win.playback.current is not None and win.playback.current.generation == gen + 1,
                    timeout=5000)


def test_open_file_and_camera_dialogs(qtbot, make_window, monkeypatch, clip):
    from PyQt6.QtWidgets import QFileDialog, QInputDialog

    errors, asked = [], []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda parent, title, text, *a: errors.append(text)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(clip), "")))
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: asked.append(a) or (63, True)))
    win = make_window(opts(clip, automation=False), start=False)
    win.start()
    qtbot.keyClick(win.ui.view, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert win.playback.generation == 2 and win.playback.source_spec == str(clip)
    wait_frames(qtbot, win, 2)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert asked and len(errors) == 1 and "63" in errors[0]  # no camera 63 here: a dialog, no crash
    assert win.isVisible() and win.playback.source_spec == str(clip)  # what was playing goes on
    assert win.playback.bridge.generation == 2
    n = win.stats.frames_displayed
    wait_frames(qtbot, win, n + 2)


def test_missing_source_shows_an_error_dialog(qtbot, make_window, monkeypatch, tmp_path):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda parent, title, text, *a: shown.append(text)))
    win = make_window(opts(tmp_path / "nope.mp4", automation=False), start=False)
    assert win.start() is False
    assert len(shown) == 1 and "no such file" in shown[0]
    assert win.playback.pipe is None and win.isVisible() and "nope.mp4" in win.ui.view.placeholder
    assert win.exit_codes == []  # interactive: the window stays open for Ctrl+O


def test_a_held_folder_waits_for_the_reader_and_right_advances_it(qtbot, make_window, tmp_path):
    """``view FOLDER --hold`` (first-hour issue, item 6): each image stays until Right (or .) advances it; the
    displayed frame names its file; the last image also waits, then the slideshow ends."""
    import cv2

    folder = tmp_path / "cases"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("c1.png", "c2.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (H, W), dtype=np.uint8))
    win = make_window(opts(folder, slideshow_hold=True))
    wait_frames(qtbot, win, 1)
    pb = win.playback
    assert pb.pipe.info.live and win.stats.frames_displayed == 1
    qtbot.wait(300)  # a slideshow at its default 1 image/s would not move in 0.3 s either; held, it never does
    assert win.stats.frames_displayed == 1 and pb.current_file == "c1.png"
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Right)
    wait_frames(qtbot, win, 2)
    assert pb.current_file == "c2.png" and not pb.paused and not pb.is_ended
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Period)
    qtbot.waitUntil(lambda: pb.is_ended, timeout=8000)
    assert win.stats.frames_displayed == 2
