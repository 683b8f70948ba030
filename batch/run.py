"""``sonolens batch`` once planned: run what is left on the cluster, then assemble the table, the metrics (with labels)
and the summary from every complete result — this run's and earlier runs' — and say what happened."""

from __future__ import annotations

import sys
import time
from typing import Any

from sonolens.pipeline.errors import SonolensError
from sonolens.pipeline.shutdown import ShutdownSignals

from .cluster import Outcome, run_on_cluster
from .metrics import ALL, metrics_table
from .plan import Plan, say
from .progress import Progress
from .summary import write_summary
from .table import columns, table_rows, write_metrics, write_table


def execute(plan: Plan) -> Outcome:
    """The cluster part: nothing to do starts no cluster."""
    done_before = len(plan.recordings) - len(plan.todo)
    say(plan, f"{len(plan.recordings)} recordings under {plan.root}: {done_before} complete from an earlier run, "
              f"{len(plan.todo)} to process")
    for note in plan.notes:
        say(plan, f"note: {note}")
    if not plan.todo:
        return Outcome()
    where = f"the Dask scheduler at {plan.scheduler}" if plan.scheduler else \
        f"a local Dask cluster of {plan.workers} worker process(es)"
    say(plan, f"starting {where}")

    def ready(client: Any) -> None:
        say(plan, f"cluster ready: {len(client.scheduler_info().get('workers', {}))} worker(s)")

    return run_on_cluster(plan.todo, plan.job, plan.store, plan.plugin, scheduler=plan.scheduler,
                          workers=plan.workers, progress=Progress(len(plan.todo), quiet=plan.quiet), on_ready=ready)


def assemble(plan: Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]:
    """(table rows, metrics rows or None, paths written) from the complete results of this batch's recordings."""
    results = [d for d in (plan.store.complete(r, retry_errors=False) for r in plan.recordings) if d is not None]
    names, positive = plan.job.class_names, plan.job.positive
    rows = table_rows(results, plan.labels, positive, names)
    parquet, table_csv = write_table(plan.out, rows, columns(names, plan.labels is not None))
    written: dict[str, Any] = {"table": [parquet, table_csv]}
    metrics = None
    if plan.labels is not None:
        metrics = metrics_table(rows, positive, names)
        written["metrics"] = write_metrics(plan.out, metrics)
    return rows, metrics, written


def facts(plan: Plan, rows: list[dict[str, Any]], outcome: Outcome, wall_s: float, frames_now: int) -> dict[str, Any]:
    missing = len(plan.recordings) - len(rows)
    rate = f"{frames_now / wall_s:.1f} frames/s" if wall_s > 0 and frames_now else "–"
    return {
        "root": str(plan.root), "recordings": len(plan.recordings), "in the table": len(rows),
        "failed": sum(1 for r in rows if r.get("error")), "not finished": missing,
        "frames (table)": sum(int(r.get("frames") or 0) for r in rows),
        "model": f"{plan.model.path.name} (sha256 {plan.model.sha256[:12]}), classes "
                 f"{', '.join(plan.model.class_names)}; score: mean P({plan.job.positive})",
        "gate": "on" if plan.job.config.gate else "off (--no-gate)",
        "this run": f"{outcome.processed} processed on {outcome.workers or '–'} worker(s) "
                    f"({plan.scheduler or 'local cluster'}), {frames_now} frames in {wall_s:.1f} s ({rate})"
                    + (", interrupted" if outcome.interrupted else ""),
        "labels": plan.labels_from or "none",
    }


def report_lines(plan: Plan, rows: list[dict[str, Any]], metrics: list[dict[str, Any]] | None,
                 written: dict[str, Any], summary: Any, info: dict[str, Any]) -> list[str]:
    lines = [f"batch: {info['in the table']} of {info['recordings']} recordings in the table, {info['failed']} failed, "
             f"{info['not finished']} not finished", f"this run: {info['this run']}",
             f"table: {written['table'][0]}, {written['table'][1]}; summary: {summary}"]
    if metrics:
        m = next(x for x in metrics if x["group"] == ALL)
        auc = f"{m['auc']:.3f}" + (f" [{m['auc_lo']:.3f}, {m['auc_hi']:.3f}]" if m["auc_lo"] is not None else "") \
            if m["auc"] is not None else "–"
        acc = f"{100 * m['accuracy']:.1f} % [{100 * m['accuracy_lo']:.1f}, {100 * m['accuracy_hi']:.1f}]" \
            if m["accuracy"] is not None else "–"
        lines.append(f"labels: AUC {auc}, accuracy {acc} over {m['scored']} recordings; "
                     f"per folder: {written['metrics']}")
    return lines


def run(plan: Plan, signals: ShutdownSignals) -> int:
    t0 = time.perf_counter()
    outcome = execute(plan)
    wall_s = time.perf_counter() - t0
    rows, metrics, written = assemble(plan)
    todo_ids = {r.rel for r in plan.todo}
    frames_now = sum(int(r.get("frames") or 0) for r in rows if r["path"] in todo_ids)
    info = facts(plan, rows, outcome, wall_s, frames_now)
    summary = write_summary(plan.out, rows, info, plan.job.positive, metrics)
    if not plan.quiet:
        print("\n".join(report_lines(plan, rows, metrics, written, summary, info)))
    if outcome.interrupted or signals.received is not None:
        print("sonolens: batch: interrupted; what finished is stored: run the same command again to go on",
              file=sys.stderr)
        return signals.exit_code or 130
    if outcome.lost:
        raise SonolensError(f"the cluster lost {len(outcome.lost)} recording(s) (first: {outcome.lost[0]}); run the "
                            "same command again to process them")
    return 0


__all__ = ["run", "execute", "assemble"]
