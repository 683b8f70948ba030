"""The batch's summary page: ``OUT/summary.md`` with two plots when matplotlib is installed (the ``study`` extra) —
the distribution of recording scores per label (per folder without labels) and the share of frames per gate state
of every recording — the metrics per folder (with labels) and the failed recordings with their reasons."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens import RESEARCH_NOTICE
from sonolens.pipeline.outputs import write_text_atomic

SUMMARY = "summary.md"
SCORES_PNG = "summary_scores.png"
STATES_PNG = "summary_states.png"
STATE_COLOURS = {"share_ok": ("ok", "#4c9a2a"), "share_out_of_domain": ("out of domain", "#d9a400"),
                 "share_no_image": ("no image", "#9e9e9e")}
MAX_ERRORS_LISTED = 50


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _figure(**kw: Any) -> Any:
    """A matplotlib ``Figure`` (no pyplot: no global state, no GUI backend), imported when a plot is drawn."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def scores_plot(path: Path, rows: Sequence[dict[str, Any]], positive: str, by: str) -> bool:
    """Box and points of the scores per ``by`` (label or folder); False when no recording has a score."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.get("score") is not None and not r.get("error"):
            groups.setdefault(str(r.get(by) or "(none)"), []).append(float(r["score"]))
    if not groups:
        return False
    names = sorted(groups)
    fig = _figure(figsize=(max(4.0, 1.2 * len(names) + 2), 3.6))
    ax = fig.subplots()
    ax.boxplot([groups[n] for n in names], showfliers=False)
    rng = np.random.default_rng(0)
    for i, n in enumerate(names, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(groups[n])), groups[n], s=10, alpha=0.6, color="#1f5fa8")
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={len(groups[n])})" for n in names])
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"score: mean P({positive})")
    ax.set_title(f"Recording scores by {by} (frames the gate let through)")
    _save(fig, path)
    return True


def states_plot(path: Path, rows: Sequence[dict[str, Any]]) -> bool:
    """Stacked bars of the share of frames per state, one bar per recording (sorted by the share shown)."""
    done = sorted((r for r in rows if r.get("frames")), key=lambda r: -(r.get("share_ok") or 0.0))
    if not done:
        return False
    fig = _figure(figsize=(min(12.0, 3 + 0.12 * len(done)), 3.4))
    ax = fig.subplots()
    x, bottom = np.arange(len(done)), np.zeros(len(done))
    for key, (label, colour) in STATE_COLOURS.items():
        share = np.array([r.get(key) or 0.0 for r in done])
        ax.bar(x, share, bottom=bottom, width=1.0 if len(done) > 40 else 0.8, color=colour, label=label)
        bottom += share
    ax.set_xlim(-0.6, len(done) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xticks([] if len(done) > 40 else x, [] if len(done) > 40 else [Path(r["path"]).name for r in done],
                  rotation=90, fontsize=6)
    ax.set_xlabel(f"{len(done)} recordings")
    ax.set_ylabel("share of frames")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Frame states per recording")
    _save(fig, path)
    return True


def plots(out: Path, rows: Sequence[dict[str, Any]], positive: str, by: str) -> tuple[list[str], str | None]:
    """The plots' file names, or a note saying why there are none."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "plots need matplotlib: pip install 'sonolens[study]'"
    made = []
    if scores_plot(out / SCORES_PNG, rows, positive, by):
        made.append(SCORES_PNG)
    if states_plot(out / STATES_PNG, rows):
        made.append(STATES_PNG)
    return made, None


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_lines(metrics: Sequence[dict[str, Any]], positive: str) -> list[str]:
    lines = ["## Labels: AUC and accuracy per folder (95 % CI)", "",
             f"AUC of the score against label = {positive} (DeLong interval); accuracy of the top class against the "
             "label (Wilson interval). Recordings are treated as independent.", "",
             "| folder | recordings | scored | positive | AUC | 95 % CI | accuracy | 95 % CI |",
             "|---|---|---|---|---|---|---|---|"]
    for m in metrics:
        auc_ci = f"{_fmt(m['auc_lo'])}–{_fmt(m['auc_hi'])}" if m["auc_lo"] is not None else "–"
        acc_ci = f"{_fmt(m['accuracy_lo'], True)}–{_fmt(m['accuracy_hi'], True)}" if m["accuracy_lo"] is not None \
            else "–"
        lines.append(f"| {m['group']} | {m['recordings']} | {m['scored']} | {m['positives']} | {_fmt(m['auc'])} | "
                     f"{auc_ci} | {_fmt(m['accuracy'], True)} ({m['accuracy_n']}) | {acc_ci} |")
    return lines + [""]


def error_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    failed = [r for r in rows if r.get("error")]
    if not failed:
        return []
    lines = [f"## Failed recordings ({len(failed)})", "", "| recording | reason |", "|---|---|"]
    lines += [f"| {r['path']} | {str(r['error']).replace('|', '/')} |" for r in failed[:MAX_ERRORS_LISTED]]
    if len(failed) > MAX_ERRORS_LISTED:
        lines.append(f"| … | {len(failed) - MAX_ERRORS_LISTED} more: see the error column of the table |")
    return lines + [""]


def write_summary(out: Path, rows: Sequence[dict[str, Any]], facts: dict[str, Any], positive: str,
                  metrics: Sequence[dict[str, Any]] | None) -> Path:
    """``OUT/summary.md``: ``facts`` (an ordered {what: value} table), plots, metrics and errors."""
    made, note = plots(out, rows, positive, "label" if metrics is not None else "folder")
    lines = [f"# sonolens batch: {facts.get('root', '')}", "", f"*{RESEARCH_NOTICE}*", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    lines.append("")
    lines += [f"![{name}]({name})\n" for name in made] + ([f"({note})", ""] if note else [])
    if metrics is not None:
        lines += metrics_lines(metrics, positive)
    lines += error_lines(rows)
    path = out / SUMMARY
    write_text_atomic(path, "\n".join(lines), "summary")
    return path


__all__ = ["write_summary", "SUMMARY", "SCORES_PNG", "STATES_PNG"]
