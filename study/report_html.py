"""The report page of ``sonolens study report``: three plots (matplotlib, headless) and one HTML file that shows
every figure of ``summary.json`` with its interval."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.outputs import write_text_atomic

Row = dict[str, Any]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(summary: dict, out: Path) -> Path:
    """Each reader's accuracy under each condition (a line per reader) and the pooled value with its CI."""
    plt = _pyplot()
    names = list(summary["conditions"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    readers = sorted({rd for c in summary["conditions"].values() for rd in c["per_reader"]})
    for rd in readers:
        ys = [summary["conditions"][n]["per_reader"].get(rd, {}).get("accuracy", {}).get("value") for n in names]
        ax.plot(range(len(names)), [np.nan if y is None else y for y in ys], "o-", alpha=0.6, label=rd)
    for i, n in enumerate(names):
        p = summary["conditions"][n]["pooled"]["accuracy"]
        if p["value"] is not None and p["ci"]:
            ax.errorbar(i + 0.08, p["value"], yerr=[[p["value"] - p["ci"][0]], [p["ci"][1] - p["value"]]],
                        fmt="s", color="black", capsize=4, label="pooled (95 % CI)" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy (all classes)")
    ax.set_title("Reader accuracy by condition")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_by_condition.png")


def roc_points(rows: Sequence[Row], positive: str) -> tuple[list[float], list[float]]:
    """Empirical ROC operating points from confidence ratings (every distinct rating a threshold)."""
    rated = [(float(r["confidence"]), r["truth"] == positive) for r in rows if r.get("confidence") is not None]
    pos = sum(y for _, y in rated)
    neg = len(rated) - pos
    if not pos or not neg:
        return [], []
    fpr, tpr = [0.0], [0.0]
    for t in sorted({s for s, _ in rated}, reverse=True):
        tpr.append(sum(1 for s, y in rated if y and s >= t) / pos)
        fpr.append(sum(1 for s, y in rated if not y and s >= t) / neg)
    return fpr, tpr


def plot_roc(rows: Sequence[Row], summary: dict, out: Path) -> Path:
    """Each reader's ROC points from their ratings, one panel per condition."""
    plt = _pyplot()
    names = list(summary["conditions"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.4), dpi=110, squeeze=False)
    for ax, n in zip(axes[0], names):
        mine = [r for r in rows if r["condition"] == n]
        for rd in sorted({r["reader"] for r in mine}):
            fpr, tpr = roc_points([r for r in mine if r["reader"] == rd], summary["positive"])
            ax.plot(fpr, tpr, "o-", ms=3, alpha=0.7, label=rd)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_title(f"{n}: AUC {fmt(summary['conditions'][n]['pooled']['auc'])}", fontsize=9)
        ax.set_xlabel("1 − specificity")
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("sensitivity")
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7, loc="lower right")
    return _save(fig, out / "roc_by_reader.png")


def plot_rt(rows: Sequence[Row], summary: dict, out: Path) -> Path:
    """Reaction times (case on screen → call, pauses left out) per condition."""
    plt = _pyplot()
    names = list(summary["conditions"])
    data = [[float(r["rt_s"]) for r in rows if r["condition"] == n and isinstance(r.get("rt_s"), (int, float))]
            for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    ax.boxplot([d if d else [np.nan] for d in data], showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("reaction time (s)")
    ax.set_title("Reaction time by condition")
    return _save(fig, out / "reaction_times.png")


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def fmt(figure: dict | float | None, pct: bool = False) -> str:
    """"0.83 [0.71, 0.92]" (or percentages) from a figure with its interval."""
    if isinstance(figure, dict):
        v, ci = figure.get("value"), figure.get("ci")
    else:
        v, ci = figure, None
    if v is None:
        return "n/a"
    f = (lambda x: f"{100 * x:.1f} %") if pct else (lambda x: f"{x:.2f}")
    return f(v) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")


def _row(cells: Sequence[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"


def condition_table(summary: dict) -> str:
    head = ["condition", "answered", "accuracy", "sensitivity", "specificity", "AUC (ratings)", "Fleiss κ",
            "median RT (s)"]
    body = [_row(head, "th")]
    for n, c in summary["conditions"].items():
        p = c["pooled"]
        body.append(_row([n, str(c["answered"]), fmt(p["accuracy"], True), fmt(p["sensitivity"], True),
                          fmt(p["specificity"], True), fmt(p["auc"]), fmt(c["fleiss_kappa"]),
                          fmt(c["rt_median_s"])]))
    for d in summary["differences"]:
        body.append(_row([f"{d['a']} − {d['b']}", "", fmt(d["accuracy"], True), fmt(d["sensitivity"], True),
                          fmt(d["specificity"], True), fmt(d["auc"]), "", ""]))
    return "<table>" + "".join(body) + "</table>"


def reader_table(summary: dict) -> str:
    head = ["condition", "reader", "n", "accuracy", "sensitivity", "specificity", "AUC", "κ with model",
            "median RT (s)"]
    body = [_row(head, "th")]
    for n, c in summary["conditions"].items():
        for rd, s in c["per_reader"].items():
            body.append(_row([n, rd, str(s["n"]), fmt(s["accuracy"], True), fmt(s["sensitivity"], True),
                              fmt(s["specificity"], True), fmt(s["auc"]), fmt(s["kappa_model"]),
                              fmt(s["rt_median_s"])]))
    return "<table>" + "".join(body) + "</table>"


def questionnaire_table(summary: dict) -> str:
    q = summary["questionnaires"]
    if not q:
        return "<p>No questionnaire answers in the logs.</p>"
    body = [_row(["form", "condition", "n", "mean score", "sd"], "th")]
    for form, per in q.items():
        for cond, s in per.items():
            body.append(_row([form, cond, str(s["n"]), f"{s['mean']:.1f}", fmt(s["sd"])]))
    return "<table>" + "".join(body) + "</table>"


CSS = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse;"
       "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}th{background:#f3f3f3}"
       "img{max-width:100%;margin:0.5em 0}.note{color:#555;font-size:90%}")


def write_html(summary: dict, plots: Sequence[Path], out: Path) -> Path:
    missing = ", ".join(f"{k} {v}" for k, v in summary["missing"].items())
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(summary['study'])}</title>",
             f"<style>{CSS}</style><h1>Reader study {html.escape(summary['study'])}</h1>",
             f"<p>{summary['answered']} of {summary['planned']} planned readings answered (unanswered by condition: "
             f"{html.escape(missing)}); positive class <b>{html.escape(summary['positive'])}</b>. Research use only."
             "</p>", "<h2>By condition (pooled over readers)</h2>", condition_table(summary),
             f"<p class='note'>Pooled: the mean of the readers' figures. [95 % CI]: two-way bootstrap over readers "
             f"and cases ({summary['bootstrap']} resamples). Differences: each condition minus the reference "
             f"condition ({html.escape(summary['reference'])}).</p>",
             "<h2>By reader</h2>", reader_table(summary),
             "<p class='note'>[95 % CI]: Wilson intervals. κ with model: over calls on frames where the model made "
             "a prediction.</p>", "<h2>Questionnaires</h2>", questionnaire_table(summary), "<h2>Plots</h2>"]
    parts += [f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>" for p in plots]
    parts.append("<p class='note'>Tables: readings.csv / readings.parquet, questionnaires.csv, summary.json; MRMC "
                 "input: study.imrmc (iMRMC, RJafroc).</p>")
    path = out / "report.html"
    write_text_atomic(path, "\n".join(parts) + "\n", "report page")
    return path


__all__ = ["plot_accuracy", "plot_roc", "plot_rt", "roc_points", "write_html"]
