"""``app.recording``: R records an MP4 of the overlay as one more pipeline sink; S saves a snapshot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import H, W, opts, wait_frames  # noqa: E402

from sonolens.app.selfcheck import qimage_to_array  # noqa: E402
from sonolens.app.widgets import class_color  # noqa: E402
from sonolens.pipeline.messages import Result, Timings  # noqa: E402
from sonolens.pipeline.overlay import OverlayStyle, class_rgb, draw_overlay  # noqa: E402
from sonolens.pipeline.stamp import band_height  # noqa: E402

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


# -- what a recording holds (#14) -----------------------------------------------------------------------------------
def test_a_selfcheck_recording_has_the_sources_size_and_no_stamp_band(qtbot, make_window, clip, tmp_path):
    import av

    from sonolens.pipeline.record import record_scale

    win = make_window(opts(clip, loop=True, selfcheck=True, record_dir=str(tmp_path)))
    wait_frames(qtbot, win, 2)
    assert win.playback.current.result.frame.shape[:2] == (H + band_height(W), W)  # the pipeline's frames: padded
    win.recording.toggle()
    rec = win.recording.recorder
    qtbot.waitUntil(lambda: rec.frames_written >= 3, timeout=5000)
    win.recording.toggle()
    assert rec not in win.playback.pipe.worker.sinks and not any(
        getattr(s, "sink", None) is rec for s in win.playback.pipe.worker.sinks)  # detached, wrapped or not
    qtbot.waitUntil(lambda: not rec._thread.is_alive(), timeout=5000)
    with av.open(str(rec.path)) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    k = int(record_scale(W, H))  # a source this small is recorded at a whole multiple, for legible text
    assert k > 1 and sizes == {(W * k, H * k)}  # the source's aspect, no stamp band


def _scanner_screen(w=960, h=720, roi=(240, 90, 560, 540), texts=()):
    """A scanner's screen: black, its own text around the ultrasound image (the ROI, speckle)."""
    frame = np.zeros((h, w, 3), np.uint8)
    x, y, rw, rh = roi
    frame[y : y + rh, x : x + rw] = np.random.default_rng(0).integers(40, 200, (rh, rw, 3), dtype=np.uint8)
    for text, org in texts:
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (220, 220, 220), 2)
    return frame


def _result(frame, roi, probs=(0.1, 0.2, 0.7), **kw):
    t = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                t_delivered_ns=0)
    p = np.array(probs, np.float32)
    return Result(index=0, frame=frame, roi=roi, timings=t, class_names=("normal", "benign", "malignant"), probs=p,
                  raw_probs=p, cam=np.ones((7, 7), np.float32), cam_class=int(np.argmax(p)), **kw)


SCANNER_LAYOUTS = [
    ((240, 90, 560, 540), [("Depth 4.0 cm", (20, 40)), ("Gain 50", (20, 70)), ("MI 0.9", (20, 100)),
                           ("TIS 0.3", (20, 130)), ("L12-5 MSK", (820, 40)), ("12:03:44", (840, 700))]),
    ((20, 140, 600, 560), [("MI 1.1  TIS 0.4", (20, 40)), ("Depth 6 cm", (20, 80)), ("Gain 62", (640, 300)),
                           ("FR 31 Hz", (640, 340)), ("C5-1", (860, 700))]),
]


@pytest.mark.parametrize("roi,texts", SCANNER_LAYOUTS, ids=["image-centre", "image-left"])
@pytest.mark.parametrize("state", ["ok", "out_of_domain"])
def test_burned_in_overlay_leaves_the_scanner_text_and_the_image_alone(roi, texts, state):
    frame = _scanner_screen(roi=roi, texts=texts)
    style = OverlayStyle(heatmap=False, warning="THE MODEL IS UNTRAINED")
    r = _result(frame, roi, state=state, ood_score=0.3)
    out = draw_overlay(r, style, {"fps": 29.9})
    assert out.shape == frame.shape  # the source's size
    changed = (out != frame).any(axis=2)
    scanner_text = cv2.dilate((frame.max(axis=2) > 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    x, y, w, h = roi
    scanner_text[y - 2 : y + h + 2, x - 2 : x + w + 2] = False  # the image, and the ROI outline at its edge
    assert not (changed & scanner_text).any()  # nothing drawn over the scanner's own text
    assert not changed[y + 1 : y + h - 1, x + 1 : x + w - 1].any()  # nor over the image (heat map off)
    assert changed.sum() > 2000  # and the overlay is there: bars or state text, HUD, warning, notice
    assert np.array_equal(draw_overlay(r, style, {"fps": 29.9}), out)  # the same place the next frame


def _scaled_beside_a_panel(out: np.ndarray, shown: np.ndarray) -> int | None:
    """The panel's width when ``out`` is ``shown`` scaled down (INTER_AREA) at the left with a panel on the right,
    untouched by any text; None when it is not."""
    h, w = shown.shape[:2]
    for pw in range(1, int(0.3 * w) + 2):
        iw = w - pw
        ih = int(round(h * iw / w))
        y0 = (h - ih) // 2
        if np.array_equal(out[y0 : y0 + ih, :iw], cv2.resize(shown, (iw, ih), interpolation=cv2.INTER_AREA)):
            return pw
    return None


@pytest.mark.parametrize("roi,texts", [
    ((0, 0, 192, 144), []),  # the image fills the frame: no margin at all
    ((60, 30, 520, 440), [("Depth 4 cm", (4, 20)), ("MI 0.9", (4, 470)), ("Gain 50", (586, 240))]),  # narrow ones
], ids=["no-margin", "narrow-margins"])
def test_when_no_margin_fits_the_image_is_scaled_down_beside_a_panel(roi, texts):
    w, h = (192, 144) if roi[2] == 192 else (640, 480)
    frame = _scanner_screen(w, h, roi, texts)
    out = draw_overlay(_result(frame, roi), OverlayStyle(heatmap=False, show_roi=False))
    assert out.shape == frame.shape  # the source's size
    pw = _scaled_beside_a_panel(out, frame)
    assert pw is not None  # the whole picture, scaled, with nothing drawn over it
    panel = out[:, w - pw :]
    assert (panel != 16).any(axis=2).sum() > 200  # the text is in the panel


def test_recording_and_viewer_bars_use_the_same_class_colours(qtbot):
    from sonolens.app.widgets import ProbBars

    names, probs = ("normal", "benign", "malignant"), (0.3, 0.25, 0.45)
    expected = [class_rgb(n, i, dim=i != 2) for i, n in enumerate(names)]  # malignant is the top class
    assert len(set(expected)) == 3
    # the recording: the colour of each bar's filled part
    roi = (240, 90, 560, 540)
    out = draw_overlay(_result(_scanner_screen(roi=roi), roi, probs), OverlayStyle(heatmap=False))
    colours = {tuple(int(v) for v in px) for px in out.reshape(-1, 3)}
    assert all(c in colours for c in expected)
    assert (255, 80, 80) not in colours and (120, 160, 255) not in colours  # the old fixed red / blue
    # the viewer: the same colours in its bars
    bars = ProbBars()
    qtbot.addWidget(bars)
    bars.resize(260, bars.height())
    bars.set_values(names, np.array(probs, np.float32), 2)
    img = qimage_to_array(bars.grab().toImage())[:, :, [2, 1, 0]]
    for i, rgb in enumerate(expected):
        y = 54 + i * bars.ROW_H + 18 + 4  # the middle of row i's bar (widgets.ProbBars.paintEvent)
        assert tuple(int(v) for v in img[y, 10]) == rgb, (names[i], img[y, 10], rgb)
        assert class_color(names[i], i, dim=i != 2).getRgb()[:3] == rgb
