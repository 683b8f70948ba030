"""``sonolens study export LOG [LOG ...] [--out CSV]``: study logs as one CSV, plus a summary per session.

No Qt here (only ``study.log``'s reader), so logs can be analysed on any machine.

Sessions: a log holds one session, but logs written before that was enforced may hold several (a second
session appended to an earlier ``--log``). The export splits a file at each header and reports every session
under its own participant and condition; each row of the CSV says its ``session``. Torn lines (a session killed
while writing) are skipped with a warning on stderr.

The CSV has one row per displayed frame and one per event, in log order, with the session's participant and
condition on every row. Frames carry their ``state`` (``ok`` | ``out_of_domain`` | ``no_image``), ``ood_score``
and ``no_image`` reason. For each clinician ``call`` it adds whether the call agreed with the model's top class at
that moment (``agree``), the time since the previous call (or since the first displayed frame for the first call)
``rt_prev_s``, the time since the called frame first appeared ``rt_frame_s`` (for a slideshow of stills: the
reading time of that image), and with ``--onsets`` the time since the latest lesion onset ``rt_onset_s``.

Frames without a prediction: on a frame whose state is not ``ok`` (outside the model's training domain, or no
image) the model made no prediction — the viewer showed the state instead of bars. A call made on such a frame
has nothing to agree with: it is **excluded from agreement and Cohen's kappa** (``agree`` is empty) and counted
separately, by state (``calls_without_prediction``). Calls without a model (condition ``off``) are excluded too.

The summary (printed; ``--summary`` writes it as JSON) gives per session: frames shown (and per state), calls,
agreement with the model (fraction and Cohen's kappa, over calls on frames with a prediction), the calls
excluded, reaction times, flags, freezes, and capture→pixels latency when measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import refuse_inputs_as_outputs

from .log import StudyRecords, read_sessions

CSV_BASE = ("participant", "condition", "log", "session", "record", "kind", "t_s", "wall_time", "frame_index",
            "pts_s", "shown", "state", "ood_score", "no_image", "top_class", "top_label", "label", "class_index",
            "model_top", "model_label", "model_state", "agree", "rt_prev_s", "rt_frame_s", "rt_onset_s",
            "capture_to_result_ms", "capture_to_pixels_ms")
EXCLUSION_NOTE = ("calls on frames without a prediction (outside the model's domain, no image) are excluded from "
                  "agreement and kappa and counted separately")


def _kappa_or_none(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two label lists, or None when there are no pairs or it is undefined (NaN)."""
    if not a:
        return None
    k = cohen_kappa(a, b)
    return None if math.isnan(k) else k


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa between two raters' labels; NaN when undefined (fewer than 1 item or chance agreement 1)."""
    if len(a) != len(b):
        raise ValueError("kappa needs two label lists of the same length")
    n = len(a)
    if n == 0:
        return float("nan")
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if pe >= 1.0:
        return float("nan")
    return (po - pe) / (1.0 - pe)


def _norm(label: str | None) -> str | None:
    return None if label is None else str(label).strip().lower()


def parse_onsets(text: str | None) -> list[int | float]:
    """Where lesions appear: frame indices (``27,132``) and/or source times in seconds (``0.9s,4.4s``), given
    inline or in a file (one per line or comma-separated). Seconds come back as floats, indices as ints."""
    if not text:
        return []
    p = Path(text)
    raw = p.read_text() if p.is_file() else text
    out: list[int | float] = []
    try:
        for v in raw.replace("\n", ",").split(","):
            v = v.strip()
            if v:
                out.append(float(v[:-1]) if v.lower().endswith("s") else int(v))
    except ValueError:
        raise ConfigError(f"--onsets must be frame indices (27,132) or seconds (0.9s,4.4s), got {text!r}") from None
    return out


def _onset_frames(onsets, frames: list[dict]) -> list[int]:
    """Onsets as frame indices: a time in seconds becomes the first displayed frame at or after it (source pts)."""
    out = []
    for o in onsets:
        if isinstance(o, float):
            later = [int(f["index"]) for f in frames if f.get("pts_s") is not None and f["pts_s"] >= o - 1e-6]
            if later:
                out.append(min(later))
        else:
            out.append(int(o))
    return sorted(out)


def analyse(recs: StudyRecords, onsets: Sequence[int | float] = ()) -> tuple[list[dict], dict]:
    """CSV rows and the summary of one log."""
    h = recs.header
    classes = list(h.get("class_names") or [])
    first_shown: dict[int, float] = {}
    for f in recs.frames:
        first_shown.setdefault(int(f["index"]), float(f["t_s"]))
    t_first = min(first_shown.values()) if first_shown else None
    onsets = _onset_frames(onsets, recs.frames)
    onset_times = sorted((first_shown[i], i) for i in onsets if i in first_shown)
    # an onset frame that was never displayed (dropped) counts from the first displayed frame after it
    for i in onsets:
        if i not in first_shown:
            later = [t for j, t in first_shown.items() if j >= i]
            if later:
                onset_times.append((min(later), i))
    onset_times.sort()

    merged = sorted([("frame", r) for r in recs.frames] + [("event", r) for r in recs.events],
                    key=lambda kr: kr[1].get("t_s", 0.0))
    rows: list[dict] = []
    calls, model_tops, agrees, rt_prev, rt_frame, rt_onset = [], [], [], [], [], []
    excluded: Counter = Counter()  # calls on frames without a prediction, by state
    prev_call_t = t_first
    kinds: Counter[str] = Counter()
    for kind, r in merged:
        row: dict[str, Any] = {k: "" for k in CSV_BASE}
        row.update(participant=h.get("participant", ""), condition=h.get("condition", ""), log=recs.path.name,
                   session=recs.session, record=kind, t_s=r.get("t_s"), wall_time=r.get("wall_time"))
        if kind == "frame":
            probs = r.get("probs") or []
            top = r.get("top_class")
            row.update(frame_index=r.get("index"), pts_s=r.get("pts_s"), shown=int(bool(r.get("shown"))),
                       state=_frame_state(r), ood_score=r.get("ood_score"), no_image=r.get("no_image"),
                       top_class=top, top_label=classes[top] if top is not None and 0 <= top < len(classes) else "",
                       capture_to_result_ms=r.get("capture_to_result_ms"),
                       capture_to_pixels_ms=r.get("capture_to_pixels_ms"))
            for name, p in zip(classes, probs):
                row[f"p_{name}"] = p
        else:
            ek = r.get("kind", "")
            kinds[ek] += 1
            row.update(kind=ek, frame_index=r.get("frame_index"))
            if ek == "call":
                t = float(r["t_s"])
                ml = _norm(r.get("model_label"))
                state = r.get("model_state") or ("ok" if ml is not None else None)  # older logs: no state, ok
                row.update(label=r.get("label"), class_index=r.get("class_index"), model_top=r.get("model_top"),
                           model_label=r.get("model_label"), model_state=state)
                calls.append(_norm(r.get("label")))
                if ml is not None and state != "ok":  # the model showed no prediction: nothing to agree with
                    excluded[state] += 1
                    ml = None
                model_tops.append(ml)
                if ml is not None:
                    agree = calls[-1] == ml
                    agrees.append(agree)
                    row["agree"] = int(agree)
                if prev_call_t is not None:
                    row["rt_prev_s"] = t - prev_call_t
                    rt_prev.append(t - prev_call_t)
                prev_call_t = t
                fi = r.get("frame_index")
                if fi is not None and int(fi) in first_shown:
                    row["rt_frame_s"] = t - first_shown[int(fi)]
                    rt_frame.append(row["rt_frame_s"])
                before = [ot for ot, _ in onset_times if ot <= t]
                if before:
                    row["rt_onset_s"] = t - before[-1]
                    rt_onset.append(row["rt_onset_s"])
        rows.append(row)

    pairs = [(c, m) for c, m in zip(calls, model_tops) if m is not None]
    c2p = [f["capture_to_pixels_ms"] for f in recs.frames if f.get("capture_to_pixels_ms") is not None]
    span = (max(first_shown.values()) - t_first) if first_shown and t_first is not None else 0.0

    def stats(v: list[float]) -> dict | None:
        return None if not v else {"n": len(v), "mean": float(np.mean(v)), "median": float(np.median(v))}

    summary = {
        "log": str(recs.path), "session": recs.session, "sessions_in_log": recs.sessions_in_file,
        "participant": h.get("participant"), "condition": h.get("condition"),
        "source": h.get("source"), "complete": recs.complete, "torn_last_line": recs.torn_last_line,
        "torn_lines": list(recs.torn_lines), "log_error": (recs.end or {}).get("error"),
        "interrupted_by": (recs.end or {}).get("interrupted_by"),
        "frames_displayed": len(recs.frames),
        "frames_predictions_shown": sum(bool(f.get("shown")) for f in recs.frames),
        "frames_by_state": dict(Counter(st for f in recs.frames if (st := _frame_state(f)) is not None)),
        "duration_s": span, "calls": len(calls), "calls_by_label": dict(Counter(c for c in calls if c)),
        "calls_with_model": len(pairs),
        "calls_without_prediction": dict(excluded),
        "agreement_rule": EXCLUSION_NOTE,
        "agreement": (sum(agrees) / len(agrees)) if agrees else None,
        "cohen_kappa": _kappa_or_none([str(c) for c, _ in pairs], [str(m) for _, m in pairs]),
        "rt_prev_s": stats(rt_prev), "rt_frame_s": stats(rt_frame), "rt_onset_s": stats(rt_onset),
        "flags": kinds.get("flag", 0), "freezes": kinds.get("freeze", 0),
        "capture_to_pixels_ms": None if not c2p else {"n": len(c2p), "p50": float(np.percentile(c2p, 50)),
                                                      "p95": float(np.percentile(c2p, 95))},
    }
    return rows, summary


def _frame_state(f: dict) -> str | None:
    """A frame record's state; older logs have none: ``ok`` when the model ran, None without a model."""
    return f.get("state") or ("ok" if f.get("probs") is not None else None)


def log_warnings(sessions: Sequence[StudyRecords]) -> list[str]:
    """What the reader of a log must know before trusting its numbers (printed on stderr by the CLI)."""
    out = []
    if len(sessions) > 1:
        who = ", ".join(f"{s.header.get('participant')} [{s.header.get('condition')}]" for s in sessions)
        out.append(f"{sessions[0].path.name} holds {len(sessions)} sessions ({who}), appended to one file by an "
                   "older sonolens; each is reported on its own")
    for s in sessions:
        for line in s.torn_lines:
            out.append(f"{s.path.name}: line {line} is torn (session {s.session} was killed while writing it); "
                       "skipped")
    return out


def export(logs: Sequence[str | Path], out_csv: str | Path, onsets: Sequence[int | float] = (),
           warnings: list[str] | None = None) -> list[dict]:
    """Write the CSV of every session of every log; return one summary per session. ``warnings`` collects what
    ``log_warnings`` says about each file."""
    all_rows, summaries, prob_cols = [], [], []
    for log_path in logs:
        sessions = read_sessions(log_path)
        if warnings is not None:
            warnings += log_warnings(sessions)
        for recs in sessions:
            rows, summary = analyse(recs, onsets)
            all_rows += rows
            summaries.append(summary)
            for r in rows:
                prob_cols += [k for k in r if k.startswith("p_") and k not in prob_cols]
    out = Path(out_csv)
    if not out.resolve().parent.is_dir():
        raise ConfigError(f"output folder does not exist: {out.parent}")
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_BASE) + prob_cols, restval="")
        w.writeheader()
        for r in all_rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return summaries


def format_summary(s: dict) -> str:
    def num(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    rt = s["rt_prev_s"]
    where = Path(s["log"]).name + (f" (session {s['session']} of {s['sessions_in_log']})"
                                   if s.get("sessions_in_log", 1) > 1 else "")
    status = "" if s["complete"] else " (incomplete: no end record)"
    if s.get("log_error"):
        status += f" (log stopped: {s['log_error']})"
    if s.get("interrupted_by"):
        status += f" (ended by {s['interrupted_by']})"
    states = s.get("frames_by_state") or {}
    no_pred = {k: v for k, v in states.items() if k != "ok"}
    excluded = s.get("calls_without_prediction") or {}
    n_ex = sum(excluded.values())
    lines = [
        f"{s['participant']} [{s['condition']}] {where}: {s['frames_displayed']} frames shown "
        f"over {s['duration_s']:.1f} s{status}"
        + ("" if not no_pred else "; without a prediction: " + ", ".join(f"{k} {v}" for k, v in no_pred.items())),
        f"  calls {s['calls']}" + (f" {s['calls_by_label']}" if s["calls_by_label"] else "")
        + f"; agreement with model {num(s['agreement'], '{:.0%}')} "
        f"(n={s['calls_with_model']}), Cohen's kappa {num(s['cohen_kappa'])}",
        f"  {n_ex} call{'' if n_ex == 1 else 's'} on frames without a prediction"
        + (" (" + ", ".join(f"{k} {v}" for k, v in excluded.items()) + ")" if excluded else "")
        + " excluded from agreement and kappa",
        "  reaction time from previous call: " + ("n/a" if not rt else f"median {rt['median']:.2f} s")
        + ("" if not s["rt_onset_s"] else f"; from lesion onset: median {s['rt_onset_s']['median']:.2f} s"),
        f"  flags {s['flags']}, freezes {s['freezes']}",
    ]
    if s["capture_to_pixels_ms"]:
        c = s["capture_to_pixels_ms"]
        lines.append(f"  capture->pixels p50 {c['p50']:.1f} ms, p95 {c['p95']:.1f} ms (n={c['n']})")
    return "\n".join(lines)


def add_parser(sub) -> argparse.ArgumentParser:
    """``study export``'s arguments, as a subcommand of ``sonolens study`` (``study.cli``)."""
    e = sub.add_parser("export", help="write a CSV of frames and events and print a summary",
                       description="Export study logs to CSV and summarise agreement, reaction times, flags. "
                                   "Each session of a log is reported on its own. Agreement and Cohen's kappa count "
                                   "only calls on frames with a prediction: " + EXCLUSION_NOTE + ".")
    e.add_argument("logs", nargs="+", metavar="LOG", help="study log(s) written by 'sonolens view --study'")
    e.add_argument("--out", default=None, metavar="CSV", help="CSV to write (default: LOG with .csv)")
    e.add_argument("--summary", default=None, metavar="JSON", help="also write the summary as JSON")
    e.add_argument("--onsets", default=None,
                   help="where lesions appear, for reaction time from onset: frame indices (27,132) or source "
                        "seconds (0.9s,4.4s), inline or in a file")
    e.set_defaults(func=run_export)
    return e


def run_export(args: argparse.Namespace) -> int:
    out = args.out or str(Path(args.logs[0]).with_suffix(".csv"))
    refuse_inputs_as_outputs({"CSV": out, "summary": args.summary},
                             {f"log {log}": log for log in args.logs})  # a log named *.csv is its own default
    warnings: list[str] = []
    summaries = export(args.logs, out, parse_onsets(args.onsets), warnings)
    for w in warnings:
        print(f"sonolens: warning: {w}", file=sys.stderr)
    for s in summaries:
        print(format_summary(s))
    print(f"(agreement and kappa: {EXCLUSION_NOTE})")
    print(f"wrote {out}")
    if args.summary:
        Path(args.summary).write_text(json.dumps(summaries, indent=2))
        print(f"wrote {args.summary}")
    return 0
