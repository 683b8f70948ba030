"""Per-folder AUC and accuracy of a labelled batch, with 95 % confidence intervals.

* AUC of the recording score (the mean probability of the positive class over the frames the gate lets through)
  against "the label is the positive class": the Mann–Whitney estimate (``study.analysis.auc``), with DeLong's
  variance (DeLong, DeLong & Clarke-Pearson 1988; the midrank form of Sun & Xu 2014) and a normal 95 % interval
  clipped to [0, 1]; none with fewer than two recordings of either class.
* accuracy of the top class (the class of highest mean probability) against the label, with Wilson's interval
  (``study.analysis.wilson``), over the recordings whose label is one of the model's classes.

Recordings with an error or without a score (the gate let no frame through) are left out and counted. Both intervals
treat recordings as independent: several clips of one patient are not, so the intervals are too narrow then
(``sonolens cine-eval`` resamples patients).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sonolens.study.analysis import Z95, auc, wilson

ALL = "(all)"
METRIC_COLUMNS = ("group", "recordings", "scored", "positives", "auc", "auc_lo", "auc_hi", "accuracy_n", "accuracy",
                  "accuracy_lo", "accuracy_hi", "excluded")


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def delong(scores: Sequence[float], positive: Sequence[bool]) -> tuple[float | None, tuple[float, float] | None]:
    """(AUC, its 95 % DeLong interval); the interval is None with fewer than two of either class."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    value = auc(s.tolist(), y.tolist())
    m, n = int(y.sum()), int((~y).sum())
    if value is None or m < 2 or n < 2:
        return value, None
    pos, neg = s[y], s[~y]
    ranks = midranks(np.concatenate([pos, neg]))
    v10 = (ranks[:m] - midranks(pos)) / n  # per positive: share of negatives below it (ties ½)
    v01 = 1.0 - (ranks[m:] - midranks(neg)) / m  # per negative: share of positives above it
    se = math.sqrt(float(np.var(v10, ddof=1)) / m + float(np.var(v01, ddof=1)) / n)
    return value, (max(0.0, value - Z95 * se), min(1.0, value + Z95 * se))


def group_metrics(rows: Sequence[dict[str, Any]], positive: str, class_names: Sequence[str],
                  group: str) -> dict[str, Any]:
    """The metrics row of one group of table rows (``label``, ``score``, ``top_class``, ``error``)."""
    labelled = [r for r in rows if r.get("label")]
    usable = [r for r in labelled if not r.get("error") and r.get("score") is not None]
    y = [str(r["label"]).lower() == positive.lower() for r in usable]
    value, ci = delong([float(r["score"]) for r in usable], y)
    known = {c.lower() for c in class_names}
    graded = [r for r in usable if str(r["label"]).lower() in known]
    k = sum(str(r["top_class"]).lower() == str(r["label"]).lower() for r in graded)
    acc_ci = wilson(k, len(graded))
    return {"group": group, "recordings": len(labelled), "scored": len(usable), "positives": int(sum(y)),
            "auc": value, "auc_lo": ci[0] if ci else None, "auc_hi": ci[1] if ci else None,
            "accuracy_n": len(graded), "accuracy": k / len(graded) if graded else None,
            "accuracy_lo": acc_ci[0] if acc_ci else None, "accuracy_hi": acc_ci[1] if acc_ci else None,
            "excluded": len(labelled) - len(usable)}


def metrics_table(rows: Sequence[dict[str, Any]], positive: str, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One metrics row for all labelled recordings, then one per folder (the first level under ROOT)."""
    folders = sorted({str(r.get("folder")) for r in rows if r.get("label")})
    out = [group_metrics(rows, positive, class_names, ALL)]
    out += [group_metrics([r for r in rows if str(r.get("folder")) == f], positive, class_names, f) for f in folders]
    return out


__all__ = ["delong", "midranks", "group_metrics", "metrics_table", "METRIC_COLUMNS", "ALL"]
