"""``sonolens study export LOG [LOG ...] [--out CSV]``: a study log (or several) as one CSV, plus a summary.

No Qt here (only ``app.study``'s reader), so logs can be analysed on any machine.

The CSV has one row per displayed frame and one per event, in log order, with the session's participant and
condition on every row. For each clinician ``call`` it adds whether the call agreed with the model's top class at
that moment (``agree``; empty when no model ran), the time since the previous call (or since the first displayed
frame for the first call) ``rt_prev_s``, the time since the called frame first appeared ``rt_frame_s`` (for a
slideshow of stills: the reading time of that image), and with ``--onsets`` the time since the latest lesion
onset ``rt_onset_s``.

The summary (printed; ``--summary`` writes it as JSON) gives per log: frames shown, calls, agreement with the
model (fraction and Cohen's kappa), reaction times, flags, freezes, and capture→pixels latency when measured.
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

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .study import StudyRecords, read_log

CSV_BASE = ("participant", "condition", "log", "record", "kind", "t_s", "wall_time", "frame_index", "pts_s",
            "shown", "top_class", "top_label", "label", "class_index", "model_top", "model_label", "agree",
            "rt_prev_s", "rt_frame_s", "rt_onset_s", "capture_to_result_ms", "capture_to_pixels_ms")


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


def analyse(recs: StudyRecords, onsets: Sequence[int] = ()) -> tuple[list[dict], dict]:
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
    prev_call_t = t_first
    kinds = Counter()
    for kind, r in merged:
        row = {k: "" for k in CSV_BASE}
        row.update(participant=h.get("participant", ""), condition=h.get("condition", ""), log=recs.path.name,
                   record=kind, t_s=r.get("t_s"), wall_time=r.get("wall_time"))
        if kind == "frame":
            probs = r.get("probs") or []
            top = r.get("top_class")
            row.update(frame_index=r.get("index"), pts_s=r.get("pts_s"), shown=int(bool(r.get("shown"))),
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
                row.update(label=r.get("label"), class_index=r.get("class_index"), model_top=r.get("model_top"),
                           model_label=r.get("model_label"))
                calls.append(_norm(r.get("label")))
                ml = _norm(r.get("model_label"))
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
    span = (max(first_shown.values()) - t_first) if first_shown else 0.0

    def stats(v: list[float]) -> dict | None:
        return None if not v else {"n": len(v), "mean": float(np.mean(v)), "median": float(np.median(v))}

    summary = {
        "log": str(recs.path), "participant": h.get("participant"), "condition": h.get("condition"),
        "source": h.get("source"), "complete": recs.complete, "torn_last_line": recs.torn_last_line,
        "frames_displayed": len(recs.frames),
        "frames_predictions_shown": sum(bool(f.get("shown")) for f in recs.frames),
        "duration_s": span, "calls": len(calls), "calls_by_label": dict(Counter(c for c in calls if c)),
        "calls_with_model": len(pairs),
        "agreement": (sum(agrees) / len(agrees)) if agrees else None,
        "cohen_kappa": (lambda k: None if math.isnan(k) else k)(cohen_kappa([c for c, _ in pairs],
                                                                          [m for _, m in pairs])) if pairs else None,
        "rt_prev_s": stats(rt_prev), "rt_frame_s": stats(rt_frame), "rt_onset_s": stats(rt_onset),
        "flags": kinds.get("flag", 0), "freezes": kinds.get("freeze", 0),
        "capture_to_pixels_ms": None if not c2p else {"n": len(c2p), "p50": float(np.percentile(c2p, 50)),
                                                      "p95": float(np.percentile(c2p, 95))},
    }
    return rows, summary


def export(logs: Sequence[str | Path], out_csv: str | Path, onsets: Sequence[int] = ()) -> list[dict]:
    """Write the CSV of every log; return one summary per log."""
    all_rows, summaries, prob_cols = [], [], []
    for log_path in logs:
        rows, summary = analyse(read_log(log_path), onsets)
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
    lines = [
        f"{s['participant']} [{s['condition']}] {Path(s['log']).name}: {s['frames_displayed']} frames shown "
        f"over {s['duration_s']:.1f} s{'' if s['complete'] else ' (incomplete: no end record)'}",
        f"  calls {s['calls']}" + (f" {s['calls_by_label']}" if s["calls_by_label"] else "")
        + f"; agreement with model {num(s['agreement'], '{:.0%}')} "
        f"(n={s['calls_with_model']}), Cohen's kappa {num(s['cohen_kappa'])}",
        "  reaction time from previous call: " + ("n/a" if not rt else f"median {rt['median']:.2f} s")
        + ("" if not s["rt_onset_s"] else f"; from lesion onset: median {s['rt_onset_s']['median']:.2f} s"),
        f"  flags {s['flags']}, freezes {s['freezes']}",
    ]
    if s["capture_to_pixels_ms"]:
        c = s["capture_to_pixels_ms"]
        lines.append(f"  capture->pixels p50 {c['p50']:.1f} ms, p95 {c['p95']:.1f} ms (n={c['n']})")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens study", description="Reader-study log tools.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write a CSV of frames and events and print a summary",
                       description="Export study logs to CSV and summarise agreement, reaction times, flags.")
    e.add_argument("logs", nargs="+", metavar="LOG", help="study log(s) written by 'sonolens view --study'")
    e.add_argument("--out", default=None, metavar="CSV", help="CSV to write (default: LOG with .csv)")
    e.add_argument("--summary", default=None, metavar="JSON", help="also write the summary as JSON")
    e.add_argument("--onsets", default=None,
                   help="where lesions appear, for reaction time from onset: frame indices (27,132) or source "
                        "seconds (0.9s,4.4s), inline or in a file")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    out = args.out or str(Path(args.logs[0]).with_suffix(".csv"))
    summaries = export(args.logs, out, parse_onsets(args.onsets))
    for s in summaries:
        print(format_summary(s))
    print(f"wrote {out}")
    if args.summary:
        Path(args.summary).write_text(json.dumps(summaries, indent=2))
        print(f"wrote {args.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
