"""The post-processing stage between the engine and the sinks: logits in, the probabilities a user sees out.

Everything that turns one frame's model output into what is shown lives here, as a chain of small stages:
softmax today, then (issue order) probability calibration, out-of-domain scoring and temporal smoothing. Stages
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


@dataclass(frozen=True, slots=True)
class Prediction:
    """One frame's model output as it moves through the stages.

    ``logits``: [C] float32 as the model gave them; ``raw_probs``: [C] their softmax, never changed by a stage;
    ``probs``: [C] what the stages made of them (what the overlay shows).
    """

    logits: np.ndarray
    raw_probs: np.ndarray
    probs: np.ndarray


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


class PostProcessor:
    """The chain: ``softmax`` then each stage in order. ``reset()`` resets every stage."""

    def __init__(self, stages: Sequence[PostStage] = ()) -> None:
        self.stages = list(stages)

    def __call__(self, logits: np.ndarray) -> Prediction:
        """[C] logits → ``Prediction`` with ``raw_probs`` (softmax) and ``probs`` (after the stages)."""
        raw = softmax(logits)
        pred = Prediction(logits=np.asarray(logits, dtype=np.float32).reshape(-1), raw_probs=raw, probs=raw)
        for stage in self.stages:
            pred = stage(pred)
        return pred

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()


def standard_postprocessor(ema: float = 0.0) -> PostProcessor:
    """The chain the pipeline uses: smoothing only when ``ema`` > 0."""
    return PostProcessor([EmaSmoothing(ema)] if ema > 0.0 else [])


__all__ = ["softmax", "Prediction", "PostStage", "EmaSmoothing", "PostProcessor", "standard_postprocessor"]
