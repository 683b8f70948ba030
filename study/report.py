"""``sonolens study report PLAN/ LOGS/ --out REPORT/``: the study's tables, statistics, plots and exports.

Writes ``readings.csv`` and ``readings.parquet`` (the tidy table, ``study.readings``), ``questionnaires.csv``,
``summary.json`` (every figure of the HTML page), ``study.imrmc`` (the readers' confidence ratings with the ground
truth, in the input format of the FDA's iMRMC: an Obuchowski–Rockette / U-statistics MRMC analysis is one step
away, in iMRMC or RJafroc), three plots and ``report.html``. Needs the ``study`` extra (matplotlib, pyarrow)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.outputs import write_text_atomic

from .analysis import bootstrap, fleiss_kappa, pooled, reader_stats
from .readings import COLUMNS, StudyData, answered

Row = dict[str, Any]


def _by(rows: Sequence[Row], key: str) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(str(r[key]), []).append(r)
    return out


def _fleiss(rows: Sequence[Row]) -> float | None:
    """Between readers: the cases every reader of the condition answered."""
    readers = {r["reader"] for r in rows}
    per_case = _by(rows, "case")
    items = [[r["call"] for r in rs] for rs in per_case.values() if len({r["reader"] for r in rs}) == len(readers)]
    return fleiss_kappa(items)


def condition_summary(rows: Sequence[Row], positive: str, n_boot: int, seed: int) -> dict[str, Any]:
    """One condition: pooled figures with two-way bootstrap CIs, each reader's figures, Fleiss' kappa."""
    ci = bootstrap(rows, lambda s: pooled(s, positive), n_boot, seed)
    point = pooled(rows, positive)
    return {"answered": len(rows), "readers": len({r["reader"] for r in rows}),
            "cases": len({r["case"] for r in rows}),
            "pooled": {k: {"value": v, "ci": ci.get(k)} for k, v in point.items()},
            "per_reader": {rd: reader_stats(rs, positive) for rd, rs in sorted(_by(rows, "reader").items())},
            "fleiss_kappa": _fleiss(rows),
            "calls_without_prediction": sum(1 for r in rows if r["display"] != "off" and r["model_state"] != "ok"),
            "rt_median_s": _median([r["rt_s"] for r in rows])}


def _median(values: Sequence[Any]) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float))]
    return float(np.median(v)) if v else None


def difference(rows: Sequence[Row], a: str, b: str, positive: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Condition ``a`` minus ``b``, pooled, with a two-way bootstrap CI (readers and cases resampled together)."""

    def stat(sample: Sequence[Row]) -> dict[str, float | None]:
        pa = pooled([r for r in sample if r["condition"] == a], positive)
        pb = pooled([r for r in sample if r["condition"] == b], positive)
        return {k: None if pa[k] is None or pb[k] is None else pa[k] - pb[k] for k in pa}  # type: ignore[operator]

    both = [r for r in rows if r["condition"] in (a, b)]
    ci = bootstrap(both, stat, n_boot, seed)
    return {"a": a, "b": b, **{k: {"value": v, "ci": ci.get(k)} for k, v in stat(both).items()}}


def summarise(plan: dict, data: StudyData, n_boot: int = 2000) -> dict[str, Any]:
    rows = answered(data.rows)
    positive, names = plan["positive"], [c["name"] for c in plan["conditions"]]
    by_cond = _by(rows, "condition")
    summary: dict[str, Any] = {
        "study": plan["study"], "positive": positive, "planned": len(data.rows), "answered": len(rows),
        "missing": {n: sum(1 for r in data.rows if r["condition"] == n and not r["answered"]) for n in names},
        "duplicate_calls": data.duplicates, "unplanned_calls": data.unplanned, "torn_lines": data.torn_lines,
        "logs_used": data.logs_used, "logs_ignored": data.logs_ignored, "bootstrap": n_boot,
        "conditions": {n: condition_summary(by_cond.get(n, []), positive, n_boot, plan["seed"]) for n in names},
        "questionnaires": questionnaire_summary(data.questionnaires)}
    ref = reference_condition(plan)
    summary["reference"] = ref
    summary["differences"] = [difference(rows, n, ref, positive, n_boot, plan["seed"]) for n in names if n != ref]
    return summary


def reference_condition(plan: dict) -> str:
    """What the other conditions are compared with: the first condition without the model's output on screen
    (``off``, else ``blinded``), else the first condition."""
    conds = plan["conditions"]
    for display in ("off", "blinded"):
        match = [c["name"] for c in conds if c["display"] == display]
        if match:
            return match[0]
    return conds[0]["name"]


def questionnaire_summary(answers: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """Mean score (and n) per form and condition."""
    out: dict[str, dict[str, Any]] = {}
    for q in answers:
        if isinstance(q.get("score"), (int, float)):
            out.setdefault(str(q["form"]), {}).setdefault(str(q["condition"]), []).append(float(q["score"]))
    return {f: {c: {"n": len(v), "mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None}
                for c, v in per.items()} for f, per in out.items()}


def _csv_text(rows: Sequence[Row], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in columns} for r in rows)
    return buf.getvalue()


def write_tables(data: StudyData, out: Path) -> list[Path]:
    """readings.csv, readings.parquet, questionnaires.csv."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_text_atomic(out / "readings.csv", _csv_text(data.rows, COLUMNS), "readings table")
    table = pa.Table.from_pylist([{k: _cell(r.get(k)) for k in COLUMNS} for r in data.rows])
    tmp = out / ".readings.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(out / "readings.parquet")
    q_rows = [{**q, "answers": json.dumps(q.get("answers"))} for q in data.questionnaires]
    write_text_atomic(out / "questionnaires.csv",
                      _csv_text(q_rows, ("reader", "condition", "session", "form", "score", "answers")),
                      "questionnaire table")
    return [out / "readings.csv", out / "readings.parquet", out / "questionnaires.csv"]


def _cell(v: Any) -> Any:
    """Parquet columns of one type: empty strings of unanswered readings become nulls."""
    return None if v == "" else v


__all__ = ["summarise", "write_tables", "condition_summary", "difference", "questionnaire_summary"]
