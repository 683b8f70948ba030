"""The files ``sonolens study plan`` writes and ``study run`` / ``study report`` read.

``PLAN/plan.json``: the protocol as resolved (cases with their ground truth, conditions, labels, rating scale)
and every planned reading — what the report joins the logs with. ``PLAN/readings.csv``: the same readings as a
table. ``PLAN/balance.txt``: the balance table. ``PLAN/<reader>_s<session>.yaml``: one worklist per reader and
session — the blocks of the session in order, each with its condition and its cases in reading order (case IDs and
paths, relative to the worklist's folder; **no ground truth**: the participant's machine never needs it)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import write_text_atomic

from .plan import PLAN_FILE, READINGS_CSV, Reading, balance_rows, format_table, session_id
from .protocol import Protocol, RatingScale
from .schema import checked_keys, read_yaml

WORKLIST_VERSION = 1


@dataclass(frozen=True)
class WorkCase:
    id: str
    path: Path  # absolute, resolved from the worklist's folder


@dataclass(frozen=True)
class WorkBlock:
    block: str
    condition: str
    display: str  # ai | blinded | off
    cases: tuple[WorkCase, ...]


@dataclass(frozen=True)
class Worklist:
    """One reader's session."""

    path: Path
    study: str
    reader: str
    session: int
    session_id: str
    labels: tuple[str, ...]
    rating: RatingScale
    questionnaires: tuple[str, ...]
    model: str | None
    blocks: tuple[WorkBlock, ...]


def worklist_name(reader: str, session: int) -> str:
    return f"{reader}_s{session}.yaml"


def _worklist_dict(p: Protocol, reader: str, session: int, mine: Sequence[Reading], out: Path) -> dict:
    blocks: list[dict[str, Any]] = []
    for r in sorted(mine, key=lambda r: r.order):
        if not blocks or blocks[-1]["block"] != r.block:
            cond = p.condition(r.condition)
            blocks.append({"block": r.block, "condition": cond.name, "display": cond.display, "cases": []})
        path = p.case(r.case).path
        blocks[-1]["cases"].append({"id": r.case, "path": _relative(path, out, p.path.parent)})
    return {"sonolens_worklist": WORKLIST_VERSION, "study": p.study, "reader": reader, "session": session,
            "session_id": session_id(p.study, reader, session), "sessions": p.sessions,
            "washout_days": p.washout_days, "labels": list(p.labels), "rating": asdict(p.rating),
            "questionnaires": list(p.questionnaires), "model": p.model, "blocks": blocks}


def _relative(path: Path, folder: Path, root: Path) -> str:
    """A case under the protocol's folder (``root``) is written relative to the worklist's folder (the study folder
    moves as a whole); any other case keeps its absolute path."""
    if not path.is_relative_to(root):
        return str(path)
    try:
        return os.path.relpath(path, folder.resolve())
    except ValueError:  # another drive (Windows)
        return str(path)


def plan_dict(p: Protocol, readings: Sequence[Reading], protocol_text: str) -> dict:
    return {"sonolens_plan": WORKLIST_VERSION, "study": p.study, "seed": p.seed, "design": p.design,
            "labels": list(p.labels), "positive": p.positive, "rating": asdict(p.rating),
            "questionnaires": list(p.questionnaires), "readers": list(p.readers), "sessions": p.sessions,
            "washout_days": p.washout_days, "conditions": [asdict(c) for c in p.conditions],
            "cases": [{**asdict(c), "path": str(c.path), "mask": None if c.mask is None else str(c.mask)}
                      for c in p.cases],
            "protocol": str(p.path), "protocol_sha256": hashlib.sha256(protocol_text.encode()).hexdigest(),
            "readings": [asdict(r) for r in readings]}


def _readings_csv(readings: Sequence[Reading]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(Reading.__dataclass_fields__), lineterminator="\n")
    w.writeheader()
    w.writerows(asdict(r) for r in readings)
    return buf.getvalue()


def write_plan(p: Protocol, readings: Sequence[Reading], out: Path) -> list[Path]:
    """Write the plan folder (refused when it already holds a plan: logs may refer to it). Returns the files."""
    if (out / PLAN_FILE).exists():
        raise ConfigError(f"{out} already holds a plan ({PLAN_FILE}); plan into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    text = p.path.read_text(encoding="utf-8")
    files = {out / "protocol.yaml": text, out / READINGS_CSV: _readings_csv(readings),
             out / "balance.txt": format_table(balance_rows(p, readings)) + "\n"}
    for reader in p.readers:
        for s in range(1, p.sessions + 1):
            mine = [r for r in readings if r.reader == reader and r.session == s]
            files[out / worklist_name(reader, s)] = yaml.safe_dump(_worklist_dict(p, reader, s, mine, out),
                                                                   sort_keys=False, allow_unicode=True)
    files[out / PLAN_FILE] = json.dumps(plan_dict(p, readings, text), indent=1)  # last: its presence = complete
    for path, content in files.items():
        write_text_atomic(path, content, f"plan file {path.name}")
    return list(files)


def _block(d: Any, root: Path) -> WorkBlock:
    d = checked_keys(d, ("block", "condition", "display", "cases"), "worklist block")
    cases = tuple(WorkCase(str(c["id"]), (root / str(c["path"])).resolve()) for c in d.get("cases") or [])
    return WorkBlock(str(d["block"]), str(d["condition"]), str(d["display"]), cases)


WORKLIST_KEYS = ("sonolens_worklist", "study", "reader", "session", "session_id", "sessions", "washout_days",
                 "labels", "rating", "questionnaires", "model", "blocks")


def load_worklist(path: str | Path) -> Worklist:
    """Read a worklist written by ``study plan`` (one-line ConfigError when it is not one)."""
    p = Path(path)
    d = read_yaml(p, "worklist")
    if not isinstance(d, dict) or "sonolens_worklist" not in d:
        raise ConfigError(f"{p} is not a worklist written by 'sonolens study plan'")
    d = checked_keys(d, WORKLIST_KEYS, f"worklist {p.name}")
    try:
        blocks = tuple(_block(b, p.parent) for b in d["blocks"])
        return Worklist(p.resolve(), str(d["study"]), str(d["reader"]), int(d["session"]), str(d["session_id"]),
                        tuple(d["labels"]), RatingScale(**d["rating"]), tuple(d.get("questionnaires") or ()),
                        d.get("model"), blocks)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"worklist {p}: missing or bad field ({exc})") from None


def load_plan(folder: str | Path) -> dict:
    """``PLAN/plan.json`` (one-line ConfigError when the folder holds no plan)."""
    f = Path(folder) / PLAN_FILE
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{folder}: no {PLAN_FILE} (not a folder written by 'sonolens study plan')") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {f}: {exc}") from None
    if not isinstance(d, dict) or "readings" not in d:
        raise ConfigError(f"{f}: not a sonolens study plan")
    return d


__all__ = ["Worklist", "WorkBlock", "WorkCase", "load_worklist", "load_plan", "write_plan", "worklist_name"]
