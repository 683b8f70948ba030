"""A reader study's numbers: the tidy table of readings (plan ⋈ logs) and the statistics of each condition.

Readings: one row per planned reading (``plan.json``), joined with the reader's call in the logs of ``sonolens study
run`` (a ``call`` event that names the case; the first call counts, later ones are counted as ``duplicates``).
Unanswered readings stay in the table with ``answered`` 0 and are left out of every statistic.

Statistics, per condition, per reader and pooled over readers:

* accuracy: the call equals the ground truth (all classes);
* sensitivity and specificity of the positive class (``positive`` of the protocol, e.g. malignant): a call of the
  positive class against a positive truth;
* AUC of the reader's confidence ratings against positive truth (Mann–Whitney, ties count one half);
* Cohen's kappa of the reader with the model (calls on frames where the model made a prediction: state ``ok``;
  also under ``blinded``, where it ran hidden) and Fleiss' kappa between the readers (cases read by all of them);
* reaction time: the case appearing on screen → the call, less the time the session was paused.

Confidence intervals: a reader's proportions get Wilson 95 % intervals; pooled figures and the difference between
two conditions get percentile intervals from a bootstrap that resamples readers and cases together (two-way,
2,000 resamples, seeded), as MRMC analyses do — readers and cases are both random samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

Row = dict[str, Any]
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of k successes in n trials (None when n is 0)."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Empirical AUC (Mann–Whitney; ties count ½); None without both classes."""
    pos = [s for s, y in zip(scores, positive) if y]
    neg = [s for s, y in zip(scores, positive) if not y]
    if not pos or not neg:
        return None
    p, n = np.asarray(pos, float)[:, None], np.asarray(neg, float)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (no items, chance agreement 1)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return None if pe >= 1.0 else (po - pe) / (1.0 - pe)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa: ``ratings[i]`` are the labels the raters gave item i (the same number for every item, ≥ 2)."""
    if not ratings or len({len(r) for r in ratings}) != 1 or len(ratings[0]) < 2:
        return None
    m = len(ratings[0])
    cats = sorted({c for r in ratings for c in r})
    counts = np.array([[Counter(r)[c] for c in cats] for r in ratings], float)
    p_i = ((counts * counts).sum(1) - m) / (m * (m - 1))
    p_j = counts.sum(0) / counts.sum()
    pe = float((p_j * p_j).sum())
    return None if pe >= 1.0 else (float(p_i.mean()) - pe) / (1.0 - pe)


def rate(rows: Iterable[Row], hit: Callable[[Row], bool], keep: Callable[[Row], bool] = lambda r: True) -> dict:
    """A proportion with its Wilson interval: ``hit`` among the rows ``keep`` selects."""
    sel = [r for r in rows if keep(r)]
    k = sum(bool(hit(r)) for r in sel)
    ci = wilson(k, len(sel))
    return {"k": k, "n": len(sel), "value": k / len(sel) if sel else None, "ci": ci}


def measures(rows: Sequence[Row], positive: str) -> dict[str, float | None]:
    """The point estimates of one set of answered readings."""
    pos = [r for r in rows if r["truth"] == positive]
    neg = [r for r in rows if r["truth"] != positive]
    rated = [r for r in rows if r.get("confidence") is not None]
    return {
        "accuracy": _mean(r["call"] == r["truth"] for r in rows),
        "sensitivity": _mean(r["call"] == positive for r in pos),
        "specificity": _mean(r["call"] != positive for r in neg),
        "auc": auc([float(r["confidence"]) for r in rated], [r["truth"] == positive for r in rated]),
    }


def _mean(values: Iterable[bool]) -> float | None:
    v = list(values)
    return sum(v) / len(v) if v else None


def reader_stats(rows: Sequence[Row], positive: str) -> dict[str, Any]:
    """One reader under one condition: proportions with Wilson intervals, AUC, kappa with the model, RT."""
    model = [r for r in rows if r.get("model_state") == "ok" and r.get("model_call")]
    rts = [float(r["rt_s"]) for r in rows if r.get("rt_s") is not None]
    return {
        "n": len(rows),
        "accuracy": rate(rows, lambda r: r["call"] == r["truth"]),
        "sensitivity": rate(rows, lambda r: r["call"] == positive, lambda r: r["truth"] == positive),
        "specificity": rate(rows, lambda r: r["call"] != positive, lambda r: r["truth"] != positive),
        "auc": measures(rows, positive)["auc"],
        "kappa_model": cohen_kappa([r["call"] for r in model], [r["model_call"] for r in model]),
        "calls_with_model": len(model),
        "rt_median_s": float(np.median(rts)) if rts else None,
    }


def pooled(rows: Sequence[Row], positive: str) -> dict[str, float | None]:
    """Pooled over readers: the mean of the readers' figures (each reader weighs the same)."""
    per = [measures([r for r in rows if r["reader"] == rd], positive) for rd in sorted({r["reader"] for r in rows})]
    return {k: _nanmean([p[k] for p in per]) for k in ("accuracy", "sensitivity", "specificity", "auc")}


def _nanmean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def bootstrap(rows: Sequence[Row], stat: Callable[[Sequence[Row]], dict[str, float | None]], n_boot: int = 2000,
              seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """Two-way bootstrap (readers and cases resampled together) percentile 95 % intervals of ``stat``'s figures."""
    readers = sorted({r["reader"] for r in rows})
    cases = sorted({r["case"] for r in rows})
    index: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        index.setdefault((r["reader"], r["case"]), []).append(r)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        rs = rng.choice(len(readers), len(readers))
        cs = rng.choice(len(cases), len(cases))
        sample = [{**row, "reader": f"{readers[i]}#{a}"} for a, i in enumerate(rs) for j in cs
                  for row in index.get((readers[i], cases[j]), ())]
        for k, v in stat(sample).items():
            if v is not None:
                draws.setdefault(k, []).append(v)
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if len(v) >= n_boot // 2 else None
            for k, v in draws.items()}


__all__ = ["wilson", "auc", "cohen_kappa", "fleiss_kappa", "rate", "measures", "reader_stats", "pooled",
           "bootstrap", "Z95"]
