"""The batch's table: one row per recording, as Parquet (typed columns, for pandas/polars/DuckDB) and CSV; with labels,
the metrics per folder (``metrics.csv``). Every file is written to a temporary name and renamed into place.

Columns: ``path`` (relative to ROOT), ``kind`` (video | dicom | images), ``folder`` (first level under ROOT),
``label`` (with ``--labels``), ``frames`` (processed), ``frames_dropped`` (0: the batch drops none), ``source_fps``
(the recording's frame rate; none for stills), ``fps`` (frames processed per second by the worker), ``wall_s``,
``share_ok`` / ``share_out_of_domain`` / ``share_no_image`` (share of frames per gate state), ``mean_p_<class>``
(mean probability over the frames the gate let through), ``top_class`` (the class of highest mean probability),
``positive_class`` and ``score`` (its mean probability: the recording's score), ``correct`` (top class = label,
when the label is a class), ``error`` (one line; empty when the recording went through).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import SonolensError, reason
from sonolens.pipeline.outputs import write_text_atomic

from .labels import matches
from .metrics import METRIC_COLUMNS

TABLE = "results"
METRICS = "metrics.csv"
_INT = {"frames", "frames_dropped", "recordings", "scored", "positives", "accuracy_n", "excluded"}
_STR = {"path", "kind", "folder", "label", "top_class", "positive_class", "error", "group"}


def columns(class_names: Sequence[str], labelled: bool) -> list[str]:
    head = ["path", "kind", "folder"] + (["label"] if labelled else [])
    body = ["frames", "frames_dropped", "source_fps", "fps", "wall_s", "share_ok", "share_out_of_domain",
            "share_no_image", *(f"mean_p_{c}" for c in class_names), "top_class", "positive_class", "score"]
    return head + body + (["correct"] if labelled else []) + ["error"]


def table_rows(results: Sequence[dict[str, Any]], labels: dict[str, str] | None, positive: str,
               class_names: Sequence[str]) -> list[dict[str, Any]]:
    """The table's rows from stored results (sorted by path), with labels and correctness when given."""
    known = {c.lower() for c in class_names}
    rows = []
    for data in sorted(results, key=lambda d: d["row"]["path"]):
        row = dict(data["row"], positive_class=positive)
        if labels is not None:
            row["label"] = labels.get(row["path"])
            graded = row["label"] is not None and row["label"].lower() in known and not row.get("error")
            row["correct"] = matches(row["label"], row.get("top_class")) if graded else None
        rows.append(row)
    return rows


def _arrow_type(pa: Any, name: str) -> Any:
    if name in _STR:
        return pa.string()
    if name in _INT:
        return pa.int64()
    return pa.bool_() if name == "correct" else pa.float64()


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, _arrow_type(pa, c)) for c in cols])
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows], schema=schema)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except (OSError, pa.ArrowException) as exc:
        raise SonolensError(f"writing the results table to {path} failed: {reason(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def csv_text(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def write_table(out: Path, rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> tuple[Path, Path]:
    """``OUT/results.parquet`` and ``OUT/results.csv``."""
    parquet, table_csv = out / f"{TABLE}.parquet", out / f"{TABLE}.csv"
    write_parquet(parquet, rows, cols)
    write_text_atomic(table_csv, csv_text(rows, cols), "results table")
    return parquet, table_csv


def write_metrics(out: Path, metrics: Sequence[dict[str, Any]]) -> Path:
    path = out / METRICS
    write_text_atomic(path, csv_text(metrics, METRIC_COLUMNS), "metrics table")
    return path


__all__ = ["columns", "table_rows", "write_table", "write_metrics", "csv_text", "TABLE", "METRICS"]
