"""Messages passed between threads: small dataclasses, timestamps from ``time.perf_counter_ns()`` only.

A frame's journey stamps these, in order:
``t_captured`` (source gave us pixels) → ``t_enqueued`` (put in the bounded queue) → ``t_dequeued``
(the worker took it) → ``t_preprocessed`` → ``t_inferred`` → ``t_delivered`` (sinks received the result).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class RawFrame:
    """What a source yields: pixels and the source's own timestamp (seconds, or None when unknown)."""

    pixels: np.ndarray  # H×W×3 uint8 RGB, or H×W uint8 grayscale
    pts_s: float | None = None


@dataclass(slots=True)
class Frame:
    """A captured frame, numbered by the capture thread (indices count every frame read, dropped or not)."""

    index: int
    pixels: np.ndarray
    pts_s: float | None
    t_captured_ns: int
    t_enqueued_ns: int = 0
    t_dequeued_ns: int = 0


@dataclass(frozen=True, slots=True)
class Timings:
    """Monotonic timestamps (ns) of one frame's stages, plus the source timestamp."""

    t_captured_ns: int
    t_enqueued_ns: int
    t_dequeued_ns: int
    t_preprocessed_ns: int
    t_inferred_ns: int
    t_delivered_ns: int
    pts_s: float | None = None

    def stage_ms(self) -> dict[str, float]:
        """Per-stage latency in milliseconds, the keys used by telemetry and reports."""
        ms = 1e-6
        return {
            "queue_wait": (self.t_dequeued_ns - self.t_enqueued_ns) * ms,
            "preprocess": (self.t_preprocessed_ns - self.t_dequeued_ns) * ms,
            "inference": (self.t_inferred_ns - self.t_preprocessed_ns) * ms,
            "deliver": (self.t_delivered_ns - self.t_inferred_ns) * ms,
            "capture_to_result": (self.t_delivered_ns - self.t_captured_ns) * ms,
        }


@dataclass(slots=True)
class Result:
    """The worker's answer for one frame.

    ``probs`` are the (optionally EMA-smoothed) class probabilities; ``raw_probs`` the unsmoothed ones.
    ``cam`` is the Grad-CAM map of ``cam_class`` at model resolution, normalised to [0, 1] (None when the
    CAM is off). ``roi`` is the (x, y, w, h) crop of the frame the model saw.
    """

    index: int
    frame: np.ndarray
    probs: np.ndarray
    raw_probs: np.ndarray
    class_names: tuple[str, ...]
    cam: np.ndarray | None
    cam_class: int
    roi: tuple[int, int, int, int]
    timings: Timings
    extra: dict = field(default_factory=dict)

    @property
    def top_class(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.class_names[self.top_class]
