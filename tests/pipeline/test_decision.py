"""The video-level decision (``postprocess.ClassDecision``): calm on a wobble, quick on a real change."""

from __future__ import annotations

import numpy as np
import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.messages import Result, Timings
from sonolens.pipeline.postprocess import ClassDecision, PostProcessor, standard_postprocessor

FPS = 30.0


def _frames(mean: list[float], seconds: float, rng: np.random.Generator, noise: float = 0.15) -> np.ndarray:
    """Noisy per-frame probabilities around ``mean`` (three classes), ``seconds`` long at FPS."""
    n = int(seconds * FPS)
    p = np.clip(np.asarray(mean) + noise * rng.standard_normal((n, 3)), 1e-3, None)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _shown(stage, probs: np.ndarray) -> list[int]:
    chain = PostProcessor([stage])
    return [chain(np.log(p)).decision for p in probs]


def _changes_per_s(top: list[int]) -> float:
    return sum(a != b for a, b in zip(top, top[1:])) / (len(top) / FPS)


def test_a_join_of_benign_and_malignant_is_followed_within_two_seconds():
    rng = np.random.default_rng(0)
    benign, malignant = _frames([0.1, 0.55, 0.35], 10, rng), _frames([0.1, 0.35, 0.55], 10, rng)
    shown = _shown(ClassDecision(1.0, fps=FPS), np.concatenate([benign, malignant]))
    join = len(benign)
    assert set(shown[int(FPS):join]) == {1}                      # benign, steadily, once settled
    switch = next(i for i in range(join, len(shown)) if shown[i] == 2)
    assert (switch - join) / FPS <= 2.0, (switch - join) / FPS   # followed within 2 s
    assert set(shown[switch:]) == {2}                            # and kept


def test_a_wobble_near_a_tie_does_not_flip_the_overlay():
    rng = np.random.default_rng(1)
    probs = _frames([0.1, 0.45, 0.45], 60, rng)                  # a minute of a near tie
    raw = [int(np.argmax(p)) for p in probs]
    calm = _shown(ClassDecision(1.0, fps=FPS), probs)
    assert _changes_per_s(raw) > 5                               # what the raw overlay did
    assert _changes_per_s(calm) <= 0.2, _changes_per_s(calm)     # the target


def test_reset_shows_the_first_frames_own_class_and_result_uses_the_decision():
    stage = ClassDecision(2.0, fps=FPS)
    chain = PostProcessor([stage])
    for _ in range(30):
        chain(np.log(np.array([0.1, 0.8, 0.1], np.float32)))
    assert chain(np.log(np.array([0.1, 0.1, 0.8], np.float32))).decision == 1   # one frame: not yet
    chain.reset()
    assert chain(np.log(np.array([0.1, 0.1, 0.8], np.float32))).decision == 2
    t = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                t_delivered_ns=0)
    r = Result(index=0, frame=np.zeros((2, 2), np.uint8), roi=(0, 0, 2, 2), timings=t,
               class_names=("a", "b", "c"), probs=np.array([0.2, 0.5, 0.3], np.float32), decision=2)
    assert r.top_class == 2 and r.label == "c"


def test_off_by_default_and_bad_values_are_one_line():
    assert not any(isinstance(s, ClassDecision) for s in standard_postprocessor().stages)
    assert any(isinstance(s, ClassDecision) for s in standard_postprocessor(decision_s=1.0).stages)
    for kwargs in ({"tau_s": 0}, {"tau_s": float("nan")}, {"tau_s": 1, "margin": 1.0}, {"tau_s": 1, "fps": 0}):
        with pytest.raises(ConfigError):
            ClassDecision(**kwargs)
