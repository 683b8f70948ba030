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
excluded, reaction times, flags, freezes, capture→pixels latency when measured, and ``skipped_records``.

Damaged or foreign logs never end in a traceback. Besides torn lines, the reader (``study.log.read_sessions``) reads
CRLF line endings and skips lines that are not UTF-8, JSON values that are not objects, and records of a type it
does not know (a newer sonolens's; unknown fields are ignored). A record that lacks what a computation needs — a
frame without ``index`` or ``t_s`` (no first-shown time), a ``top_class`` that is not a class, ``probs`` that are
not a list, an event without ``kind``, a call without ``label`` (no answer), ``t_s`` (no reaction times) or
``frame_index`` (``null`` is no fault: no frame was on screen) — keeps its CSV row with what it has (a numeric cell
that holds no number is empty) and is left out of that computation. Both are counted by reason in
``skipped_records`` (a record lacking two things counts under both), printed in the summary and warned about on
stderr. A header without ``class_names`` gives numbered probability columns (``p_0``, ``p_1`` …).

Outputs: ``--out`` and ``--summary`` are checked before any log is read — a missing folder, a folder that is a
file, a read-only one are one-line errors. Both are written through a temporary file in the same folder and a
rename, so a failure half-way (a full disk) leaves the earlier file in place, never a truncated one.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError, SonolensError, reason
from sonolens.pipeline.outputs import check_writable, refuse_inputs_as_outputs, strict_json, write_text_atomic

from .analysis import cohen_kappa as kappa
from .log import StudyRecords, read_sessions

CSV_BASE = ("participant", "condition", "log", "session", "record", "kind", "t_s", "wall_time", "frame_index",
            "pts_s", "shown", "state", "ood_score", "no_image", "top_class", "top_label", "label", "class_index",
            "model_top", "model_label", "model_state", "agree", "rt_prev_s", "rt_frame_s", "rt_onset_s",
            "capture_to_result_ms", "capture_to_pixels_ms")
# Why a record was left out of a computation (``skipped_records``, beside the reader's ``study.log.SKIP_*``)
SKIP_FRAME_INDEX = "frame without index"  # no first-shown time: no reaction time from it, no onset at it
SKIP_FRAME_T = "frame without t_s"  # no first-shown time, not in the duration
SKIP_TOP_CLASS = "frame with a bad top_class"  # not an integer, or not a class: no top_label
SKIP_PROBS = "frame with probs not a list"  # no p_ columns
SKIP_STATE = "frame with a state not text"  # no state
SKIP_EVENT_KIND = "event without kind"  # not a call, flag or freeze
SKIP_CALL_LABEL = "call without label"  # no answer: not in calls, agreement, kappa or reaction times
SKIP_CALL_T = "call without t_s"  # no reaction times
SKIP_CALL_FRAME = "call without frame_index"  # no reaction time from the called frame (null: none was on screen)
EXCLUSION_NOTE = ("calls on frames without a prediction (outside the model's domain, no image) are excluded from "
                  "agreement and kappa and counted separately")


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa between two raters' labels (``analysis.cohen_kappa``); NaN where that is undefined."""
    if len(a) != len(b):
        raise ValueError("kappa needs two label lists of the same length")
    k = kappa(a, b)
    return float("nan") if k is None else k


def _norm(label: str | None) -> str | None:
    return None if label is None else str(label).strip().lower()


def parse_onsets(text: str | None) -> list[int | float]:
    """Where lesions appear: frame indices (``27,132``) and/or source times in seconds (``0.9s,4.4s``), given
    inline or in a file (one per line or comma-separated). Seconds come back as floats, indices as ints."""
    if not text:
        return []
    p = Path(text)
    try:
        raw = p.read_text(encoding="utf-8") if p.is_file() else text
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read --onsets file {p}: {reason(exc)}") from None
    out: list[int | float] = []
    try:
        for v in raw.replace("\n", ",").split(","):
            v = v.strip()
            if v:
                out.append(float(v[:-1]) if v.lower().endswith("s") else int(v))
    except ValueError:
        raise ConfigError(f"--onsets must be frame indices (27,132) or seconds (0.9s,4.4s), got {text!r}") from None
    return out


def _num(v: Any) -> int | float | None:
    """``v`` when it is a finite number (not a bool), else None: what a record's numeric field holds, if usable."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v if math.isfinite(v) else None


def _int(v: Any) -> int | None:
    """``v`` as an int when it is an integer (or an integral float), else None."""
    n = _num(v)
    return None if n is None or n != int(n) else int(n)


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _label(v: Any) -> str | None:
    """A label, normalised for comparison; None when missing, empty or not text."""
    text = _norm(str(v)) if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    return text or None


def _class_names(header: dict) -> list[str]:
    names = header.get("class_names")
    return [str(n) for n in names] if isinstance(names, list) else []


def _onset_frames(onsets: Sequence[int | float], frames: list[dict]) -> list[int]:
    """Onsets as frame indices: a time in seconds becomes the first displayed frame at or after it (source pts)."""
    out = []
    for o in onsets:
        if isinstance(o, float):
            later = [i for f in frames if (i := _int(f.get("index"))) is not None
                     and (pts := _num(f.get("pts_s"))) is not None and pts >= o - 1e-6]
            if later:
                out.append(min(later))
        else:
            out.append(int(o))
    return sorted(out)


def _first_shown(frames: list[dict], skipped: Counter[str]) -> dict[int, float]:
    """When each frame index was first displayed (``t_s``); frames without an index or a time are left out."""
    first: dict[int, float] = {}
    for f in frames:
        i, t = _int(f.get("index")), _num(f.get("t_s"))
        if i is None:
            skipped[SKIP_FRAME_INDEX] += 1
        if t is None:
            skipped[SKIP_FRAME_T] += 1
        if i is not None and t is not None:
            first.setdefault(i, float(t))
    return first


def _onset_times(onset_frames: list[int], first_shown: dict[int, float]) -> list[tuple[float, int]]:
    """(time, frame) of each lesion onset: when its frame was first displayed, or, for an onset frame that was never
    displayed (dropped), the first displayed frame after it."""
    times = sorted((first_shown[i], i) for i in onset_frames if i in first_shown)
    for i in onset_frames:
        if i not in first_shown:
            later = [t for j, t in first_shown.items() if j >= i]
            if later:
                times.append((min(later), i))
    return sorted(times)


def _in_time_order(recs: StudyRecords) -> list[tuple[str, dict]]:
    """Frames and events by ``t_s``; a record without a usable ``t_s`` keeps its place after the record before it."""
    keyed: list[tuple[float, str, dict]] = []
    for kind, records in (("frame", recs.frames), ("event", recs.events)):
        last = 0.0
        for r in records:
            t = _num(r.get("t_s"))
            last = last if t is None else float(t)
            keyed.append((last, kind, r))
    keyed.sort(key=lambda x: x[0])  # stable: log order among equal times
    return [(kind, r) for _, kind, r in keyed]


@dataclass
class _Tally:
    """What ``analyse`` accumulates over a session's calls and events."""

    first_shown: dict[int, float]
    onset_times: list[tuple[float, int]]
    prev_call_t: float | None
    calls: list[str] = field(default_factory=list)
    model_tops: list[str | None] = field(default_factory=list)
    agrees: list[bool] = field(default_factory=list)
    rt_prev: list[float] = field(default_factory=list)
    rt_frame: list[float] = field(default_factory=list)
    rt_onset: list[float] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)  # calls on frames without a prediction, by state
    kinds: Counter[str] = field(default_factory=Counter)


def analyse(recs: StudyRecords, onsets: Sequence[int | float] = ()) -> tuple[list[dict], dict]:
    """CSV rows and the summary of one session. A record that lacks what a computation needs (a frame without
    ``t_s`` has no first-shown time, a call without ``label`` is no answer) is left out of that computation, keeps
    its row with what it has, and is counted by reason in the summary's ``skipped_records`` (with the lines the
    reader skipped: ``StudyRecords.skipped``)."""
    skipped: Counter[str] = Counter(recs.skipped)
    classes = _class_names(recs.header)
    first_shown = _first_shown(recs.frames, skipped)
    t_first = min(first_shown.values()) if first_shown else None
    tally = _Tally(first_shown, _onset_times(_onset_frames(onsets, recs.frames), first_shown), t_first)
    rows: list[dict] = []
    for kind, r in _in_time_order(recs):
        row = _base_row(recs, kind, r)
        if kind == "frame":
            _frame_row(row, r, classes, skipped)
        else:
            _event_row(row, r, tally, skipped)
        rows.append(row)
    return rows, _summary(recs, tally, skipped)


def _base_row(recs: StudyRecords, kind: str, r: dict) -> dict[str, Any]:
    row: dict[str, Any] = {k: "" for k in CSV_BASE}
    h = recs.header
    row.update(participant=h.get("participant", ""), condition=h.get("condition", ""), log=recs.path.name,
               session=recs.session, record=kind, t_s=_num(r.get("t_s")), wall_time=_num(r.get("wall_time")))
    return row


def _frame_row(row: dict[str, Any], r: dict, classes: list[str], skipped: Counter[str]) -> None:
    top, top_label = r.get("top_class"), ""
    if top is not None:
        top = _int(top)
        if top is not None and 0 <= top < len(classes):
            top_label = classes[top]
        elif top is None or classes:  # without class names a top class cannot be checked
            skipped[SKIP_TOP_CLASS] += 1
    if _text(r.get("state")) is None and r.get("state") is not None:
        skipped[SKIP_STATE] += 1
    row.update(frame_index=_int(r.get("index")), pts_s=_num(r.get("pts_s")), shown=int(bool(r.get("shown"))),
               state=_frame_state(r), ood_score=_num(r.get("ood_score")), no_image=_text(r.get("no_image")),
               top_class=top, top_label=top_label, capture_to_result_ms=_num(r.get("capture_to_result_ms")),
               capture_to_pixels_ms=_num(r.get("capture_to_pixels_ms")))
    probs = r.get("probs")
    if probs is None:
        return
    if not isinstance(probs, list):
        skipped[SKIP_PROBS] += 1
        return
    names = classes or [str(i) for i in range(len(probs))]  # a header without class names: p_0, p_1, …
    for name, p in zip(names, probs):
        row[f"p_{name}"] = _num(p)


def _event_row(row: dict[str, Any], r: dict, tally: _Tally, skipped: Counter[str]) -> None:
    ek = _text(r.get("kind"))
    if ek is None:
        skipped[SKIP_EVENT_KIND] += 1
        ek = ""
    tally.kinds[ek] += 1
    row.update(kind=ek, frame_index=_int(r.get("frame_index")))
    if ek == "call":
        _call_row(row, r, tally, skipped)


def _call_row(row: dict[str, Any], r: dict, tally: _Tally, skipped: Counter[str]) -> None:
    """A clinician's call: agreement with the model (on frames with a prediction) and reaction times."""
    label, ml = _label(r.get("label")), _label(r.get("model_label"))
    state = _text(r.get("model_state")) or ("ok" if ml is not None else None)  # older logs: no state, ok
    row.update(label=_text(r.get("label")), class_index=_int(r.get("class_index")), model_top=_int(r.get("model_top")),
               model_label=_text(r.get("model_label")), model_state=state)
    if label is None:  # no answer: not a call of agreement, kappa or reaction times
        skipped[SKIP_CALL_LABEL] += 1
        return
    tally.calls.append(label)
    if ml is not None and state != "ok":  # the model showed no prediction: nothing to agree with
        tally.excluded[state or ""] += 1
        ml = None
    tally.model_tops.append(ml)
    if ml is not None:
        agree = label == ml
        tally.agrees.append(agree)
        row["agree"] = int(agree)
    t = _num(r.get("t_s"))
    if t is None:
        skipped[SKIP_CALL_T] += 1
        return
    _reaction_times(row, r, float(t), tally, skipped)


def _reaction_times(row: dict[str, Any], r: dict, t: float, tally: _Tally, skipped: Counter[str]) -> None:
    if tally.prev_call_t is not None:
        row["rt_prev_s"] = t - tally.prev_call_t
        tally.rt_prev.append(row["rt_prev_s"])
    tally.prev_call_t = t
    fi = _int(r.get("frame_index"))
    if fi is None and ("frame_index" not in r or r["frame_index"] is not None):  # null: no frame was on screen
        skipped[SKIP_CALL_FRAME] += 1
    if fi is not None and fi in tally.first_shown:
        row["rt_frame_s"] = t - tally.first_shown[fi]
        tally.rt_frame.append(row["rt_frame_s"])
    before = [ot for ot, _ in tally.onset_times if ot <= t]
    if before:
        row["rt_onset_s"] = t - before[-1]
        tally.rt_onset.append(row["rt_onset_s"])


def _stats(v: list[float]) -> dict | None:
    return None if not v else {"n": len(v), "mean": float(np.mean(v)), "median": float(np.median(v))}


def _summary(recs: StudyRecords, tally: _Tally, skipped: Counter[str]) -> dict:
    h, end = recs.header, (recs.end or {})
    pairs = [(c, m) for c, m in zip(tally.calls, tally.model_tops) if m is not None]
    c2p = [v for f in recs.frames if (v := _num(f.get("capture_to_pixels_ms"))) is not None]
    shown = tally.first_shown.values()
    return {
        "log": str(recs.path), "session": recs.session, "sessions_in_log": recs.sessions_in_file,
        "participant": h.get("participant"), "condition": h.get("condition"),
        "source": h.get("source"), "complete": recs.complete, "torn_last_line": recs.torn_last_line,
        "torn_lines": list(recs.torn_lines), "log_error": end.get("error"),
        "interrupted_by": end.get("interrupted_by"),
        "frames_displayed": len(recs.frames),
        "frames_predictions_shown": sum(bool(f.get("shown")) for f in recs.frames),
        "frames_by_state": dict(Counter(st for f in recs.frames if (st := _frame_state(f)) is not None)),
        "duration_s": (max(shown) - min(shown)) if shown else 0.0,
        "calls": len(tally.calls), "calls_by_label": dict(Counter(tally.calls)),
        "calls_with_model": len(pairs),
        "calls_without_prediction": dict(tally.excluded),
        "agreement_rule": EXCLUSION_NOTE,
        "agreement": (sum(tally.agrees) / len(tally.agrees)) if tally.agrees else None,
        "cohen_kappa": kappa([str(c) for c, _ in pairs], [str(m) for _, m in pairs]),
        "rt_prev_s": _stats(tally.rt_prev), "rt_frame_s": _stats(tally.rt_frame), "rt_onset_s": _stats(tally.rt_onset),
        "flags": tally.kinds.get("flag", 0), "freezes": tally.kinds.get("freeze", 0),
        "capture_to_pixels_ms": None if not c2p else {"n": len(c2p), "p50": float(np.percentile(c2p, 50)),
                                                      "p95": float(np.percentile(c2p, 95))},
        "skipped_records": dict(skipped),
    }


def _frame_state(f: dict) -> str | None:
    """A frame record's state; older logs have none: ``ok`` when the model ran, None without a model (or with a
    state that is not text)."""
    state = f.get("state")
    if state is None or state == "":
        return "ok" if f.get("probs") is not None else None
    return _text(state)


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
        if not isinstance(s.header.get("class_names"), list):
            out.append(f"{_where(s.path.name, s.session, s.sessions_in_file)}: the header has no class_names: "
                       "probability columns are numbered (p_0, p_1 …) and top_label is empty")
    return out


def skipped_warning(summary: dict) -> str | None:
    """One line on the records of a session that were skipped or left out of a computation, or None."""
    skipped = summary.get("skipped_records") or {}
    if not skipped:
        return None
    where = _where(Path(summary["log"]).name, summary["session"], summary.get("sessions_in_log", 1))
    return f"{where}: {_skipped_text(skipped)} (the summary's skipped_records)"


def _skipped_text(skipped: dict[str, int]) -> str:
    return "records skipped or incomplete: " + ", ".join(f"{k} {v}" for k, v in skipped.items())


def _where(name: str, session: int, sessions: int) -> str:
    return name + (f" (session {session} of {sessions})" if sessions > 1 else "")


def export(logs: Sequence[str | Path], out_csv: str | Path, onsets: Sequence[int | float] = (),
           warnings: list[str] | None = None) -> list[dict]:
    """Write the CSV of every session of every log (atomically: ``write_csv``); return one summary per session.
    ``warnings`` collects what ``log_warnings`` and ``skipped_warning`` say about each file and session."""
    out = Path(out_csv)
    _check_folder(out, "CSV")
    all_rows, summaries, prob_cols = [], [], []
    for log_path in logs:
        sessions = read_sessions(log_path)
        if warnings is not None:
            warnings += log_warnings(sessions)
        for recs in sessions:
            rows, summary = analyse(recs, onsets)
            all_rows += rows
            summaries.append(summary)
            if warnings is not None and (w := skipped_warning(summary)):
                warnings.append(w)
            for r in rows:
                prob_cols += [k for k in r if k.startswith("p_") and k not in prob_cols]
    write_csv(out, list(CSV_BASE) + prob_cols, all_rows)
    return summaries


def _check_folder(path: Path, what: str) -> None:
    """A one-line ConfigError when the folder of an output does not exist (the export makes no folders)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ConfigError(f"cannot write the {what} to {path}: output folder does not exist: {parent}")
    if not parent.is_dir():
        raise ConfigError(f"cannot write the {what} to {path}: {parent} is a file, not a folder")


def write_csv(out: str | Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    """Write the rows to a temporary file beside ``out`` and rename it over ``out``, so a failure half-way (a full
    disk) leaves the earlier CSV, never a truncated one. A link is followed (its target is replaced); a device or
    a pipe (``/dev/stdout``) is written directly. OSError: one-line ConfigError."""
    out = Path(out)
    direct = out.exists() and not out.is_file()  # (through links) a device or a pipe: no file to replace
    target = out.resolve() if out.is_symlink() and not direct else out
    tmp = target if direct else target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
            if not direct:
                f.flush()
                os.fsync(f.fileno())
        if not direct:
            os.replace(tmp, target)
    except OSError as exc:
        if not direct:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        raise ConfigError(f"cannot write the CSV to {out}: {reason(exc)}") from None


def format_summary(s: dict) -> str:
    def num(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    rt = s["rt_prev_s"]
    where = _where(Path(s["log"]).name, s["session"], s.get("sessions_in_log", 1))
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
    if s.get("skipped_records"):
        lines.append(f"  {_skipped_text(s['skipped_records'])}")
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
    """``sonolens study export``: the outputs are checked (folder exists, writable) before any log is read."""
    out = args.out or str(Path(args.logs[0]).with_suffix(".csv"))
    refuse_inputs_as_outputs({"CSV": out, "summary": args.summary},
                             {f"log {log}": log for log in args.logs})  # a log named *.csv is its own default
    for what, path in (("CSV", out), ("summary", args.summary)):
        if path:
            _check_folder(Path(path), what)
            check_writable(path, what)
    onsets = parse_onsets(args.onsets)
    warnings: list[str] = []
    summaries = export(args.logs, out, onsets, warnings)
    for w in warnings:
        print(f"sonolens: warning: {w}", file=sys.stderr)
    for s in summaries:
        print(format_summary(s))
    print(f"(agreement and kappa: {EXCLUSION_NOTE})")
    print(f"wrote {out}")
    if args.summary:
        try:
            write_text_atomic(args.summary, strict_json(summaries), "summary")
        except SonolensError as exc:
            raise ConfigError(str(exc)) from None
        print(f"wrote {args.summary}")
    return 0
