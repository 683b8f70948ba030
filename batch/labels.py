"""Ground-truth labels of recordings, and the model's positive class.

``--labels folders``: a recording's label is the first folder level under ROOT that holds it (``benign/…``,
``malignant/…``); recordings directly in ROOT get none. ``--labels FILE.csv``: a CSV with a ``path`` (or ``file``)
column — relative to ROOT, or absolute — and a ``label`` column. Labels are compared with class names without regard
to case.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from sonolens.pipeline.errors import ConfigError, reason

from .discover import Recording

FOLDERS = "folders"


def positive_class(class_names: Sequence[str]) -> str:
    """The class whose mean probability is a recording's score: malignant (breast models), else pneumonia (chest
    X-ray), else the last class — the rule of ``sonolens eval`` (``training.evaluate.default_positive``)."""
    for name in ("malignant", "pneumonia"):
        if name in class_names:
            return name
    return class_names[-1]


def folder_labels(recordings: Sequence[Recording]) -> dict[str, str]:
    """{rel: first folder level}; recordings directly in ROOT have no label."""
    return {r.rel: r.folder for r in recordings if r.folder != "."}


def csv_labels(path: str | os.PathLike, root: Path, recordings: Sequence[Recording]) -> tuple[dict[str, str], int]:
    """({rel: label} for the recordings the CSV names, number of CSV rows that name no recording of the batch)."""
    rows = _read_rows(Path(path))
    by_rel = {r.rel: r.rel for r in recordings}
    by_abs = {os.path.normcase(os.path.abspath(r.path)): r.rel for r in recordings}
    out: dict[str, str] = {}
    unmatched = 0
    for name, label in rows:
        p = Path(name)
        rel = by_abs.get(os.path.normcase(os.path.abspath(p if p.is_absolute() else root / p)))
        rel = rel or by_rel.get(p.as_posix().strip("/"))
        if rel is None:
            unmatched += 1
        elif label:
            out[rel] = label
    return out, unmatched


def _read_rows(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise ConfigError(f"--labels: {path} is not a file (give 'folders' or a CSV file with path,label)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"--labels: cannot read {path} ({reason(exc)})") from None
    key = "path" if "path" in fields else "file" if "file" in fields else None
    if key is None or "label" not in fields:
        raise ConfigError(f"--labels: {path} needs the columns path (or file) and label, it has "
                          f"{', '.join(fields) or 'none'}")
    return [(row[key], row["label"]) for row in rows if row.get(key)]


def matches(label: str | None, class_name: str | None) -> bool | None:
    """Whether a label names a class (None when either is missing)."""
    if not label or not class_name:
        return None
    return label.strip().lower() == class_name.strip().lower()


__all__ = ["FOLDERS", "positive_class", "folder_labels", "csv_labels", "matches"]
