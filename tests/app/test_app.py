"""The PyQt6 viewer (offscreen, pytest-qt) and the self-check stamp.

Most window tests use ``tests/fakes.FakeEngine`` (known answer, no torch) on a short clip written with PyAV here;
the automation test runs the real command with a randomly initialised exported student.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtWidgets import QMessageBox  # noqa: E402

from fakes import FakeEngine, ScriptedSource  # noqa: E402
from sonolens.app.bridge import FrameBridge, RenderSettings, fit_rect  # noqa: E402
from sonolens.app.selfcheck import qimage_to_array  # noqa: E402
from sonolens.app.study import read_log  # noqa: E402
from sonolens.app.window import StudyOptions, ViewerOptions, ViewerWindow  # noqa: E402
from sonolens.pipeline.messages import Result, Timings  # noqa: E402
from sonolens.pipeline.preprocess import Preprocessor  # noqa: E402
from sonolens.pipeline.stamp import (ImageAreaPreprocessor, StampingSource, StampLayout, band_height,  # noqa: E402
                                     decode_stamp, encode_stamp)
from sonolens.pipeline.videoio import VideoWriter  # noqa: E402
from sonolens.pipeline.worker import softmax  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
W, H = 192, 144


def _frames(n: int, w: int = W, h: int = H, seed: int = 0):
    """Speckle-like noise with a dark disc moving across: every frame differs, the ROI detector has texture."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w), dtype=np.uint8), (3, 3), 0)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        g = np.roll(base, i * 2, axis=1).astype(np.int16)
        cx = 30 + (i * 3) % (w - 60)
        g[(xx - cx) ** 2 + (yy - h // 2) ** 2 < 18 ** 2] //= 4
        yield np.repeat(np.clip(g, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with VideoWriter(out, 30.0, crf=18) as vw:
        for f in _frames(45):
            vw.write(f)
    return out


def _opts(source, **kw) -> ViewerOptions:
    kw.setdefault("model", "fake")
    kw.setdefault("automation", True)  # no modal dialogs in tests
    return ViewerOptions(source=str(source), **kw)


@pytest.fixture
def make_window(qtbot):
    windows = []

    def make(opts: ViewerOptions, engine=None, size=(900, 600), start=True) -> ViewerWindow:
        win = ViewerWindow(opts, engine=engine if engine is not None else FakeEngine())
        win.exit_codes = []
        win.exit_hook = win.exit_codes.append  # don't leave pytest-qt's event loop
        qtbot.addWidget(win)
        win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()  # shortcuts are window shortcuts: they need the active window
        qtbot.waitUntil(win.isActiveWindow, timeout=2000)
        if start:
            assert win.start() or not start
        windows.append(win)
        return win

    yield make
    for win in windows:
        if not win._finishing:
            win.finish(0)


def _grab_view(win) -> np.ndarray:
    return qimage_to_array(win.view.grab().toImage())[:, :, [2, 1, 0]]  # BGRX -> RGB


def _wait_frames(qtbot, win, n, timeout=8000):
    qtbot.waitUntil(lambda: win.stats.frames_displayed >= n, timeout=timeout)


# ===================================================================================================== stamp
@pytest.mark.parametrize("w,h", [(640, 480), (192, 144), (1280, 720)])
def test_stamp_roundtrip_and_after_resize(w, h):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    t = time.perf_counter_ns()
    out, layout = encode_stamp(img, t)
    assert out.shape == (h + layout.band_height, w, 3)
    assert np.array_equal(out[:h], img)  # the image itself is untouched: the stamp is in an added band
    assert abs(decode_stamp(out, layout) - t) < 1000  # µs resolution
    for scale in (0.5, 0.77, 1.6):
        for interp in (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC):
            small = cv2.resize(out, (round(out.shape[1] * scale), round(out.shape[0] * scale)), interpolation=interp)
            assert abs(decode_stamp(small, layout) - t) < 1000, (scale, interp)


def test_stamp_rejects_garbage_and_reads_from_a_sub_rectangle():
    img = np.zeros((144, 192, 3), np.uint8)
    t = time.perf_counter_ns()
    out, layout = encode_stamp(img, t)
    assert decode_stamp(np.zeros_like(out), layout) is None  # sync cells missing
    flipped = out.copy()
    x, y, cw, ch = layout.cell_rects()[10]
    flipped[y : y + ch, x : x + cw] = 255 - flipped[y : y + ch, x : x + cw]  # one data bit flipped: CRC fails
    assert decode_stamp(flipped, layout) is None
    # the frame drawn at (37, 20) scaled 1.5x inside a bigger screen, and only the band grabbed back
    big = cv2.resize(out, (288, round(out.shape[0] * 1.5)), interpolation=cv2.INTER_LINEAR)
    screen = np.full((400, 400, 3), 30, np.uint8)
    screen[20 : 20 + big.shape[0], 37 : 37 + 288] = big
    band_top = 20 + int(144 * 1.5)
    grab = screen[band_top:]
    got = decode_stamp(grab, layout, (37, 20 - band_top, 288, big.shape[0]))
    assert abs(got - t) < 1000


def test_stamping_source_pads_stamps_at_release_and_paces():
    src = StampingSource(ScriptedSource(n=6, fps=50.0, size=(192, 144)), pace=True)
    info = src.open()
    assert info.live  # it paces itself, so the capture thread must not pace again
    t_prev = None
    gaps = []
    for raw in src.frames():
        t_now = time.perf_counter_ns()
        layout = StampLayout.for_width(192, 144)
        assert raw.pixels.shape == (144 + band_height(192), 192, 3)
        stamped = decode_stamp(raw.pixels, layout)
        assert 0 <= (t_now - stamped) < 20e6  # written just before release, not when decoded ahead
        if t_prev is not None:
            gaps.append(stamped - t_prev)
        t_prev = stamped
    assert np.median(gaps) > 10e6  # paced at ~20 ms, not as fast as possible
    src.close()


def test_too_narrow_frames_pass_through_unstamped():
    src = StampingSource(ScriptedSource(n=2, size=(64, 48)), pace=False)
    src.open()
    frames = [raw.pixels for raw in src.frames()]
    assert all(f.shape == (48, 64, 3) for f in frames) and band_height(64) == 0 and src.stamped == 0


def test_image_area_preprocessor_excludes_band():
    meta = FakeEngine().meta
    pre = ImageAreaPreprocessor(Preprocessor(meta, roi_frames=1))
    frame, layout = encode_stamp(next(_frames(1)), time.perf_counter_ns())
    x, roi = pre(frame)
    assert roi[1] + roi[3] <= H  # the ROI stays inside the original image
    assert x.shape == (1, 3, 32, 32)


# ===================================================================================================== bridge
def _result(i: int, frame=None) -> Result:
    frame = frame if frame is not None else np.zeros((48, 64, 3), np.uint8)
    t = Timings(1, 2, 3, 4, 5, 6, i / 30)
    return Result(i, frame, np.array([0.2, 0.8], np.float32), np.array([0.2, 0.8], np.float32), ("a", "b"),
                  np.ones((4, 4), np.float32), 1, (0, 0, 64, 48), t)


def test_bridge_keeps_only_newest_frame_and_one_signal(qtbot):
    bridge = FrameBridge(RenderSettings(area=(128, 96)))
    signals = []
    bridge.frame_ready.connect(lambda: signals.append(1), Qt.ConnectionType.QueuedConnection)
    for i in range(5):  # the GUI is "busy": nothing is taken
        bridge(_result(i))
    qtbot.wait(50)
    assert len(signals) == 1  # never a backlog of queued signals
    df = bridge.take()
    assert df.result.index == 4 and bridge.skipped == 4
    assert (df.image.width(), df.image.height()) == (128, 96)  # scaled on the worker side
    assert bridge.take() is None


def test_fit_rect_keeps_aspect():
    assert fit_rect(640, 480, 800, 800) == (0, 100, 800, 600)
    assert fit_rect(100, 50, 100, 50) == (0, 0, 100, 50)


# ===================================================================================================== window
def _expected_probs(result, engine) -> np.ndarray:
    pre = Preprocessor(engine.meta, roi=result.roi)
    x, _ = pre(result.frame)
    logits, _ = engine.run(x)
    return softmax(logits)


def test_window_paints_frames_and_shows_the_results_probabilities(qtbot, make_window, clip):
    engine = FakeEngine()
    win = make_window(_opts(clip), engine=engine)
    _wait_frames(qtbot, win, 8)
    shown = win.current.result
    # what the bars show is the model's answer for *that* frame, recomputed independently
    np.testing.assert_allclose(win.bars.probs, _expected_probs(shown, FakeEngine()), rtol=1e-5, atol=1e-6)
    name = shown.class_names[int(np.argmax(win.bars.probs))]
    assert win.bars.top_text.startswith(name)
    assert win.view.chip[0].startswith(name)
    assert win.stats.display_fps > 0
    win.refresh_hud()
    assert "fps" in win.hud.text() and "inference" in win.hud.text()


def test_heatmap_off_shows_raw_pixels_in_roi(qtbot, make_window, clip):
    win = make_window(_opts(clip, loop=True, heatmap=False))
    win.view.setFixedSize(W, H + win.view.STRIP_H)  # area == frame size: the frame is shown 1:1
    qtbot.waitUntil(lambda: win.current is not None and win.current.area == (W, H), timeout=8000)
    _wait_frames(qtbot, win, win.stats.frames_displayed + 2)
    df = win.current
    img = _grab_view(win)
    x, y, w, h = win.view.image_rect(df)
    assert (w, h) == (W, H)
    rx, ry, rw, rh = df.result.roi
    painted = img[y + ry : y + ry + rh, x + rx : x + rx + rw]
    raw = df.result.frame[ry : ry + rh, rx : rx + rw]
    assert np.array_equal(painted[2:-2, 2:-2], raw[2:-2, 2:-2])  # inside the ROI outline: the source's pixels
    # heat map on: the same place is now coloured
    win.set_heatmap(True)
    n = win.stats.frames_displayed
    _wait_frames(qtbot, win, n + 2)
    df = win.current
    img = _grab_view(win)
    painted = img[y + ry : y + ry + rh, x + rx : x + rx + rw].astype(int)
    raw = df.result.frame[ry : ry + rh, rx : rx + rw].astype(int)
    assert df.heatmap and np.abs(painted - raw).mean() > 5


def test_pause_freezes_and_step_shows_exactly_one(qtbot, make_window, clip):
    win = make_window(_opts(clip, loop=True))
    _wait_frames(qtbot, win, 3)
    qtbot.keyClick(win.view, Qt.Key.Key_Space)
    assert win.paused
    qtbot.wait(300)  # frames already in flight are held, not shown
    n, idx = win.stats.frames_displayed, win.current.result.index
    qtbot.wait(400)
    assert win.stats.frames_displayed == n and win.current.result.index == idx
    qtbot.keyClick(win.view, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: win.stats.frames_displayed == n + 1, timeout=3000)
    qtbot.wait(300)
    assert win.stats.frames_displayed == n + 1 and win.current.result.index > idx
    qtbot.keyClick(win.view, Qt.Key.Key_Period)
    qtbot.waitUntil(lambda: win.stats.frames_displayed == n + 2, timeout=3000)
    qtbot.keyClick(win.view, Qt.Key.Key_Space)  # resume
    assert not win.paused
    _wait_frames(qtbot, win, n + 6)


def test_shortcuts_toggle_what_they_say(qtbot, make_window, clip, tmp_path):
    win = make_window(_opts(clip, loop=True, snapshot_dir=str(tmp_path)))
    _wait_frames(qtbot, win, 2)
    assert win.settings.heatmap
    qtbot.keyClick(win.view, Qt.Key.Key_H)
    assert not win.settings.heatmap and not win.heatmap_box.isChecked()
    cmap = win.settings.colormap
    qtbot.keyClick(win.view, Qt.Key.Key_M)
    assert win.settings.colormap != cmap and win.cmap_combo.currentText() == win.settings.colormap
    assert win.pipe.worker.cam_class is None
    qtbot.keyClick(win.view, Qt.Key.Key_C)
    assert win.pipe.worker.cam_class == 0
    qtbot.keyClick(win.view, Qt.Key.Key_C)
    assert win.pipe.worker.cam_class == 1
    loop = win.pipe.capture.loop
    qtbot.keyClick(win.view, Qt.Key.Key_L)
    assert win.pipe.capture.loop != loop
    qtbot.keyClick(win.view, Qt.Key.Key_BracketRight)
    assert win.pipe.capture.speed > 1.0
    qtbot.keyClick(win.view, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(win.view, Qt.Key.Key_BracketLeft)
    assert win.pipe.capture.speed < 1.0
    win.opacity.setValue(70)
    assert win.settings.alpha == pytest.approx(0.7)
    qtbot.keyClick(win.view, Qt.Key.Key_F1)
    assert win._help_box.isVisible() and "Ctrl+K" in win._help_box.text()
    win._help_box.close()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    qtbot.keyClick(win.view, Qt.Key.Key_S)
    snaps = list(tmp_path.glob("sonolens_*.png"))
    assert len(snaps) == 1
    saved = cv2.imread(str(snaps[0]))
    assert saved.shape[:2] == (win.centralWidget().height(), win.centralWidget().width())


def test_record_toggle_writes_mp4(qtbot, make_window, clip, tmp_path):
    import av

    win = make_window(_opts(clip, loop=True, record_dir=str(tmp_path)))
    _wait_frames(qtbot, win, 2)
    qtbot.keyClick(win.view, Qt.Key.Key_R)
    assert win.recorder is not None
    rec = win.recorder
    qtbot.waitUntil(lambda: rec.frames_written >= 5, timeout=5000)
    qtbot.keyClick(win.view, Qt.Key.Key_R)
    assert win.recorder is None
    qtbot.waitUntil(lambda: not rec._thread.is_alive(), timeout=5000)
    with av.open(str(rec.path)) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 5


def test_slow_inference_keeps_the_window_responsive(qtbot, make_window, clip):
    win = make_window(_opts(clip, loop=True), engine=FakeEngine(delay_s=0.12))
    _wait_frames(qtbot, win, 2)
    qtbot.keyClick(win.view, Qt.Key.Key_H)  # handled at once, although every inference takes 4 frame times
    assert not win.settings.heatmap
    qtbot.waitUntil(lambda: win.frames_dropped_queue >= 3, timeout=5000)  # the queue drops (and counts) frames
    win.refresh_hud()
    assert f"dropped {win.frames_dropped_queue} (queue)" in win.hud.text()


def test_open_file_and_camera_dialogs(qtbot, make_window, monkeypatch, clip):
    from PyQt6.QtWidgets import QFileDialog, QInputDialog

    errors, asked = [], []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda parent, title, text, *a: errors.append(text)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(clip), "")))
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: asked.append(a) or (63, True)))
    win = make_window(_opts(clip, automation=False), start=False)
    win.start()
    qtbot.keyClick(win.view, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert win.generation == 2 and win.source_spec == str(clip)
    _wait_frames(qtbot, win, 2)
    qtbot.keyClick(win.view, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert asked and len(errors) == 1 and "63" in errors[0]  # no camera 63 here: a dialog, no crash
    assert win.isVisible() and win.source_spec == str(clip)  # what was playing goes on
    n = win.stats.frames_displayed
    _wait_frames(qtbot, win, n + 2)


def test_end_of_stream_keeps_last_frame(qtbot, make_window, clip):
    win = make_window(_opts(clip, automation=False))
    qtbot.waitUntil(lambda: win.ended, timeout=10000)
    assert win.current is not None and "end of stream" in win.view.state_text
    last = win.current.result.index
    qtbot.wait(300)
    assert win.current.result.index == last  # the window stays on the last frame, responsive


def test_missing_source_shows_an_error_dialog(qtbot, make_window, monkeypatch, tmp_path):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda parent, title, text, *a: shown.append(text)))
    win = make_window(_opts(tmp_path / "nope.mp4", automation=False), start=False)
    assert win.start() is False
    assert len(shown) == 1 and "no such file" in shown[0]
    assert win.pipe is None and win.isVisible() and "nope.mp4" in win.view.placeholder
    assert win.exit_codes == []  # interactive: the window stays open for Ctrl+O


def test_selfcheck_measures_capture_to_pixels(qtbot, make_window, clip):
    win = make_window(_opts(clip, selfcheck=True))
    _wait_frames(qtbot, win, 10)
    qtbot.waitUntil(lambda: len(win.stats.stages.get("capture_to_pixels", [])) >= 5, timeout=5000)
    assert win.probe.method in ("screen", "widget")
    c2p = win.stats.stages["capture_to_pixels"]
    assert all(0 < v < 5000 for v in c2p)
    # the pixels arrive after the result does: the independent measurement is not below the internal one
    assert np.median(c2p) >= np.median(win.stats.stages["result_to_paint"])
    assert win.current.result.frame.shape[0] == H + band_height(W)  # padded frame, ROI above the band
    assert sum(win.current.result.roi[1::2]) <= H
    assert win.pipe.telemetry.summary()["latency_ms"]["capture_to_pixels"]["p50"] > 0


# ===================================================================================================== study
def test_study_ai_log_complete_after_normal_exit(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "s.jsonl"
    win = make_window(_opts(clip, loop=True, study=StudyOptions("p1", "ai", str(log))))
    _wait_frames(qtbot, win, 4)
    qtbot.keyClick(win.view, Qt.Key.Key_2)
    qtbot.keyClick(win.view, Qt.Key.Key_F)
    qtbot.keyClick(win.view, Qt.Key.Key_Space)
    qtbot.keyClick(win.view, Qt.Key.Key_3)
    qtbot.keyClick(win.view, Qt.Key.Key_Space)
    _wait_frames(qtbot, win, win.stats.frames_displayed + 2)
    win.finish(0)
    recs = read_log(log)
    assert recs.complete and not recs.torn_last_line
    h = recs.header
    assert (h["participant"], h["condition"], h["source"]) == ("p1", "ai", str(clip))
    assert h["model"]["classes"] == ["normal", "benign", "malignant"] and h["sonolens_version"]
    assert len(recs.frames) == win.stats.frames_displayed
    assert all(f["shown"] and len(f["probs"]) == 3 and f["capture_to_result_ms"] > 0 for f in recs.frames)
    kinds = [e["kind"] for e in recs.events]
    assert kinds[:5] == ["call", "flag", "freeze", "call", "unfreeze"]
    calls = [e for e in recs.events if e["kind"] == "call"]
    assert [c["label"] for c in calls] == ["benign", "malignant"]
    shown_idx = {f["index"] for f in recs.frames}
    assert all(c["frame_index"] in shown_idx and c["model_top"] is not None for c in calls)


def test_study_blinded_hides_predictions_but_logs_them(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "b.jsonl"
    win = make_window(_opts(clip, loop=True, study=StudyOptions("p2", "blinded", str(log))))
    win.view.setFixedSize(W, H + win.view.STRIP_H)
    qtbot.waitUntil(lambda: win.current is not None and win.current.area == (W, H), timeout=8000)
    df = win.current
    img = _grab_view(win)
    x, y, w, h = win.view.image_rect(df)
    assert np.array_equal(img[y : y + h, x : x + w], df.result.frame)  # no heat map, no ROI box: raw frame
    assert win.bars.hidden_text and win.bars.probs.size == 0 and win.bars.top_text == ""
    assert win.view.chip[0] == "blinded" and not win.heatmap_box.isEnabled()
    qtbot.keyClick(win.view, Qt.Key.Key_H)
    assert not win.settings.heatmap  # cannot be switched on
    qtbot.keyClick(win.view, Qt.Key.Key_1)
    win.finish(0)
    recs = read_log(log)
    assert recs.frames and all(not f["shown"] and len(f["probs"]) == 3 for f in recs.frames)
    assert recs.events[0]["kind"] == "call" and recs.events[0]["model_top"] is not None


def test_study_off_runs_no_model(qtbot, make_window, clip, tmp_path):
    log = tmp_path / "o.jsonl"
    win = make_window(_opts(clip, model=None, study=StudyOptions("p3", "off", str(log))))
    _wait_frames(qtbot, win, 3)
    assert win.engine is None and win.pipe.engine is None and win.pipe.cfg.model is None
    assert win.current.result.probs.size == 0 and win.bars.probs.size == 0
    win.finish(0)
    recs = read_log(log)
    assert recs.header["model"] is None
    assert recs.frames and all(f["probs"] is None and not f["shown"] for f in recs.frames)


def _env():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env["PYTHONPATH"] = str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_study_log_readable_after_kill(clip, tmp_path):
    log = tmp_path / "k.jsonl"
    cmd = [sys.executable, "-m", "sonolens", "view", str(clip), "--loop", "--study", "--participant", "p4",
           "--condition", "off", "--log", str(log), "--exit-after-seconds", "60"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log.exists() and log.read_bytes().count(b'"type":"frame"') >= 15:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    recs = read_log(log)
    assert not recs.complete and recs.header["participant"] == "p4"
    assert len(recs.frames) >= 15 and recs.bad_lines == 0
    idx = [f["index"] for f in recs.frames]
    assert idx == sorted(idx)


# ===================================================================================================== CLI
def test_cli_user_mistakes_are_one_line(tmp_path):
    from sonolens.cli import main

    def run(*args):
        return subprocess.run([sys.executable, "-m", "sonolens", "view", *args], env=_env(), capture_output=True,
                              text=True, timeout=60)

    r = run(str(tmp_path), "--study", "--participant", "x", "--condition", "ai", "--log",
            str(tmp_path / "no" / "l.jsonl"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--log" in r.stderr
    r = run(str(tmp_path / "missing.mp4"), "--model", str(tmp_path / "none.onnx"), "--exit-after-frames", "3")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("sonolens: error:")] == lines[-1:]
    assert "none.onnx" in lines[-1]
    assert main(["view", "--participant", "x"]) == 2  # --participant without --study


def test_automation_screenshot_and_report_with_real_model(clip, tmp_path, random_student):
    shot, rep = tmp_path / "shot.png", tmp_path / "rep.json"
    r = subprocess.run([sys.executable, "-m", "sonolens", "view", str(clip), "--model", str(random_student),
                        "--exit-after-frames", "20", "--screenshot", str(shot), "--report", str(rep),
                        "--size", "900x600"], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(rep.read_text())
    assert report["frames_displayed"] == 20
    assert report["display_fps"] > 0 and report["frames_dropped"] >= 0
    c2p = report["latency_ms"]["capture_to_pixels"]
    assert c2p["n"] > 0 and 0 < c2p["p50"] <= c2p["p95"] <= c2p["p99"]
    assert report["selfcheck"]["enabled"] and report["selfcheck"]["decoded"] >= 15
    pipe = report["pipeline"]
    assert pipe["frames_processed"] >= 20 and pipe["model"]["classes"] and "capture_to_pixels" in pipe["latency_ms"]
    img = cv2.imread(str(shot))
    assert img.shape[1] == report["window"]["width"] and img.shape[0] == report["window"]["height"]
    assert img.std() > 10  # a real picture, not a blank window
