"""The latency self-check in the window (``app.selfcheck``): the stamp the capture thread wrote is read back from
the window's own pixels. The stamp itself is tested in ``test_stamp_codec.py``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import GATED, GatedSource, H, W, opts, release_on_stop, wait_frames  # noqa: E402

from sonolens.pipeline.stamp import band_height  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def test_selfcheck_reads_each_frames_capture_time_from_the_window(qtbot, make_window, clip):
    win = make_window(opts(clip, selfcheck=True))
    reads = []
    read = win.selfcheck.read

    def recording_read(df):
        got = read(df)
        if got is not None:
            reads.append((df.result.timings.t_captured_ns, *got))
        return got

    win.selfcheck.read = recording_read
    wait_frames(qtbot, win, 10)
    qtbot.waitUntil(lambda: len(win.stats.stages.get("capture_to_pixels", [])) >= 5, timeout=5000)
    assert win.selfcheck.method in ("screen", "widget")
    # the pixels on screen carry exactly the capture time of the frame they belong to (µs resolution)
    assert len(reads) >= 5 and all(t_stamp == t_cap // 1000 * 1000 for t_cap, t_stamp, _ in reads)
    df = win.playback.current
    assert df.result.frame.shape[0] == H + band_height(W)  # padded frame, ROI above the band
    assert df.result.roi[1] + df.result.roi[3] <= H
    # every counted sample also went to the pipeline's telemetry (its histogram is exact to 0.5 %)
    c2p = win.stats.stages["capture_to_pixels"]
    got = win.playback.pipe.telemetry.summary()["latency_ms"]["capture_to_pixels"]
    assert got["max"] == pytest.approx(max(c2p), rel=0.005) and got["mean"] == pytest.approx(np.mean(c2p), rel=0.005)


def test_a_frame_shown_by_step_is_read_but_not_a_latency_sample(qtbot, make_window, gated):
    src = gated(GatedSource())
    win = make_window(opts(GATED, selfcheck=True))
    release_on_stop(win, src)
    stats = win.stats
    src.release()
    qtbot.waitUntil(lambda: stats.selfcheck_ok + stats.selfcheck_failed == 1, timeout=5000)
    counted = len(stats.stages.get("capture_to_pixels", []))
    assert counted == stats.selfcheck_ok  # playing: every frame read back is a sample
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Space)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_Right)
    src.release()  # this frame waited for the user's step, not for the pipeline
    qtbot.waitUntil(lambda: stats.selfcheck_ok + stats.selfcheck_failed == 2, timeout=5000)
    assert win.playback.current_index == 1
    assert len(stats.stages.get("capture_to_pixels", [])) == counted
