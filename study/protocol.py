"""A reader study's protocol file (YAML): cases with their ground truth, readers, conditions, design, sessions,
the confidence scale and the questionnaires. ``load_protocol`` validates it (unknown keys refused with a suggestion,
one-line ``ConfigError``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sonolens.pipeline.errors import ConfigError


@dataclass(frozen=True)
class RatingScale:
    """The confidence the reader gives with each call: a number from ``low`` to ``high`` in ``step``s (e.g. 0–100
    probability of malignancy, or a 1–5 scale)."""

    low: float = 0.0
    high: float = 100.0
    step: float = 1.0
    label: str = "probability of malignancy (%)"

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ConfigError(f"rating: high ({self.high:g}) must be above low ({self.low:g})")
        if not 0 < self.step <= self.high - self.low:
            raise ConfigError(f"rating: step must be in (0, {self.high - self.low:g}], got {self.step:g}")

    def check(self, value: float) -> float:
        """``value`` if it is on the scale, else ConfigError."""
        if not self.low <= float(value) <= self.high:
            raise ConfigError(f"rating {value:g} is outside the scale {self.low:g}–{self.high:g}")
        return float(value)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RatingScale:
        from .schema import checked_keys

        d = checked_keys(d or {}, ("low", "high", "step", "label"), "rating")
        return cls(**{k: (str(v) if k == "label" else float(v)) for k, v in d.items()})
