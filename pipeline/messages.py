"""Messages passed between threads: small dataclasses, timestamps from ``time.perf_counter_ns()`` only.

A frame's journey stamps these, in order:
``t_captured`` (source gave us pixels) → ``t_enqueued`` (put in the bounded queue) → ``t_dequeued``
(the worker took it) → ``t_preprocessed`` → ``t_inferred`` → ``t_delivered`` (sinks received the result).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """What a source yields: pixels and the source's own timestamp (seconds, or None when unknown)."""

    pixels: np.ndarray  # H×W×3 uint8 RGB, or H×W uint8 grayscale
    pts_s: float | None = None
    file: str | None = None  # a still's file (relative to its folder): every record of it names the image


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """A captured frame, numbered by the capture thread (indices count every frame read, dropped or not).

    ``discontinuity`` marks the first frame after a start, a loop or a seek: the post-processing stage resets
    its state before it. The queue stamps ``t_enqueued_ns`` / ``t_dequeued_ns`` on copies (``replace``).
    """

    index: int
    pixels: np.ndarray
    pts_s: float | None
    t_captured_ns: int
    t_enqueued_ns: int = 0
    t_dequeued_ns: int = 0
    discontinuity: bool = False
    file: str | None = None  # the still it shows (``RawFrame.file``), None for video


STAGES = ("queue_wait", "preprocess", "inference", "deliver", "capture_to_result")
"""Stage names, in pipeline order; ``capture_to_result`` spans them all."""


@dataclass(frozen=True, slots=True, kw_only=True)
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
        """Per-stage latency in milliseconds, keyed by ``STAGES``: the one definition of the stages, used by
        telemetry, the benchmarks and the viewer."""
        ms = 1e-6
        return {
            "queue_wait": (self.t_dequeued_ns - self.t_enqueued_ns) * ms,
            "preprocess": (self.t_preprocessed_ns - self.t_dequeued_ns) * ms,
            "inference": (self.t_inferred_ns - self.t_preprocessed_ns) * ms,
            "deliver": (self.t_delivered_ns - self.t_inferred_ns) * ms,
            "capture_to_result": (self.t_delivered_ns - self.t_captured_ns) * ms,
        }


STATE_TEXT = {"out_of_domain": "Outside the model's training domain \u2014 no prediction", "no_image": "No image"}
"""What the viewer and the recording show instead of class bars and heat map while a frame's state holds."""

NO_IMAGE_TEXT = {
    "blank": ("No image", "(black frame)"),
    "uniform": ("No image", "(flat grey frame)"),
    "frozen": ("Frozen frame", "(unchanged for 1 s: paused?)"),
    "air": ("No image", "(probe in the air)"),
}
"""Why a frame shows no prediction, by input-health verdict (``pipeline.health``): a title and the reason."""


def state_text(state: str, no_image: str | None) -> tuple[str, str]:
    """The title and the reason the viewer and the recording show for a frame without a prediction: a frozen still
    is a "Frozen frame", not "No image"."""
    if state == "no_image" and no_image in NO_IMAGE_TEXT:
        return NO_IMAGE_TEXT[no_image]
    return STATE_TEXT.get(state, "No prediction"), f"({no_image})" if no_image else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The worker's answer for one frame, built by keyword and never changed after (it crosses threads).

    * ``frame``: the captured pixels, H×W×3 uint8 RGB or H×W uint8 grey (not copied: nobody writes to them);
    * ``roi``: the (x, y, w, h) crop of ``frame`` the model saw, in pixels;
    * ``probs``: [C] float32 class probabilities after the post-processing stage (calibration, smoothing);
      ``raw_probs``: [C] the softmax of the model's logits. Both are empty ([0]) when no model runs;
    * ``cam``: [h, w] float32 Grad-CAM of ``cam_class`` at the model's CAM resolution (7×7 for 224×224), ReLU
      applied, *not* normalised — ``pipeline.cam.heatmap(cam, size)`` turns it into the [0, 1] map that
      pytorch-grad-cam would give; None when the CAM is off or no model runs;
    * ``cam_class``: the class index ``cam`` belongs to (-1 without a model);
    * ``ood_score``: the model's out-of-domain score (None when its file has no gate);
    * ``state``: ``ok`` | ``out_of_domain`` | ``no_image`` (``postprocess.STATES``). Outside ``ok`` the overlay
      shows no prediction (``probs`` and ``cam`` are still here for logs and research);
    * ``no_image``: why the input-health check found no image (``blank``, ``uniform``, ``frozen``, ``air``) or None.
    """

    index: int
    frame: np.ndarray
    roi: tuple[int, int, int, int]
    timings: Timings
    class_names: tuple[str, ...] = ()
    probs: np.ndarray = field(default_factory=_empty)
    raw_probs: np.ndarray = field(default_factory=_empty)
    cam: np.ndarray | None = None
    cam_class: int = -1
    ood_score: float | None = None
    state: str = "ok"
    no_image: str | None = None
    decision: int = -1  # the class a video-level decision shows (``postprocess.ClassDecision``); -1: none
    file: str | None = None  # the still it shows (folders and images), relative to its folder; None for video

    @property
    def shows_prediction(self) -> bool:
        """True when a model ran and the frame is in its domain: only then are class bars and heat map drawn."""
        return self.state == "ok" and self.probs.size > 0

    @property
    def top_class(self) -> int:
        """Index of the class shown: the video-level decision when there is one, else the most probable class; -1
        when no model ran."""
        if not self.probs.size:
            return -1
        return self.decision if 0 <= self.decision < self.probs.size else int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        """Name of the most probable class; "" when no model ran."""
        return self.class_names[self.top_class] if self.probs.size else ""

    @property
    def top_prob(self) -> float:
        """Probability of the top class; NaN when no model ran."""
        return float(self.probs[self.top_class]) if self.probs.size else float("nan")
