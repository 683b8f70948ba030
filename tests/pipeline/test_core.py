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
    pipe.worker.sinks.append(results.append)
    report = run_to_end(pipe)
    assert report["frames_in"] == 40 and report["frames_processed"] == 40 and report["frames_dropped"] == 0
    assert [r.index for r in results] == list(range(40))
    for r in results:
        t = r.timings
        assert t.t_captured_ns <= t.t_enqueued_ns <= t.t_dequeued_ns <= t.t_preprocessed_ns <= t.t_inferred_ns \
            <= t.t_delivered_ns
        assert r.probs.shape == (3,) and r.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert r.cam is not None and r.cam.min() == 0.0 and r.cam.max() == pytest.approx(1.0, abs=1e-5)
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
    pipe.worker.sinks.append(results.append)
    run_to_end(pipe)
    assert np.allclose(results[0].probs, results[0].raw_probs)
    expect = results[0].raw_probs
    for r in results[1:]:
        expect = 0.9 * expect + 0.1 * r.raw_probs
        assert np.allclose(r.probs, expect, atol=1e-6)


def test_no_model_passes_frames_through():
    results = []
    pipe = _pipe(ScriptedSource(n=5), None, realtime=False)
    pipe.worker.sinks.append(results.append)
    report = run_to_end(pipe)
    assert report["frames_processed"] == 5 and results[0].probs.size == 0 and results[0].cam is None


def test_pause_and_step():
    results = []
    src = ScriptedSource(n=100, fps=50.0)
    pipe = _pipe(src, FakeEngine(), realtime=True)
    pipe.worker.sinks.append(results.append)
    pipe.capture.pause()
    pipe.start()
    time.sleep(0.2)
    assert results == []
    pipe.capture.step()
    deadline = time.monotonic() + 2
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(results) == 1
    pipe.stop()


def test_runtime_preprocessing_matches_training_eval_transform():
    """Train/eval and runtime must feed the model the same tensor for the same image (no silent skew)."""
    augment = pytest.importorskip("sonolens.training.augment")
    from sonolens.pipeline.preprocess import normalisation_lut, preprocess_gray

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (237, 311), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    runtime = preprocess_gray(gray, (224, 224), normalisation_lut(mean, std))[0]
    train = augment.preprocess_like_runtime(gray, (224, 224), mean, std)
    assert runtime.shape == train.shape == (3, 224, 224)
    assert np.abs(runtime - train).max() < 1e-5
