"""How the report's figures become Markdown: one number (``fmt``), a table cell that says when its figure was
measured under contention (``cell``), a pipeline run's cells, and a table from a header and rows (``table``).

Pure functions of the report's plain data; ``report`` builds each section's rows with them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sonolens.pipeline.contention import NOT_A_RESULT

from .entries import contended

RUN_HEADER = ("mode", "in", "processed", "dropped", "fps processed", "capture→result p50 / p95 / p99 ms",
              "inference p50 ms", "preprocess p50 ms")  # the columns of ``run_cells``


def fmt(v: Any, digits: int = 1) -> str:
    """One number as the Markdown shows it; ``—`` for a value that was not measured."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not np.isfinite(v):
            return "—"
        return f"{v:.{digits}f}"
    return str(v)


def fmtx(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{fmt(v, digits)}×"


def lookup(d: Any, *path: str | int) -> Any:
    """``d[path[0]][path[1]]...``, or None where a step is missing."""
    for p in path:
        if d is None:
            return None
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and p < len(d):
            d = d[p]
        else:
            return None
    return d


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def cell(entry: dict[str, Any] | None, value: Any, digits: int = 1) -> str:
    """A figure of ``entry`` as a table cell, or ``contended: not a result`` when the entry was flagged."""
    return NOT_A_RESULT if contended(entry) else fmt(value, digits)


def ratio_cell(value: float | None, withheld: str | None, digits: int = 1) -> str:
    """A ratio, or ``contended: not a result`` when it was withheld (which figure: the Contention section)."""
    return NOT_A_RESULT if value is None and withheld else fmtx(value, digits)


def run_cells(run: dict[str, Any] | None) -> list[str]:
    """The ``RUN_HEADER`` cells of one pipeline run (after its label)."""
    if not run or "frames_in" not in run:
        return ["—"] * 6 + [f"failed: {run.get('error') if run else 'not run'}"]
    c = run["capture_to_result_ms"]
    if contended(run):
        return [fmt(run["frames_in"]), fmt(run["frames_processed"])] + [NOT_A_RESULT] + ["—"] * 4
    return [fmt(run["frames_in"]), fmt(run["frames_processed"]), fmt(run["frames_dropped"]),
            fmt(run["fps_processed"], 1), f"{fmt(c['p50'], 2)} / {fmt(c['p95'], 2)} / {fmt(c['p99'], 2)}",
            fmt(run["stage_p50_ms"]["inference"], 2), fmt(run["stage_p50_ms"]["preprocess"], 2)]


def realtime_cell(run: dict[str, Any] | None) -> str:
    """A realtime run in one cell: frames in/processed/dropped, capture→result p50/p95/p99."""
    if run is None:
        return "not run"
    if "frames_in" not in run:
        return f"failed: {run.get('error')}"
    if contended(run):
        return NOT_A_RESULT
    c = run["capture_to_result_ms"]
    return (f"{run['frames_in']}/{run['frames_processed']}/{run['frames_dropped']}, "
            f"{fmt(c['p50'], 2)}/{fmt(c['p95'], 2)}/{fmt(c['p99'], 2)}")
