"""``sonolens study plan | report | export``: the reader-study tools that need no display (``study run``, the
participant's screen, is the viewer's: ``app.study_run``, dispatched by ``sonolens.cli``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable, refuse_inputs_as_outputs, write_text_atomic

from . import export
from .plan import balance_rows, check_balance, format_table, make_plan
from .protocol import load_protocol
from .worklist import write_plan


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens study", description="Reader studies: plan, run, report, export.")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_plan(sub)
    _add_report(sub)
    export.add_parser(sub)
    return p


def _add_report(sub) -> None:
    r = sub.add_parser("report", help="tables, statistics, plots, HTML and the iMRMC file of a study",
                       description="Join a plan with the logs of 'sonolens study run': the tidy table of readings "
                                   "(CSV and Parquet), accuracy, sensitivity, specificity and AUC per condition, per "
                                   "reader and pooled with confidence intervals, kappa with the model and between "
                                   "readers, reaction times, questionnaire scores, plots, report.html and an iMRMC "
                                   "input file. Needs the 'study' extra.")
    r.add_argument("plan", metavar="PLAN", help="the folder 'sonolens study plan' wrote")
    r.add_argument("logs", metavar="LOGS", help="a folder holding the session logs (searched recursively)")
    r.add_argument("--out", required=True, metavar="REPORT", help="folder for the report (made if missing)")
    r.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    r.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from .imrmc import write_imrmc
    from .readings import collect, find_logs
    from .report import summarise, write_tables
    from .report_html import plot_accuracy, plot_roc, plot_rt, write_html
    from .worklist import load_plan

    if args.bootstrap < 100:
        raise ConfigError(f"--bootstrap must be at least 100 resamples, got {args.bootstrap}")
    out = _report_folder(args)
    plan = load_plan(args.plan)
    logs = find_logs(Path(args.logs))
    if not logs:
        raise ConfigError(f"no study logs (*.jsonl) under {args.logs}")
    data = collect(plan, logs)
    for line in data.logs_ignored:
        print(f"sonolens: warning: ignored {line}", file=sys.stderr)
    summary = summarise(plan, data, args.bootstrap)
    files = write_tables(data, out)
    done = [r for r in data.rows if r["answered"]]
    try:
        im = write_imrmc(out / "study.imrmc", done, positive=plan["positive"],
                         description=f"sonolens reader study {plan['study']}: confidence ratings")
        summary["imrmc"] = {"file": "study.imrmc", "skipped_no_score": im.skipped_no_score}
    except ConfigError as exc:  # e.g. no answered reading yet, or no positive case answered: the rest still stands
        summary["imrmc"] = {"file": None, "error": str(exc)}
        print(f"sonolens: warning: no iMRMC file: {exc}", file=sys.stderr)
    plots = [plot_accuracy(summary, out), plot_roc(done, summary, out), plot_rt(done, summary, out)]
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1), "report summary")
    page = write_html(summary, plots, out)
    print(format_summary(summary))
    written = len(files) + len(plots) + 2 + (summary["imrmc"]["file"] is not None)  # + summary.json, report.html
    print(f"wrote {written} files to {out} (open {page})")
    return 0


def _report_folder(args: argparse.Namespace) -> Path:
    """The report folder: made if missing, writable, and neither the plan's nor the logs' folder."""
    out = Path(args.out)
    for other, what in ((args.plan, "plan"), (args.logs, "logs")):
        if out.resolve() == Path(other).resolve():
            raise ConfigError(f"--out {out} is the {what} folder: the report would write over its files; "
                              "give another folder")
    check_writable(out / "report.html", "report")
    return out


def format_summary(summary: dict) -> str:
    """The console lines of a report: per condition, pooled figures with their intervals."""
    from .report_html import fmt

    lines = [f"{summary['study']}: {summary['answered']} of {summary['planned']} planned readings answered"]
    for n, c in summary["conditions"].items():
        p = c["pooled"]
        lines.append(f"  {n}: accuracy {fmt(p['accuracy'], True)}, sensitivity {fmt(p['sensitivity'], True)}, "
                     f"specificity {fmt(p['specificity'], True)}, AUC {fmt(p['auc'])} "
                     f"({c['readers']} readers, {c['cases']} cases)")
    for d in summary["differences"]:
        lines.append(f"  {d['a']} − {d['b']}: accuracy {fmt(d['accuracy'], True)}, AUC {fmt(d['auc'])}")
    return "\n".join(lines)


def _add_plan(sub) -> None:
    pl = sub.add_parser("plan", help="counterbalanced worklists, one per reader and session, from a protocol file",
                        description="Plan a reader study: every reader reads every case once per condition; the "
                                    "cases in one block per condition, read under a Latin square of blocks, sessions "
                                    "and readers; case order shuffled from the seed. Prints the balance table.")
    pl.add_argument("protocol", metavar="PROTOCOL", help="the study's protocol file (YAML)")
    pl.add_argument("--out", required=True, metavar="PLAN", help="a new folder for the plan and the worklists")
    pl.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    refuse_inputs_as_outputs({"--out folder": args.out}, {"protocol": args.protocol})
    protocol = load_protocol(args.protocol)
    readings = make_plan(protocol)
    check_balance(protocol, readings)
    files = write_plan(protocol, readings, Path(args.out))
    print(f"{protocol.study}: {len(protocol.readers)} readers × {len(protocol.cases)} cases × "
          f"{len(protocol.conditions)} conditions ({protocol.design}), {protocol.sessions} sessions "
          f"{protocol.washout_days:g} days apart: {len(readings)} readings")
    print(format_table(balance_rows(protocol, readings)))
    worklists = [f for f in files if f.suffix == ".yaml" and f.name != "protocol.yaml"]
    print(f"wrote {len(worklists)} worklists and the plan to {args.out}; a reader's session: "
          f"sonolens study run {worklists[0]}")
    return 0


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
