"""A reader study's protocol file (YAML): cases with their ground truth, readers, conditions, design, sessions,
the confidence scale and the questionnaires. ``load_protocol`` validates it (unknown keys refused with a suggestion,
one-line ``ConfigError``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .schema import checked_keys, read_yaml


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
        d = checked_keys(d or {}, ("low", "high", "step", "label"), "rating")
        try:
            numbers = {k: float(d[k]) for k in ("low", "high", "step") if k in d}
        except (TypeError, ValueError):
            raise ConfigError(f"rating: low, high and step must be numbers ({d})") from None
        default = cls()
        return cls(numbers.get("low", default.low), numbers.get("high", default.high),
                   numbers.get("step", default.step), str(d.get("label", default.label)))


DISPLAYS = ("ai", "blinded", "off")  # what the reader sees: the model's output | the model runs hidden | no model
DESIGNS = ("crossed", "split-plot")
PROTOCOL_KEYS = ("study", "seed", "labels", "positive", "model", "rating", "questionnaires", "readers",
                 "conditions", "design", "groups", "sessions", "washout_days", "cases")
CASE_KEYS = ("id", "path", "truth", "box", "mask", "notes")


@dataclass(frozen=True)
class Case:
    """One case: a file (image, video, DICOM) or a folder of images, its ground truth, and optional lesion
    annotations (never shown to the reader)."""

    id: str
    path: Path
    truth: str
    box: tuple[float, float, float, float] | None = None
    mask: Path | None = None
    notes: str = ""


@dataclass(frozen=True)
class Condition:
    """A reading condition: its name (as the analysis reports it) and what the reader sees (``DISPLAYS``)."""

    name: str
    display: str


@dataclass(frozen=True)
class Protocol:
    """A validated protocol file."""

    path: Path
    study: str
    seed: int
    labels: tuple[str, ...]
    positive: str
    model: str | None
    rating: RatingScale
    questionnaires: tuple[str, ...]
    readers: tuple[str, ...]
    conditions: tuple[Condition, ...]
    design: str
    groups: int
    sessions: int
    washout_days: float
    cases: tuple[Case, ...]

    def case(self, case_id: str) -> Case:
        return next(c for c in self.cases if c.id == case_id)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)


_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def _ident(value: Any, what: str) -> str:
    """An ID used in file names and in the iMRMC export: letters, digits, ``_ . -``."""
    text = str(value).strip()
    if not _ID.match(text):
        raise ConfigError(f"{what} {value!r}: use letters, digits, '_', '.' or '-' (it names files and table rows)")
    return text


def _unique(values: list[str], what: str) -> tuple[str, ...]:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{what} {v!r} appears twice")
        seen.add(v)
    return tuple(values)


def _condition(item: Any) -> Condition:
    if item is False:  # YAML 1.1 reads an unquoted `off` as false
        item = "off"
    if isinstance(item, str):
        if item not in DISPLAYS:
            raise ConfigError(f"condition {item!r}: a plain condition is one of {', '.join(DISPLAYS)}; a custom one "
                              "is a mapping {name: …, display: ai | blinded | off}")
        return Condition(item, item)
    d = checked_keys(item, ("name", "display"), "conditions")
    display = str(d.get("display", ""))
    if display not in DISPLAYS:
        raise ConfigError(f"condition {d.get('name')!r}: display must be one of {', '.join(DISPLAYS)}")
    return Condition(_ident(d.get("name", ""), "condition"), display)


def _box(value: Any, case_id: str) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"case {case_id}: box must be [x, y, width, height]") from None
    return (x, y, w, h)


def _case(item: Any, root: Path, labels: tuple[str, ...]) -> Case:
    d = checked_keys(item, CASE_KEYS, "cases")
    for key in ("id", "path", "truth"):
        if key not in d:
            raise ConfigError(f"a case without {key!r}: every case needs id, path and truth ({d})")
    cid = _ident(d["id"], "case id")
    truth = str(d["truth"]).strip().lower()
    if truth not in labels:
        raise ConfigError(f"case {cid}: truth {d['truth']!r} is not one of the labels ({', '.join(labels)})")
    path = (root / str(d["path"])).resolve()
    if not path.exists():
        raise ConfigError(f"case {cid}: no such file or folder: {path}")
    mask = None if d.get("mask") is None else (root / str(d["mask"])).resolve()
    if mask is not None and not mask.is_file():
        raise ConfigError(f"case {cid}: no such mask file: {mask}")
    return Case(cid, path, truth, _box(d.get("box"), cid), mask, str(d.get("notes") or ""))


def _readers(d: dict) -> tuple[str, ...]:
    readers = d.get("readers")
    if isinstance(readers, int) and not isinstance(readers, bool):
        readers = [f"R{i + 1:02d}" for i in range(readers)]
    if not isinstance(readers, list) or not readers:
        raise ConfigError("readers: give a list of reader IDs (or their number)")
    return _unique([_ident(r, "reader") for r in readers], "reader")


def _labels(d: dict) -> tuple[tuple[str, ...], str]:
    labels = tuple(str(v).strip().lower() for v in d.get("labels") or ("normal", "benign", "malignant"))
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError("labels: at least two different class names (the reader's call keys, in key order)")
    positive = str(d.get("positive", labels[-1])).strip().lower()
    if positive not in labels:
        raise ConfigError(f"positive {positive!r} is not one of the labels ({', '.join(labels)})")
    return labels, positive


def _int(d: dict, key: str, default: int, low: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key} must be a whole number ≥ {low}, got {value!r}")
    return value


def _questionnaires(d: dict) -> tuple[str, ...]:
    names = d.get("questionnaires", ["nasa_tlx", "sus"]) or []
    if not isinstance(names, list):
        raise ConfigError("questionnaires: a list, e.g. [nasa_tlx, sus] (or [] for none)")
    if not names:
        return ()
    from .questionnaires import form

    return tuple(form(str(n)).name for n in names)


def parse_protocol(d: Any, path: Path) -> Protocol:
    """A ``Protocol`` from the file's parsed YAML (``path``: where case paths are relative to)."""
    d = checked_keys(d, PROTOCOL_KEYS, f"protocol {path.name}")
    labels, positive = _labels(d)
    conditions = tuple(_condition(c) for c in d.get("conditions") or ["ai", "off"])
    _unique([c.name for c in conditions], "condition")
    design = str(d.get("design", "crossed"))
    if design not in DESIGNS:
        raise ConfigError(f"design must be one of {', '.join(DESIGNS)}, got {design!r}")
    cases = d.get("cases")
    if not isinstance(cases, list) or not cases:
        raise ConfigError("cases: a list of {id, path, truth} (at least one)")
    case_list = tuple(_case(c, path.parent, labels) for c in cases)
    _unique([c.id for c in case_list], "case id")
    model = d.get("model")
    return Protocol(
        path=path, study=_ident(d.get("study", path.stem), "study"), seed=_int(d, "seed", 0, 0), labels=labels,
        positive=positive, model=None if model is None else str((path.parent / str(model)).resolve()
                                                                if Path(str(model)).suffix else model),
        rating=RatingScale.from_dict(d.get("rating")), questionnaires=_questionnaires(d), readers=_readers(d),
        conditions=conditions, design=design, groups=_int(d, "groups", 1, 1),
        sessions=_int(d, "sessions", len(conditions), 1), washout_days=float(d.get("washout_days", 28)),
        cases=case_list)


def load_protocol(path: str | os.PathLike) -> Protocol:
    """Read and validate a protocol file (one-line ConfigError for anything wrong)."""
    p = Path(path)
    d = read_yaml(p, "protocol")
    return parse_protocol(d, p.resolve())


__all__ = ["RatingScale", "Case", "Condition", "Protocol", "load_protocol", "parse_protocol", "DISPLAYS", "DESIGNS"]
