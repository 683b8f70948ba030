"""The two standard questionnaires of a reader study as data, and their scoring (no Qt, no torch).

* **NASA-TLX** (Hart & Staveland 1988), scored as the *raw TLX* (Hart 2006, "NASA-Task Load Index (NASA-TLX);
  20 years later"): six subscales rated 0–100 in steps of 5 (the paper form's 21 marks); the score is the plain
  mean of the six. The original pairwise-comparison weighting is **not** used.
* **SUS**, the System Usability Scale (Brooke 1996): ten statements rated 1 (strongly disagree) to 5 (strongly
  agree); odd (positively worded) items contribute ``x - 1``, even (negatively worded) items ``5 - x``; the sum of
  the contributions times 2.5 gives 0–100.

Answers are mappings ``{item.key: value}``; every item must be answered, on its scale and on its step, else
``ConfigError`` naming the item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sonolens.pipeline.errors import ConfigError, suggest


@dataclass(frozen=True)
class Item:
    """One question: its ``text``, the words at either end of its scale, and the scale ``low``..``high`` in
    ``step``s."""

    key: str
    text: str
    low_anchor: str
    high_anchor: str
    low: int
    high: int
    step: int

    def check(self, value: object) -> float:
        """``value`` as a float when it is a number on this item's scale and step, else ConfigError naming the
        item."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{self.key}: expected a number from {self.low} to {self.high}, got {value!r}")
        v = float(value)
        if not self.low <= v <= self.high:
            raise ConfigError(f"{self.key}: {v:g} is outside the scale {self.low}–{self.high}")
        steps = (v - self.low) / self.step
        if abs(steps - round(steps)) > 1e-9:
            raise ConfigError(f"{self.key}: {v:g} is not on the scale's steps of {self.step} from {self.low}")
        return v


@dataclass(frozen=True)
class Form:
    """A questionnaire: its ``name`` (the key in ``FORMS``), the ``title`` and ``instructions`` shown to the
    reader, and its items in order."""

    name: str
    title: str
    instructions: str
    items: tuple[Item, ...]

    def keys(self) -> tuple[str, ...]:
        """The items' keys, in order."""
        return tuple(item.key for item in self.items)


def _tlx_item(key: str, text: str, low_anchor: str = "Very low", high_anchor: str = "Very high") -> Item:
    """A NASA-TLX subscale: 0–100 in steps of 5, "Very low" to "Very high" unless told otherwise."""
    return Item(key, text, low_anchor, high_anchor, 0, 100, 5)


NASA_TLX = Form(
    name="nasa_tlx",
    title="NASA Task Load Index (NASA-TLX)",
    instructions=("Rate the block of cases you have just read on each of the six scales below. "
                  "Each scale runs from 0 to 100 in steps of 5."),
    items=(
        _tlx_item("mental_demand", "Mental demand: How mentally demanding was the task?"),
        _tlx_item("physical_demand", "Physical demand: How physically demanding was the task?"),
        _tlx_item("temporal_demand", "Temporal demand: How hurried or rushed was the pace of the task?"),
        _tlx_item("performance", "Performance: How successful were you in accomplishing what you were asked to do?",
                  "Perfect", "Failure"),
        _tlx_item("effort", "Effort: How hard did you have to work to accomplish your level of performance?"),
        _tlx_item("frustration", "Frustration: How insecure, discouraged, irritated, stressed, and annoyed were you?"),
    ),
)

_SUS_STATEMENTS = (
    "I think that I would like to use this system frequently.",
    "I found the system unnecessarily complex.",
    "I thought the system was easy to use.",
    "I think that I would need the support of a technical person to be able to use this system.",
    "I found the various functions in this system were well integrated.",
    "I thought there was too much inconsistency in this system.",
    "I would imagine that most people would learn to use this system very quickly.",
    "I found the system very cumbersome to use.",
    "I felt very confident using the system.",
    "I needed to learn a lot of things before I could get going with this system.",
)

SUS = Form(
    name="sus",
    title="System Usability Scale (SUS)",
    instructions=("For each statement, mark how strongly you agree or disagree with it, from 1 (strongly disagree) "
                  "to 5 (strongly agree). Answer every item; if you cannot decide, mark the centre point (3)."),
    items=tuple(Item(f"q{i}", f"{i}. {text}", "Strongly disagree", "Strongly agree", 1, 5, 1)
                for i, text in enumerate(_SUS_STATEMENTS, start=1)),
)

FORMS: dict[str, Form] = {NASA_TLX.name: NASA_TLX, SUS.name: SUS}


def form(name: str) -> Form:
    """The form called ``name`` (a key of ``FORMS``); else ConfigError with the closest name."""
    try:
        return FORMS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown questionnaire {name!r}{suggest(str(name), FORMS)}") from None


def checked_answers(f: Form, answers: Mapping[str, object]) -> dict[str, float]:
    """``{item.key: value}`` for every item of ``f``, each checked by ``Item.check``; a missing item or a key that is
    no item of the form → ConfigError naming it."""
    if not isinstance(answers, Mapping):
        raise ConfigError(f"{f.name}: answers must be a mapping, got {type(answers).__name__}")
    keys = f.keys()
    for key in answers:
        if key not in keys:
            raise ConfigError(f"{f.name}: unknown item {key!r}{suggest(str(key), keys)}")
    missing = [key for key in keys if key not in answers]
    if missing:
        raise ConfigError(f"{f.name}: item {missing[0]!r} is not answered ({len(missing)} missing)")
    return {item.key: item.check(answers[item.key]) for item in f.items}


def _sus_contribution(i: int, value: float) -> float:
    """Item ``i`` (1-based) of the SUS: odd items ``x - 1``, even items ``5 - x`` (each 0–4)."""
    return value - 1.0 if i % 2 == 1 else 5.0 - value


def subscale_scores(name: str, answers: Mapping[str, float]) -> dict[str, float]:
    """The parts the score is made of, by item key: NASA-TLX, each subscale's rating (0–100); SUS, each item's
    contribution (0–4, before the × 2.5)."""
    f = form(name)
    values = checked_answers(f, answers)
    if f.name == SUS.name:
        return {key: _sus_contribution(i, v) for i, (key, v) in enumerate(values.items(), start=1)}
    return values


def score(name: str, answers: Mapping[str, float]) -> float:
    """The form's score, 0–100: NASA-TLX, the raw TLX (unweighted mean of the six subscales); SUS, the sum of the
    item contributions × 2.5."""
    parts = subscale_scores(name, answers)
    if name == SUS.name:
        return sum(parts.values()) * 2.5
    return sum(parts.values()) / len(parts)


__all__ = ["Item", "Form", "NASA_TLX", "SUS", "FORMS", "form", "checked_answers", "score", "subscale_scores"]
