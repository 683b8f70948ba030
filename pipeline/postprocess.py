"""The post-processing stage between the engine and the sinks: logits in, the probabilities a user sees out.

Everything that turns one frame's model output into what is shown lives here: calibrated softmax (temperature
scaling, ``ModelSpec.temperature``), then a chain of small stages — temporal smoothing and the frame state gate
(``ok`` / ``out_of_domain`` / ``no_image``, with hysteresis). Stages
that keep state across frames (smoothing, hysteresis) are ``reset()`` at every discontinuity of the frame
sequence — the first frame after a start, a loop or a seek (``Frame.discontinuity``) and a change of source — so a
smoothed value never carries over from one clip (or one end of a clip) to another.

The worker thread calls the chain; it is not thread-safe and needs not be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .errors import ConfigError


def softmax(logits: np.ndarray) -> np.ndarray:
    """[C] float32 probabilities of [C] logits (computed in float64, max-shifted for stability)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    e = np.exp(z - z.max())
    return (e / e.sum()).astype(np.float32)


STATES = ("ok", "out_of_domain", "no_image")
"""A frame's state: ``ok`` (a prediction is shown), ``out_of_domain`` (the model's OOD score is above the model
file's threshold: no prediction), ``no_image`` (the input-health check found no image: no prediction)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One frame's model output as it moves through the stages.

    ``logits``: [C] float32 as the model gave them; ``raw_probs``: [C] ``softmax(logits / temperature)``, never
    changed by a stage; ``probs``: [C] what the stages made of them (what the overlay shows); ``ood_score``: the
    model's out-of-domain score (None without a gate); ``no_image``: why the input-health check found no image
    (None when there is one); ``state``: one of ``STATES`` (set by ``StateGate``).
    """

    logits: np.ndarray
    raw_probs: np.ndarray
    probs: np.ndarray
    ood_score: float | None = None
    no_image: str | None = None
    state: str = "ok"
    decision: int = -1  # the class the overlay shows (``ClassDecision``); -1: the top class of ``probs``


class PostStage(Protocol):
    """One step of the chain."""

    def __call__(self, pred: Prediction) -> Prediction:
        ...

    def reset(self) -> None:
        """Forget any state carried from earlier frames."""
        ...


class EmaSmoothing:
    """Exponential moving average of ``probs`` over frames: ``s_t = a * s_(t-1) + (1 - a) * p_t``.

    ``factor`` ``a`` in [0, 1): 0 passes every frame through unchanged; at 30 Hz, 0.8 gives a time constant of
    about 1/(30 * (1 - 0.8)) ≈ 0.17 s. The first frame after ``reset()`` is passed through.
    """

    def __init__(self, factor: float) -> None:
        if not 0.0 <= factor < 1.0:
            raise ConfigError(f"ema factor must be in [0, 1), got {factor}")
        self.factor = float(factor)
        self._state: np.ndarray | None = None

    def __call__(self, pred: Prediction) -> Prediction:
        if self.factor == 0.0:
            return pred
        p = pred.probs
        if self._state is None or self._state.shape != p.shape:
            self._state = p
        else:
            self._state = (self.factor * self._state + (1.0 - self.factor) * p).astype(np.float32)
        return replace(pred, probs=self._state)

    def reset(self) -> None:
        self._state = None


class ClassDecision:
    """A video-level decision a clinician can watch: probabilities smoothed with a time constant, and hysteresis on
    the shown class.

    ``probs`` become an exponential moving average with time constant ``tau_s`` seconds at ``fps`` frames a second
    (factor ``exp(-1 / (tau_s * fps))``: after ``tau_s`` a step has moved 63 % of the way); the shown class
    (``Prediction.decision``) changes only when another class's smoothed probability exceeds the shown one's by
    ``margin``. A sustained change of the evidence is followed within about ``tau_s`` to ``2 tau_s``; a one-second
    wobble near a tie is not. The first frame after ``reset()`` shows its own top class.
    """

    def __init__(self, tau_s: float, fps: float = 30.0, margin: float = 0.15) -> None:
        if not (tau_s > 0 and np.isfinite(tau_s)):
            raise ConfigError(f"decision time constant must be a positive number of seconds, got {tau_s}")
        if not (fps > 0 and np.isfinite(fps)):
            raise ConfigError(f"decision needs a positive frame rate, got {fps}")
        if not 0.0 <= margin < 1.0:
            raise ConfigError(f"decision margin must be in [0, 1), got {margin}")
        self.tau_s, self.fps, self.margin = float(tau_s), float(fps), float(margin)
        self.factor = float(np.exp(-1.0 / (self.tau_s * self.fps)))
        self.changes = 0
        self.reset()

    def reset(self) -> None:
        self._state: np.ndarray | None = None
        self._shown = -1

    def __call__(self, pred: Prediction) -> Prediction:
        p = pred.probs
        if self._state is None or self._state.shape != p.shape:
            self._state, self._shown = p, int(np.argmax(p))
        else:
            self._state = (self.factor * self._state + (1.0 - self.factor) * p).astype(np.float32)
            best = int(np.argmax(self._state))
            if best != self._shown and self._state[best] - self._state[self._shown] >= self.margin:
                self._shown = best
                self.changes += 1
        return replace(pred, probs=self._state, decision=self._shown)


class StateGate:
    """The frame state with hysteresis: a new state is taken only after it has held for ``hold`` frames in a row
    (5 frames ≈ 0.17 s at 30 Hz), so the overlay does not flicker between a prediction and "no prediction" on
    frames near the threshold. After ``reset()`` the first frame's state is taken at once.

    ``threshold`` None: no out-of-domain gate (a model file without one, or ``--no-gate``); ``check_image``
    False: the input-health result is ignored too. ``changes`` counts state changes (for "changes per second").
    """

    def __init__(self, threshold: float | None, *, hold: int = 5, check_image: bool = True) -> None:
        if hold < 1:
            raise ConfigError(f"state hold must be >= 1 frame, got {hold}")
        self.threshold = threshold
        self.hold = int(hold)
        self.check_image = check_image
        self.changes = 0
        self.reset()

    def reset(self) -> None:
        self._state: str | None = None
        self._candidate: str | None = None
        self._run = 0

    def candidate(self, pred: Prediction) -> str:
        if self.check_image and pred.no_image is not None:
            return "no_image"
        # a score that is not a number (NaN from a broken graph) is out of domain too, never "within the threshold"
        if self.threshold is not None and pred.ood_score is not None and not pred.ood_score <= self.threshold:
            return "out_of_domain"
        return "ok"

    def __call__(self, pred: Prediction) -> Prediction:
        cand = self.candidate(pred)
        if self._state is None:
            self._state = cand
        elif cand == self._state:
            self._candidate, self._run = None, 0
        else:
            self._run = self._run + 1 if cand == self._candidate else 1
            self._candidate = cand
            if self._run >= self.hold:
                self._state, self._candidate, self._run = cand, None, 0
                self.changes += 1
        return replace(pred, state=self._state)


class PostProcessor:
    """Calibrated softmax, then each stage in order. ``reset()`` resets every stage."""

    def __init__(self, stages: Sequence[PostStage] = (), temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.stages = list(stages)
        self.temperature = float(temperature)

    def __call__(self, logits: np.ndarray, *, ood_score: float | None = None,
                 no_image: str | None = None) -> Prediction:
        """[C] logits (+ the engine's OOD score and the input-health verdict) → ``Prediction``."""
        z = np.asarray(logits, dtype=np.float32).reshape(-1)
        raw = softmax(z / self.temperature if self.temperature != 1.0 else z)
        pred = Prediction(logits=z, raw_probs=raw, probs=raw, ood_score=ood_score, no_image=no_image)
        for stage in self.stages:
            pred = stage(pred)
        return pred

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()

    @property
    def gate(self) -> StateGate | None:
        return next((s for s in self.stages if isinstance(s, StateGate)), None)


def standard_postprocessor(ema: float = 0.0, *, temperature: float = 1.0, ood_threshold: float | None = None,
                           gate: bool = True, hold: int = 5, decision_s: float = 0.0, fps: float = 30.0,
                           decision_margin: float = 0.15) -> PostProcessor:
    """The chain the pipeline uses: smoothing when ``ema`` > 0, the video-level decision when ``decision_s`` > 0,
    then the state gate (inert with ``gate=False``)."""
    stages: list[PostStage] = [EmaSmoothing(ema)] if ema > 0.0 else []
    if decision_s > 0.0:
        stages.append(ClassDecision(decision_s, fps=fps, margin=decision_margin))
    stages.append(StateGate(ood_threshold if gate else None, hold=hold, check_image=gate))
    return PostProcessor(stages, temperature=temperature)


__all__ = ["softmax", "STATES", "Prediction", "PostStage", "EmaSmoothing", "ClassDecision", "StateGate",
           "PostProcessor",
           "standard_postprocessor"]
