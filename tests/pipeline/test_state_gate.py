"""Frame states (ok / out_of_domain / no_image): hysteresis, the input-health check, calibration, and what is drawn."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import REPO, shared_path
from fakes import FakeEngine, ScriptedSource

from sonolens.pipeline.health import InputHealth
from sonolens.pipeline.messages import RawFrame, Result, Timings
from sonolens.pipeline.postprocess import PostProcessor, Prediction, StateGate, softmax
from sonolens.pipeline.stream import Pipeline, PipelineConfig, run_to_end


def _pred(score=None, no_image=None) -> Prediction:
    p = np.array([0.5, 0.5], np.float32)
    return Prediction(logits=p, raw_probs=p, probs=p, ood_score=score, no_image=no_image)


def test_state_changes_only_after_holding_for_hold_frames():
    gate = StateGate(threshold=1.0, hold=3)
    scores = [0, 2, 2, 0, 2, 2, 2, 2, 0, 0, 0, None]
    states = [gate(_pred(s)).state for s in scores]
    # single and double excursions do not flip the state; three in a row do (and the same on the way back)
    assert states == ["ok", "ok", "ok", "ok", "ok", "ok", "out_of_domain", "out_of_domain", "out_of_domain",
                      "out_of_domain", "ok", "ok"]
    assert gate.changes == 2
    gate.reset()
    assert gate(_pred(5.0)).state == "out_of_domain"  # after a reset the first frame's state is taken at once


def test_no_image_wins_and_gate_off_predicts_everything():
    gate = StateGate(threshold=1.0, hold=1)
    assert gate(_pred(5.0, no_image="blank")).state == "no_image"
    off = StateGate(threshold=None, hold=1, check_image=False)
    assert off(_pred(5.0, no_image="blank")).state == "ok"


def test_temperature_scaling():
    logits = np.array([2.0, 0.0, -1.0], np.float32)
    pred = PostProcessor(temperature=2.0)(logits)
    assert np.allclose(pred.raw_probs, softmax(logits / 2.0)) and np.array_equal(pred.probs, pred.raw_probs)


def _x(grey: np.ndarray, mean=0.5, std=0.25) -> np.ndarray:
    g = (grey.astype(np.float32) / 255.0 - mean) / std
    return np.stack([g, g, g])[None].astype(np.float32)


def test_input_health_rules():
    rng = np.random.default_rng(0)
    tissue = rng.rayleigh(50, (64, 64)).clip(0, 255).astype(np.uint8)
    h = InputHealth()
    assert h(_x(tissue), 0.5, 0.25) is None
    assert h(_x(np.zeros((64, 64), np.uint8)), 0.5, 0.25) == "blank"
    assert h(_x(np.full((64, 64), 128, np.uint8)), 0.5, 0.25) == "uniform"
    air = np.zeros((64, 64), np.uint8)
    air[2:4], air[8:10] = 160, 120  # reverberation lines near the probe, nothing below
    air += rng.integers(0, 8, air.shape, dtype=np.uint8)
    assert h(_x(air), 0.5, 0.25) == "air"
    h.reset()
    verdicts = [h(_x(tissue), 0.5, 0.25) for _ in range(32)]
    assert verdicts[:30] == [None] * 30 and verdicts[30:] == ["frozen", "frozen"]  # 30 repeats = 1 s at 30 Hz


def _gray_frames_of(path, n=8, skip=0):
    import av

    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i < skip:
                continue
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return out


# The demo made from stills fades in from black over its first 0.3 s (simulator.stills): no image there, rightly.
FADE_IN = {"busi_demo.mp4": 15}


@pytest.mark.parametrize("clip", sorted((REPO / "assets" / "sample_videos").glob("*.mp4")), ids=lambda p: p.name)
def test_health_passes_real_b_mode_frames(clip):
    """Every frame of the bundled B-mode clips shows an image (no false "no image")."""
    from sonolens.pipeline.preprocess import Preprocessor

    engine = FakeEngine()
    pre, h = Preprocessor(engine.meta), InputHealth()
    for frame in _gray_frames_of(clip, 12, skip=FADE_IN.get(clip.name, 0)):
        x, _ = pre(frame)
        assert h(x, 0.5, 0.25) is None


def test_health_passes_busi_images():
    import cv2

    from sonolens.pipeline.preprocess import preprocess_image

    engine = FakeEngine()
    files = sorted(shared_path("datasets", "busi").rglob("*.png"))
    files = [f for f in files if "_mask" not in f.name][::10]
    flagged = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        h = InputHealth()
        if h(preprocess_image(img, engine.meta), 0.5, 0.25) is not None:
            flagged.append(f.name)
    assert len(files) > 50 and flagged == []


class _Brightness(ScriptedSource):
    """Frames of noise whose brightness follows ``levels`` (FakeEngine's OOD score is the mean grey)."""

    def __init__(self, levels):
        super().__init__(n=len(levels))
        self.levels = levels

    def frames(self, start_s=0.0):
        rng = np.random.default_rng(0)
        for i, level in enumerate(self.levels):
            noise = rng.integers(0, 40, (48, 64, 3), dtype=np.uint8).astype(np.int16)
            yield RawFrame(np.clip(level - 20 + noise, 0, 255).astype(np.uint8), i / 100)


def test_pipeline_gates_frames_and_reports_states(tmp_path):
    levels = [60] * 10 + [200] * 10 + [60] * 10
    src = _Brightness(levels)
    cfg = PipelineConfig(source="x", realtime=False, csv=str(tmp_path / "f.csv"), roi="0,0,64,48")
    results = []
    pipe = Pipeline(cfg, src, src.open(), FakeEngine(ood_threshold=128.0), [])
    pipe.add_sink(results.append)
    report = run_to_end(pipe)
    states = [r.state for r in results]
    assert states == ["ok"] * 10 + ["ok"] * 4 + ["out_of_domain"] * 10 + ["ok"] * 6  # hold = 5 frames
    assert report["predictions"]["frames_by_state"] == {"ok": 20, "out_of_domain": 10, "no_image": 0}
    assert report["gate"]["state_changes"] == 2 and report["gate"]["method"] == "mean-grey"
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert [r["state"] for r in rows] == states and all(r["ood_score"] for r in rows)
    assert set(rows[0]) >= {"p_normal", "p_benign", "p_malignant", "cam_class"}
    # a third of the frames hidden: no end-of-run warning
    assert not any("outside the model's training domain" in w for w in report["warnings"])


def test_a_run_mostly_outside_the_domain_says_so_at_the_end():
    src = _Brightness([60] * 2 + [200] * 14)
    cfg = PipelineConfig(source="x", realtime=False, roi="0,0,64,48")
    pipe = Pipeline(cfg, src, src.open(), FakeEngine(ood_threshold=128.0), [])
    report = run_to_end(pipe)
    hidden = report["predictions"]["frames_by_state"]["out_of_domain"]
    assert hidden == 16 - 2 - 4  # the state changes after the 5-frame hold
    before = pipe.warnings()  # what was said before the run (FakeEngine is untrained)
    assert report["warnings"] == [*before, f"{hidden} of 16 frames were outside the model's training domain "
                                  "(out-of-domain score above the file's threshold 128): no prediction was shown "
                                  "for them; --no-gate shows the model's output anyway (research only)"]


def test_gate_off_predicts_on_every_frame():
    src = _Brightness([200] * 8)
    cfg = PipelineConfig(source="x", realtime=False, gate=False, roi="0,0,64,48")
    results = []
    pipe = Pipeline(cfg, src, src.open(), FakeEngine(ood_threshold=128.0), [])
    pipe.add_sink(results.append)
    report = run_to_end(pipe)
    assert {r.state for r in results} == {"ok"} and all(r.ood_score > 128 for r in results)
    assert any("--no-gate" in w for w in pipe.warnings())
    assert not any("outside the model's training domain" in w for w in report["warnings"])


def test_no_prediction_is_drawn_outside_the_domain(monkeypatch):
    from sonolens.pipeline import overlay

    frame = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    t = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                t_delivered_ns=0)
    kw = dict(index=0, frame=frame, roi=(0, 0, 160, 120), timings=t, class_names=("a", "b"),
              probs=np.array([0.2, 0.8], np.float32), raw_probs=np.array([0.2, 0.8], np.float32),
              cam=np.ones((7, 7), np.float32), cam_class=1)
    monkeypatch.setattr(overlay, "blend_heatmap", lambda *a, **k: pytest.fail("heat map drawn"))
    out = overlay.draw_overlay(Result(**kw, state="out_of_domain", ood_score=9.0))
    ok_style = overlay.OverlayStyle(heatmap=False)
    with_bars = overlay.draw_overlay(Result(**kw), ok_style)
    assert not np.array_equal(out, with_bars)  # the message replaces the bars
    assert not Result(**kw, state="no_image").shows_prediction and Result(**kw).shows_prediction

