"""The tidy table of a reader study: every planned reading of ``plan.json`` joined with the logs of
``sonolens study run`` (one row per reader × case × condition), and the questionnaire answers.

A worklist session may span several log files (a block per file, and a new file after a crash); they share the
``session_id`` of their header, and are joined here by (reader, case, condition). Logs of other studies, or not
written by ``study run``, are listed as ignored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .log import StudyRecords, read_sessions

COLUMNS = ("study", "reader", "group", "session", "block", "block_position", "order", "condition", "display", "case",
           "truth", "answered", "call", "correct", "confidence", "rt_s", "model_call", "model_p_positive",
           "model_state", "log", "call_time")


@dataclass
class StudyData:
    """What the logs hold for a plan."""

    rows: list[dict[str, Any]]
    questionnaires: list[dict[str, Any]] = field(default_factory=list)
    logs_used: list[str] = field(default_factory=list)
    logs_ignored: list[str] = field(default_factory=list)  # "path: why"
    duplicates: int = 0  # later calls on a case already answered
    unplanned: int = 0  # calls on a case the plan does not give that reader under that condition
    torn_lines: int = 0


def _paused(events: Sequence[dict], t0: float, t1: float) -> float:
    """Seconds paused between t0 and t1 (``pause`` … ``resume`` events)."""
    total, since = 0.0, None
    for e in events:
        t = e.get("t_s")
        if not isinstance(t, (int, float)):
            continue
        if e.get("kind") == "pause" and since is None:
            since = max(t, t0)
        elif e.get("kind") == "resume" and since is not None:
            total += max(0.0, min(t, t1) - since)
            since = None
    if since is not None:
        total += max(0.0, t1 - since)
    return total


def _calls(recs: StudyRecords, positive: str) -> list[dict[str, Any]]:
    """The session's answered cases: call, confidence, reaction time, the model at the call."""
    shown: dict[str, float] = {}
    out = []
    for e in recs.events:
        case, t = e.get("case"), e.get("t_s")
        if e.get("kind") == "case_shown" and isinstance(case, str) and isinstance(t, (int, float)):
            shown.setdefault(case, float(t))
        if e.get("kind") != "call" or not isinstance(case, str):
            continue
        t0 = shown.get(case)
        rt = None if t0 is None or not isinstance(t, (int, float)) else t - t0 - _paused(recs.events, t0, t)
        out.append({"case": case, "call": str(e.get("label", "")).lower(), "confidence": e.get("confidence"),
                    "rt_s": rt, "model_call": (e.get("model_label") or None), "model_state": e.get("model_state"),
                    "model_p_positive": _p(e, recs.header.get("class_names"), positive),
                    "call_time": e.get("wall_time")})
    return out


def _p(event: dict, names: Any, positive: str) -> float | None:
    """The model's probability of the positive class at the call (None without a model)."""
    probs = event.get("model_probs")
    if not isinstance(probs, list) or not isinstance(names, list) or positive not in names:
        return None
    try:
        return float(probs[names.index(positive)])
    except (IndexError, TypeError, ValueError):
        return None


def _log_sessions(logs: Sequence[Path], study: str, data: StudyData) -> list[StudyRecords]:
    out = []
    for path in logs:
        try:
            sessions = read_sessions(path)
        except Exception as exc:  # noqa: BLE001 - one unreadable file is reported, never the end of the report
            data.logs_ignored.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        mine = [s for s in sessions if s.header.get("study") == study and s.header.get("session_id")]
        if not mine:
            data.logs_ignored.append(f"{path}: not a session of study {study!r}")
        data.torn_lines += sum(len(s.torn_lines) for s in sessions)
        out += mine
        if mine:
            data.logs_used.append(str(path))
    return out


def _planned_rows(plan: dict) -> dict[tuple[str, str, str], dict[str, Any]]:
    truth = {c["id"]: c["truth"] for c in plan["cases"]}
    display = {c["name"]: c["display"] for c in plan["conditions"]}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in plan["readings"]:
        row: dict[str, Any] = {k: "" for k in COLUMNS}
        row.update(r, study=plan["study"], display=display[r["condition"]], truth=truth[r["case"]], answered=0)
        rows[(r["reader"], r["case"], r["condition"])] = row
    return rows


def collect(plan: dict, logs: Sequence[Path]) -> StudyData:
    """Join the plan's readings with the calls and questionnaires of ``logs``."""
    data = StudyData(rows=[])
    rows = _planned_rows(plan)
    for recs in _log_sessions(logs, plan["study"], data):
        h = recs.header
        reader, condition = str(h.get("participant")), str(h.get("study_condition") or h.get("condition"))
        for c in _calls(recs, plan["positive"]):
            row = rows.get((reader, c["case"], condition))
            if row is None:
                data.unplanned += 1
            elif row["answered"]:
                data.duplicates += 1
            else:
                row.update(c, answered=1, correct=int(c["call"] == row["truth"]), log=recs.path.name)
        data.questionnaires += [{"reader": reader, "condition": condition, "session": h.get("session"),
                                 "form": e.get("form"), "score": e.get("score"), "answers": e.get("answers")}
                                for e in recs.events if e.get("kind") == "questionnaire"]
    data.rows = list(rows.values())
    return data


def find_logs(folder: Path) -> list[Path]:
    """Every ``*.jsonl`` under ``folder`` (recursively), sorted."""
    return sorted(p for p in folder.rglob("*.jsonl") if p.is_file())


def answered(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["answered"]]


__all__ = ["COLUMNS", "StudyData", "collect", "find_logs", "answered"]
