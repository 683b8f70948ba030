"""The streaming core with test doubles: queue policies, telemetry, ROI, capture/worker threads, shutdown."""

from __future__ import annotations

import csv
import threading
import time

import numpy as np
import pytest
from fakes import FakeEngine, ScriptedSource

from sonolens.pipeline.errors import ConfigError, SourceError
from sonolens.pipeline.frame_queue import FrameQueue
from sonolens.pipeline.messages import Frame
from sonolens.pipeline.roi import detect_roi, parse_roi
from sonolens.pipeline.stream import Pipeline, PipelineConfig, run_to_end
from sonolens.pipeline.telemetry import percentiles, rate


def _frame(i: int) -> Frame:
    return Frame(index=i, pixels=np.zeros((2, 2), np.uint8), pts_s=None, t_captured_ns=time.perf_counter_ns())


def test_latest_queue_drops_oldest_and_counts():
    dropped = []
    q = FrameQueue("latest", capacity=2, on_drop=lambda f: dropped.append(f.index))
    for i in range(5):
        assert q.put(_frame(i))
    assert q.dropped == 3 and dropped == [0, 1, 2] == q.dropped_indices
    assert [q.get(0).index, q.get(0).index] == [3, 4]
    assert q.get(timeout=0.01) is None


def test_block_queue_never_drops_and_waits_for_consumer():
    q = FrameQueue("block", capacity=1)
    got = []

    def consume():
        while (f := q.get(timeout=2)) is not None:
            got.append(f.index)
            time.sleep(0.002)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(30):
        assert q.put(_frame(i))
    q.close()
    t.join(5)
    assert got == list(range(30)) and q.dropped == 0 and q.max_depth == 1


def test_closed_queue_wakes_a_blocked_producer():
    q = FrameQueue("block", capacity=1)
    q.put(_frame(0))
    result = []
    t = threading.Thread(target=lambda: result.append(q.put(_frame(1))))
    t.start()
    time.sleep(0.05)
    q.close()
    t.join(2)
    assert not t.is_alive() and result == [False]


def test_bad_queue_policy_is_a_config_error():
    with pytest.raises(ConfigError):
        FrameQueue("fifo")


def test_percentiles_and_rate():
    s = percentiles(list(range(1, 101)))
    assert s["p50"] == pytest.approx(50.5) and s["max"] == 100 and s["p99"] == pytest.approx(99.01)
    assert rate([0, 10**9, 2 * 10**9]) == pytest.approx(1.0)
    assert rate([5]) == 0.0


def test_parse_roi():
    assert parse_roi("1, 2,30,40") == (1, 2, 30, 40)
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,10"):
        with pytest.raises(ConfigError):
            parse_roi(bad)


def _screen_capture(rng, t: int) -> np.ndarray:
    """A fake scanner screen: static UI text/boxes around a changing speckle image at x=200..520, y=100..420."""
    import cv2

    img = np.full((480, 640, 3), 20, np.uint8)
    cv2.putText(img, "DEPTH 4.0cm  GAIN 50  MI 0.8", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    cv2.rectangle(img, (560, 100), (620, 400), (200, 200, 200), 2)
    speckle = rng.rayleigh(40 + t, (320, 320)).clip(0, 255).astype(np.uint8)
    img[100:420, 200:520] = speckle[..., None]
    return img


def test_roi_detection_strips_static_ui():
    rng = np.random.default_rng(1)
    frames = [_screen_capture(rng, t) for t in range(8)]
    x, y, w, h = detect_roi(frames)
    assert abs(x - 200) <= 8 and abs(y - 100) <= 8 and abs(w - 320) <= 16 and abs(h - 320) <= 16


def test_roi_detection_on_featureless_frame_falls_back_to_full_frame():
    assert detect_roi([np.zeros((100, 200, 3), np.uint8)]) == (0, 0, 200, 100)


def _pipe(source, engine, **cfg) -> Pipeline:
    c = PipelineConfig(source="scripted", **cfg)
    return Pipeline(c, source, source.open(), engine, [])


def test_max_rate_block_processes_every_frame_with_ordered_timestamps(tmp_path):
    results = []
    src, eng = ScriptedSource(n=40), FakeEngine()
    pipe = _pipe(src, eng, realtime=False, csv=str(tmp_path / "f.csv"))
    pipe.add_sink(results.append)
    report = run_to_end(pipe)
    assert report["frames_in"] == 40 and report["frames_processed"] == 40 and report["frames_dropped"] == 0
    assert [r.index for r in results] == list(range(40))
    for r in results:
        t = r.timings
        assert t.t_captured_ns <= t.t_enqueued_ns <= t.t_dequeued_ns <= t.t_preprocessed_ns <= t.t_inferred_ns \
            <= t.t_delivered_ns
        assert r.probs.shape == (3,) and r.probs.sum() == pytest.approx(1.0, abs=1e-5)
        # the raw CAM of the top class, exactly as the engine returned it (normalised only when drawn)
        assert r.cam_class == r.top_class and np.array_equal(r.cam, FakeEngine.cam_of(r.cam_class))
    for stage in ("queue_wait", "preprocess", "inference", "deliver", "capture_to_result"):
        assert set(report["latency_ms"][stage]) >= {"p50", "p95", "p99", "max"}
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert len(rows) == 40 and all(r["status"] == "processed" for r in rows)
    assert src.closed


def test_realtime_latest_with_slow_inference_drops_and_counts_every_frame(tmp_path):
    src, eng = ScriptedSource(n=60, fps=200.0), FakeEngine(delay_s=0.02)
    pipe = _pipe(src, eng, realtime=True, csv=str(tmp_path / "f.csv"))
    report = run_to_end(pipe)
    assert report["queue"]["policy"] == "latest"
    assert report["frames_dropped"] > 0
    assert report["frames_in"] == report["frames_processed"] + report["frames_dropped"] == 60
    # lag cannot grow: at most one frame waits, so queue wait stays below ~one inference time plus slack
    assert report["queue"]["max_depth"] == 1
    assert pipe.telemetry.live()["fps_in"] > pipe.telemetry.live()["fps_processed"] > 0
    assert pipe.telemetry.live_fps() == pytest.approx(pipe.telemetry.live()["fps_processed"])
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert sorted(int(r["index"]) for r in rows) == list(range(60))
    assert sum(r["status"] == "dropped" for r in rows) == report["frames_dropped"]


def test_source_failure_mid_stream_stops_cleanly_and_keeps_the_report():
    src = ScriptedSource(n=50, fail_after=10)
    pipe = _pipe(src, FakeEngine(), realtime=False)
    report = run_to_end(pipe)
    assert isinstance(pipe.error, SourceError) and "vanished" in report["error"]
    assert report["frames_processed"] == 10
    assert not pipe.capture.is_alive() and not pipe.worker.is_alive() and src.closed


def test_stop_while_producer_blocked_does_not_hang():
    src, eng = ScriptedSource(n=10_000), FakeEngine(delay_s=0.01)
    pipe = _pipe(src, eng, realtime=False)
    pipe.start()
    time.sleep(0.1)
    pipe.stop()
    assert not pipe.capture.is_alive() and not pipe.worker.is_alive()
    r = pipe.report()
    assert r["frames_processed"] + r["frames_unprocessed_at_stop"] + r["frames_dropped"] == r["frames_in"]


def test_ema_smoothing_lags_the_raw_probabilities():
    results = []
    pipe = _pipe(ScriptedSource(n=10), FakeEngine(), realtime=False, ema=0.9)
    pipe.add_sink(results.append)
    run_to_end(pipe)
    assert np.allclose(results[0].probs, results[0].raw_probs)
    expect = results[0].raw_probs
    for r in results[1:]:
        expect = 0.9 * expect + 0.1 * r.raw_probs
        assert np.allclose(r.probs, expect, atol=1e-6)


def test_smoothing_restarts_at_each_loop_of_the_source():
    """The post-processing stage is reset at a discontinuity: the first frame of each pass is not smoothed."""
    results = []
    pipe = _pipe(ScriptedSource(n=4), FakeEngine(), realtime=False, ema=0.9, loop=True, frames=12)
    pipe.add_sink(results.append)
    run_to_end(pipe)
    assert len(results) == 12
    for r in results:
        restarted = r.index % 4 == 0
        assert np.array_equal(r.probs, r.raw_probs) == restarted, r.index


def test_sinks_added_and_removed_while_running():
    first, second = [], []
    second_sink = second.append  # one bound method: remove_sink compares by identity
    pipe = _pipe(ScriptedSource(n=30), FakeEngine(), realtime=False)
    pipe.add_sink(first.append)
    pipe.add_sink(second_sink)

    def drop_second_after_frame_9(result):
        if result.index == 9:
            pipe.remove_sink(second_sink)

    pipe.add_sink(drop_second_after_frame_9)
    run_to_end(pipe)
    assert [r.index for r in first] == list(range(30))
    # removed during frame 9's delivery: frame 9 had already been handed to it, frame 10 is not
    assert [r.index for r in second] == list(range(10))


def test_no_model_passes_frames_through():
    results = []
    pipe = _pipe(ScriptedSource(n=5), None, realtime=False)
    pipe.add_sink(results.append)
    report = run_to_end(pipe)
    assert report["frames_processed"] == 5 and results[0].probs.size == 0 and results[0].cam is None


class _CountingSource(ScriptedSource):
    """Sets ``second_read`` when the capture thread asks the source for its second frame."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.second_read = threading.Event()

    def frames(self, start_s: float = 0.0):
        for i, raw in enumerate(super().frames(start_s)):
            if i == 1:
                self.second_read.set()
            yield raw


def test_pause_and_step():
    """Paused, the capture thread lets exactly one frame through per step (no sleeps: events only)."""
    results, got = [], threading.Event()
    src = _CountingSource(n=100, fps=50.0)
    pipe = _pipe(src, FakeEngine(), realtime=True)
    pipe.add_sink(lambda r: (results.append(r), got.set()))
    pipe.capture.pause()
    pipe.start()
    pipe.capture.step()
    assert got.wait(5) and src.second_read.wait(5)
    # the second frame has been read and now waits for its turn: it is not counted, queued or processed
    assert pipe.capture.frames_in == 1
    pipe.stop()
    assert [r.index for r in results] == [0]


class _FakeClock:
    """A clock that only moves when the capture thread waits: pacing becomes exact arithmetic."""

    def __init__(self) -> None:
        self.now_ns = 1_000_000_000
        self.waits: list[float] = []

    def __call__(self) -> int:
        return self.now_ns

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now_ns += int(round(seconds * 1e9))
        return False


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_realtime_capture_releases_each_frame_at_its_pts(speed):
    from sonolens.pipeline.capture import CaptureThread

    clock = _FakeClock()
    src = ScriptedSource(n=6, fps=20.0)
    src.open()
    q = FrameQueue("block", capacity=10)
    cap = CaptureThread(src, q, realtime=True, speed=speed, clock=clock, wait=clock.wait)
    cap.run()  # on this thread: deterministic
    frames = [q.get(0) for _ in range(6)]
    t0 = frames[0].t_captured_ns
    assert [f.t_captured_ns - t0 for f in frames] == [round(i / 20.0 / speed * 1e9) for i in range(6)]
    assert [f.discontinuity for f in frames] == [True] + [False] * 5


def test_max_rate_capture_never_waits():
    from sonolens.pipeline.capture import CaptureThread

    clock = _FakeClock()
    src = ScriptedSource(n=6, fps=20.0)
    src.open()
    q = FrameQueue("block", capacity=10)
    CaptureThread(src, q, realtime=False, clock=clock, wait=clock.wait).run()
    assert clock.waits == [] and len(q) == 6


def test_capture_that_falls_behind_the_source_warns_once(caplog):
    """A source decoded slower than real time (4K on a small CPU) is said, not silently slowed."""
    import logging

    from sonolens.pipeline.capture import CaptureThread

    clock = _FakeClock()

    class SlowDecode(ScriptedSource):
        def frames(self, start_s=0.0):
            for raw in super().frames(start_s):
                clock.now_ns += 600_000_000  # 0.6 s to decode each 0.05 s frame
                yield raw

    src = SlowDecode(n=5, fps=20.0)
    src.open()
    q = FrameQueue("block", capacity=10)
    cap = CaptureThread(src, q, realtime=True, clock=clock, wait=clock.wait)
    with caplog.at_level(logging.WARNING, logger="sonolens"):
        cap.run()
    warnings = [r for r in caplog.records if "slower than real time" in r.getMessage()]
    assert len(warnings) == 1 and cap.max_late_s == pytest.approx(4 * 0.55)
