"""``BENCHMARKS.md`` and the PNG plots, rendered from the benchmark's JSON report and nothing else.

``render_markdown(report)`` is a pure function of the dict written to ``benchmarks/bench.json``: every number in
the Markdown is formatted from that dict (``fmt``), so the document and the JSON cannot disagree and the
Markdown can be regenerated from a saved JSON at any time.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.contention import CPU_PER_WALL_MIN, NOT_A_RESULT, OTHERS_BUSY_MIN, RUN_DELAY_MAX, SPREAD_MAX
from sonolens.pipeline.messages import STAGES

from .assemble import contended

# How many decimals each headline key is shown with (tests use the same table to find them in the Markdown).
HEADLINE_DIGITS = {
    "teacher_over_student": 1,
    "offline_teacher_over_student": 1,
    "gradcam_over_fused": 1,
    "model_forward_p50_ms": 2,
    "max_rate_fps_moving_cam": 1,
    "realtime_dropped_moving": 0,
    "realtime_capture_to_result_p99_ms_moving": 2,
    "max_rate_fps_sonosite_cam": 1,
    "realtime_dropped_sonosite": 0,
    "realtime_capture_to_result_p99_ms_sonosite": 2,
    "run_peak_rss_mb": 0,
    "soak_rss_growth_mb": 1,
    "soak_dropped": 0,
}
RUN_HEADER = ("mode", "in", "processed", "dropped", "fps processed", "capture→result p50 / p95 / p99 ms",
              "inference p50 ms", "preprocess p50 ms")  # the columns of ``_run_cells``
STAGE_ORDER = STAGES  # the pipeline's one definition (pipeline.messages.STAGES, Timings.stage_ms)


def _moving_section(moving: dict | None) -> list[str]:
    """§3's first table: the headline's moving footage, each run over the whole clip (not looped)."""
    if not moving:
        return []
    src = moving.get("source", {})
    L = [f"### Moving footage: `{moving['clip']}` ({src.get('width')}×{src.get('height')}, "
         f"{fmt(src.get('fps'), 2)} fps, {src.get('frame_count')} frames; made by `{moving['made_by']}`)", "",
         "Every frame differs (the simulated probe moves over fresh speckle), so decoding costs what a live scan "
         "costs; each run covers the whole clip once.", ""]
    rows = [[label] + _run_cells(moving.get(name))
            for name, label in (("max_rate_cam", "--max-rate, CAM on"), ("realtime_cam", "--realtime, CAM on"))]
    return L + _table(list(RUN_HEADER), rows)


def fmt(v: Any, digits: int = 1) -> str:
    """One number as the Markdown shows it; ``—`` for a value that was not measured."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not np.isfinite(v):
            return "—"
        return f"{v:.{digits}f}"
    return str(v)


def fmtx(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{fmt(v, digits)}×"


def _get(d: Any, *path: str | int) -> Any:
    for p in path:
        if d is None:
            return None
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and p < len(d):
            d = d[p]
        else:
            return None
    return d


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _verdict(t: dict[str, Any]) -> str:
    if t.get("contended"):
        return "not a result (contended)"
    if t["pass"] is None:
        return "not counted" if t.get("value") is not None else "not measured"
    return "**pass**" if t["pass"] else "**FAIL**"


def _v(entry: dict[str, Any] | None, value: Any, digits: int = 1) -> str:
    """A figure of ``entry`` as a table cell, or ``contended: not a result`` when the entry was flagged."""
    return NOT_A_RESULT if contended(entry) else fmt(value, digits)


def _ratio_cell(value: float | None, withheld: str | None, digits: int = 1) -> str:
    """A ratio, or ``contended: not a result`` when it was withheld (which figure: the Contention section)."""
    return NOT_A_RESULT if value is None and withheld else fmtx(value, digits)


def _contention_lines(r: dict[str, Any]) -> list[str]:
    """The run's contention summary: what was flagged and why, or that nothing was."""
    flagged = r.get("contended") or []
    rule = (f"Every timed figure carries the CPU record of its process (CPU-seconds per wall-second, the share of "
            f"ready time its threads waited on a run queue, the cores other processes kept busy, the load average "
            f"before and after) and the spread of its repeats. A figure is flagged *{NOT_A_RESULT}* when a "
            f"compute-bound loop got under {CPU_PER_WALL_MIN:g} CPU-s per wall-s, its threads waited on a run "
            f"queue {RUN_DELAY_MAX:.0%} or more of their ready time while other processes kept {OTHERS_BUSY_MIN:g} "
            f"core or more busy, or its repeats spread {SPREAD_MAX:g}× or more (p90 / p10); a ratio built on a "
            f"flagged figure is withheld.")
    short = r.get("not_judged") or []
    if short:
        rule += (f" {len(short)} timed section(s) were too short to judge on their CPU counters: "
                 + ", ".join(short) + ".")
    if not flagged:
        return ["## Contention", "", "None detected: no timed figure of this run is flagged. " + rule, ""]
    L = ["## Contention", "",
         f"**{len(flagged)} figure(s) of this run were measured while other processes competed for the CPU.** They "
         f"are shown as *{NOT_A_RESULT}* below; re-run on a quiet machine for results. {rule}", ""]
    L += [f"- {f['what']}: " + "; ".join(f["reasons"]) + (f" ({f['context']})" if f.get("context") else "")
          for f in flagged]
    return L + [""]


# --------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------
def render_markdown(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    L: list[str] = [
        "# sonolens benchmarks", "",
        "Generated by this exact command; every number below is templated from `benchmarks/bench.json` of the "
        "same run (re-run it to refresh both):", "",
        f"```\n{r['command']}\n```", "",
        f"- **Date:** {r['date']} · mode **{r['mode']}** · took {fmt(r['duration_s'], 0)} s",
        f"- **Machine:** {m['cpu_model']}, {m['logical_cores']} logical cores ({m['usable_cores']} usable), "
        f"{fmt(m['ram_gb'], 1)} GB RAM, SIMD {', '.join(m['simd']) or 'n/a'}; load average "
        f"{fmt(m['loadavg_start'][0], 2)} at the start, {fmt(m['loadavg_end'][0], 2)} at the end",
        "- **Versions:** " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items()),
        f"- **Student:** `{Path(r['student']['path']).name}` — {r['student']['source']}, trained: "
        f"{fmt(r['student']['trained'])}; INT8: `{Path(r['student']['int8_path']).name}` — "
        f"{r['student']['int8_source']}", "",
        "> Research use only — not a diagnostic device. Speeds on a shared or busy machine are pessimistic: "
        "compare the load average above with the core count.", "",
    ]
    if r.get("notes"):
        L += ["**Notes on this run:**", ""] + [f"- {n}" for n in r["notes"]] + [""]

    # Headline ----------------------------------------------------------------------------------------
    L += ["## Headline", ""]
    rows = []
    for name, t in r["targets"].items():
        value = NOT_A_RESULT if t.get("contended") else fmt(r[name], HEADLINE_DIGITS[name])
        verdict = _verdict(t)
        if t.get("note") and not t.get("contended"):
            verdict = t["note"] if verdict == "not counted" else f"{verdict} ({t['note']})"
        rows.append([f"`{name}`", t["what"], value, t["target"], verdict])
    L += _table(["key", "what", "value", "target", "result"], rows)
    rat = r.get("ratios", {})
    withheld = rat.get("withheld") or {}
    gc0 = r.get("gradcam") or {}
    key0 = _get(r, "pipeline", "key") or {}
    gc_bad = "gradcam" in r and r.get("gradcam_over_fused") is None and (
        contended(gc0.get("gradcam_top_class_ms")) or bool(_get(gc0, "fused_ms", "contended")))
    naive_bad = key0.get("sonolens_over_naive_top") is None and (
        contended(key0.get("max_rate_cam")) or contended(key0.get("naive_top")))
    L += _table(["ratio", "value"], [
        ["`teacher_over_student` (paper teacher PyTorch / student ONNX, p50, batch 1)",
         _ratio_cell(r.get("teacher_over_student"), withheld.get("teacher_over_student"),
                     HEADLINE_DIGITS["teacher_over_student"])],
        ["`offline_teacher_over_student` (offline teacher PyTorch / student ONNX)",
         _ratio_cell(r.get("offline_teacher_over_student"), withheld.get("offline_teacher_over_student"),
                     HEADLINE_DIGITS["offline_teacher_over_student"])],
        ["`gradcam_over_fused` (pytorch-grad-cam / fused ONNX CAM, per frame)",
         NOT_A_RESULT if gc_bad else fmtx(r.get("gradcam_over_fused"), HEADLINE_DIGITS["gradcam_over_fused"])],
        ["sonolens `--max-rate` / naive PyTorch + pytorch-grad-cam (frames/s, same clip)",
         NOT_A_RESULT if naive_bad else fmtx(key0.get("sonolens_over_naive_top"))],
    ])
    if rat:
        L += [f"Ratio basis: {rat.get('basis')}.", ""]
    L += _contention_lines(r)

    # 1. Models ---------------------------------------------------------------------------------------
    models = r.get("models")
    if models:
        L += ["## 1. Models at batch 1, per image", "",
              "Peak RSS is the high-water mark of the process that made the measurement (`VmHWM`; Linux's "
              "`ru_maxrss` would include the parent's RSS, which it inherits through fork + exec). Rows marked "
              "*shared process* ran after other measurements in the same process (this mode pools them), so their "
              "value is an upper bound; the others ran in a fresh process of their own. Torch rows include what "
              "importing torch costs by itself (*after import*).", ""]
        rows = []
        for e in models.values():
            if not e.get("measured"):
                rows.append([e["label"]] + ["—"] * 8 + [f"failed: {e.get('error') or 'skipped'}"])
                continue
            lat = e["latency_ms"]
            rss = fmt(e["peak_rss_mb"], 0) + ("" if e["rss_isolated"] else " (shared process)")
            rows.append([e["label"], e["framework"], e["init"] if not e["init"].startswith("checkpoint:")
                         else "trained checkpoint", "×".join(map(str, e["input_size"])),
                         fmt(e.get("threads")) if e.get("threads") else "default", _v(e, lat["p50"], 2),
                         _v(e, lat["p99"], 2), _v(e, e["throughput_ips"], 1),
                         f"{fmt(e['size_mb'], 2)} ({e['size_basis']})",
                         f"{rss} (after import {fmt(e.get('rss_after_import_mb'), 0)})"])
        L += _table(["model", "framework", "weights", "input", "threads", "p50 ms", "p99 ms", "images/s (measured)",
                     "size MB", "peak RSS MB"], rows)
        L += ["*images/s* is measured: calls over the wall time of the timed loop. *threads*: torch's intra-op "
              "threads, chosen when each measurement started (below); ONNX Runtime rows use its default.", ""]
        L += [f"- {e['label']}: {e['threads_basis']}" for e in models.values() if e.get("threads_basis")]
        L += [""]
        off = models.get("teacher_offline", {})
        if off.get("measured"):
            what = (f"checkpoint `{off['checkpoint']}`" if off.get("checkpoint") else
                    "random init (no runs/*teacher*/best.pt found; speed does not depend on the weights)")
            L += [f"Offline teacher weights: {what}.", ""]
        paper = r["paper"]
        tp_e, sp_e = models.get("teacher_paper"), models.get("student_onnx_fp32_cam")
        tp, sp = _get(tp_e, "latency_ms", "p50"), _get(sp_e, "latency_ms", "p50")
        tput = rat.get("student_throughput_ips")
        L += ["### Against the breast-ultrasound paper", "",
              f"The paper's figures ({paper['what']}) next to ours. Absolute times depend on the hardware; the "
              "ratios are what carries over.", ""]
        L += _table(["", "paper", "sonolens (this run)"], [
            ["teacher latency (ViT-B/16 + ConvNeXt-Tiny)", f"{fmt(paper['teacher_ms'], 1)} ms",
             NOT_A_RESULT if contended(tp_e) else f"{fmt(tp, 1)} ms"],
            ["student latency", f"{fmt(paper['student_ms'], 1)} ms",
             NOT_A_RESULT if contended(sp_e) else f"{fmt(sp, 2)} ms (ONNX fp32 + fused CAM)"],
            ["student throughput", f"{fmt(paper['student_fps'], 1)} FPS",
             NOT_A_RESULT if withheld.get("student_throughput_ips") else
             f"{fmt(tput, 1)} images/s (measured: calls / wall time)"],
            ["teacher / student speed", f"{fmt(paper['speed_ratio'], 0)}× "
                                        f"({fmt(rat['paper']['teacher_over_student'], 1)}×)",
             f"{_ratio_cell(rat.get('teacher_over_student'), withheld.get('teacher_over_student'))} (vs student in "
             "PyTorch: "
             f"{_ratio_cell(rat.get('teacher_over_student_torch'), withheld.get('teacher_over_student_torch'))})"],
            ["teacher / student size", f"{fmt(paper['size_ratio'], 0)}×",
             f"{fmtx(rat.get('size_teacher_over_student'))} (offline teacher: "
             f"{fmtx(rat.get('size_offline_teacher_over_student'))})"],
        ])

    # 2. Grad-CAM -------------------------------------------------------------------------------------
    gc = r.get("gradcam")
    if gc:
        L += ["## 2. Grad-CAM per frame", ""]
        if "error" in gc:
            L += [f"Failed: {gc['error']}", ""]
        else:
            top, every = gc["gradcam_top_class_ms"], gc["gradcam_all_classes_ms"]
            fused_e = {"contention": {"contended": bool(gc["fused_ms"].get("contended"))}}
            L += _table(["method", "p50 ms", "p99 ms", "× fused"], [
                [f"pytorch-grad-cam `GradCAM`, one class ({gc['framework']}, {gc['threads']} threads)",
                 _v(top, top["p50"], 2), _v(top, top["p99"], 2),
                 NOT_A_RESULT if contended(top) or contended(fused_e) else fmtx(gc["gradcam_over_fused"])],
                [f"pytorch-grad-cam `GradCAM`, all {gc['classes']} classes",
                 _v(every, every["p50"], 2), _v(every, every["p99"], 2),
                 NOT_A_RESULT if contended(every) or contended(fused_e) else fmtx(gc["gradcam_all_over_fused"])],
                ["fused ONNX output (logits + every class's CAM, one forward)", _v(fused_e, gc["fused_ms"]["p50"], 2),
                 _v(fused_e, gc["fused_ms"]["p99"], 2), "1.0×"],
            ])
            L += [_cam_extra_sentence(gc.get("fused_cam_extra")) + f" Basis: {gc['basis']}.", ""]

    # 3. Pipeline -------------------------------------------------------------------------------------
    pipe = r.get("pipeline")
    if pipe:
        L += ["## 3. End-to-end pipeline", "",
              "`build` + `run_to_end` — the code `sonolens run` uses: capture thread (PyAV decode) → bounded "
              "queue → worker (ROI, preprocessing, ONNX Runtime with the fused CAM) → result.", ""]
        L += _moving_section(pipe.get("moving"))
        key = pipe.get("key")
        if key:
            title = key["clip"] + (" — a still: 100 identical frames, nearly free to decode (an upper bound)"
                                   if key["is_sonosite"] else " (stand-in: ../shared/videos is absent)")
            src = key.get("source", {})
            L += [f"### Key clip: `{title}` ({src.get('width')}×{src.get('height')}, {fmt(src.get('fps'), 2)} fps, "
                  f"{src.get('frame_count')} frames)", "", f"Note: {key['loop_note']}.", ""]
            rows = []
            for name, label in (("max_rate_cam", "--max-rate, CAM on"), ("max_rate_no_cam", "--max-rate, CAM off"),
                                ("realtime_cam", "--realtime, CAM on"), ("realtime_no_cam", "--realtime, CAM off")):
                rows.append([label] + _run_cells(key.get(name)))
            L += _table(list(RUN_HEADER), rows)
            errs = [f"{k}: {key[k]['error']}" for k in ("max_rate_cam", "max_rate_no_cam", "realtime_cam",
                                                       "realtime_no_cam") if (key.get(k) or {}).get("error")]
            if errs:
                L += ["Errors: " + "; ".join(errs), ""]
            rows = []
            for mode, label in (("top", "one class per frame (the one on display)"), ("all", "every class")):
                nv = key.get(f"naive_{mode}", {})
                if "error" in nv or not nv:
                    rows.append([label, "—", "—", "—", "—", f"failed: {nv.get('error', 'not run')}"])
                    continue
                lat = nv["latency_ms"]
                bad = contended(nv) or contended(key.get("max_rate_cam"))
                rows.append([label, _v(nv, nv["fps"], 1), _v(nv, lat["decode"]["p50"], 2),
                             _v(nv, lat["preprocess"]["p50"], 2), _v(nv, lat["inference_gradcam"]["p50"], 2),
                             NOT_A_RESULT if bad else fmtx(key.get(f"sonolens_over_naive_{mode}"))])
            L += ["**The naive way** on the same clip: one thread decodes (same source), preprocesses (same code) "
                  "and runs eager PyTorch + pytorch-grad-cam (`TorchEngine`) per frame, "
                  f"{_get(key, 'naive_top', 'frames')} frames (one class) and {_get(key, 'naive_all', 'frames')} "
                  "(every class), the clip looped:", ""]
            L += _table(["naive Grad-CAM", "frames/s", "decode p50 ms", "preprocess p50 ms",
                         "forward+GradCAM p50 ms", "sonolens --max-rate CAM on / naive"], rows)
        for table, title in (("samples", "Bundled samples (`assets/sample_videos`)"),
                             ("shared", "Real recordings (`../shared/videos`)")):
            rows_in = pipe.get(table) or []
            L += [f"### {title}", ""]
            if table == "shared" and pipe.get("shared_skipped"):
                L += [f"Skipped: {pipe['shared_skipped']}.", ""]
                continue
            if not rows_in:
                L += ["No clips.", ""]
                continue
            L += [f"{pipe['table_note']}.", ""]
            rows = []
            for row in rows_in:
                s = row.get("source", {})
                size = f"{s.get('width')}×{s.get('height')} @ {fmt(s.get('fps'), 2)}"
                rows.append([f"`{row['clip']}`", size,
                             _v(row.get("max_rate_cam"), _get(row, "max_rate_cam", "fps_processed"), 1),
                             _v(row.get("max_rate_no_cam"), _get(row, "max_rate_no_cam", "fps_processed"), 1),
                             _rt_cell(row.get("realtime_cam")), _rt_cell(row.get("realtime_no_cam"))])
            L += _table(["clip", "size @ fps", "max-rate fps, CAM", "max-rate fps, no CAM",
                         "realtime CAM: in/proc/drop, c2r p50/p95/p99 ms", "realtime no CAM: same"], rows)
            errs = [f"`{row['clip']}` {k}: {row[k]['error']}" for row in rows_in for k in row
                    if isinstance(row[k], dict) and row[k].get("error")]
            if errs:
                L += ["Errors: " + "; ".join(errs), ""]

    # 4. Scaling --------------------------------------------------------------------------------------
    sc = r.get("scaling")
    if sc:
        L += ["## 4. How the cost grows", "", f"On `{sc['clip']}`, CAM on.", "", "### Frame size", "",
              f"{sc['frame_size_note']}.", ""]
        rows = []
        for row in sc["frame_size"]:
            mr, rt = row.get("max_rate_cam") or {}, row.get("realtime_cam")
            rows.append([row["size"], _v(mr, mr.get("fps_processed"), 1),
                         _v(row.get("max_rate_no_model"), _get(row, "max_rate_no_model", "fps_processed"), 1),
                         _v(mr, _get(mr, "stage_p50_ms", "preprocess"), 2),
                         _v(mr, _get(mr, "stage_p50_ms", "inference"), 2),
                         _rt_cell(rt) if rt is not None else "not run"])
        L += _table(["frame size", "max-rate fps, CAM on", "max-rate fps, no model (decode + ROI)",
                     "preprocess p50 ms", "inference p50 ms", "realtime CAM on: in/proc/drop, c2r p50/p95/p99 ms"],
                    rows)
        L += ["### ONNX Runtime intra-op threads", ""]
        rows = [[str(row["threads"]), _v(row.get("max_rate_cam"), _get(row, "max_rate_cam", "fps_processed"), 1),
                 _v(row.get("max_rate_cam"), _get(row, "max_rate_cam", "stage_p50_ms", "inference"), 2)]
                for row in sc["threads"]]
        L += _table(["threads", "max-rate fps processed", "inference p50 ms"], rows)
        L += ["### Concurrent streams", "", f"{sc['streams_note']}.", ""]
        rows = []
        for row in sc["streams"]:
            mr, rt = row.get("max_rate_cam") or {}, row.get("realtime_cam") or {}
            per = ", ".join(fmt(p["fps_processed"], 1) for p in mr.get("per_stream", []))
            rows.append([str(row["streams"]), _v(mr, mr.get("aggregate_fps"), 1),
                         NOT_A_RESULT if contended(mr) else (per or "—"),
                         _v(rt, rt.get("total_dropped")), _v(rt, rt.get("worst_capture_to_result_p99_ms"), 2),
                         "; ".join(_err(x) for x in (mr, rt) if x.get("error")) or ""])
        L += _table(["streams", "max-rate aggregate fps", "per-stream fps", "realtime dropped (all streams)",
                     "realtime worst c2r p99 ms", "errors"], rows)
        if "scaling" in r.get("plots", {}):
            L += [f"![Scaling]({r['plots']['scaling']})", ""]

    # 5. CDF ------------------------------------------------------------------------------------------
    if "latency_cdf" in r.get("plots", {}):
        L += ["## 5. Latency per stage", "",
              f"CDF of every stage from the `--realtime`, CAM-on run on the key clip "
              f"([{r['plots']['latency_cdf']}]({r['plots']['latency_cdf']})):", "",
              f"![Per-stage latency CDF]({r['plots']['latency_cdf']})", ""]

    # 6. Memory ---------------------------------------------------------------------------------------
    mem = r.get("run_memory")
    if mem:
        L += ["## 6. Memory of `sonolens run`", ""]
        if mem.get("ok"):
            argv = " ".join(Path(a).name if "/" in a else a for a in mem["argv"])
            alone = ("" if mem.get("isolated", True) else
                     " NOT alone: it shared its process with other runs, so this is an upper bound.")
            L += [f"Peak RSS **{fmt(mem['peak_rss_mb'], 0)} MB**; torch imported: **{fmt(mem['torch_imported'])}**; "
                  f"exit status {mem['rc']}. Command: `sonolens run {argv}`. How: {mem['how']}.{alone}", ""]
        else:
            L += [f"Failed: {mem.get('error')}", ""]

    # 7. 4K recording, 8. soak --------------------------------------------------------------------------
    if r.get("recording_4k"):
        L += _recording_lines(r["recording_4k"])
    if r.get("soak"):
        L += _soak_lines(r["soak"])
    return "\n".join(L).rstrip() + "\n"


def _err(d: dict) -> str:
    return str(d.get("error"))


def _cam_extra_sentence(d: dict[str, Any] | None) -> str:
    """What the fused CAM branch costs over logits only: a difference, or none within the repeats' noise."""
    if not d:
        return "The CAM branch's cost was not measured (the logits-only row is missing)."
    if d.get("contended"):
        return f"The CAM branch's cost: {NOT_A_RESULT} (one of the two ONNX rows is flagged)."
    band = d.get("noise_ms")
    if band is None:
        return (f"The CAM branch: {fmt(d['diff_ms'], 2)} ms (p50) against logits only; too few repeats to tell that "
                f"from noise.")
    if not d.get("measurable"):
        return (f"The CAM branch: no measurable difference (±{fmt(band, 2)} ms) against logits only "
                f"(p50 difference {fmt(d['diff_ms'], 2)} ms, inside the noise of the repeats).")
    return f"The CAM branch adds {fmt(d['diff_ms'], 2)} ms (±{fmt(band, 2)} ms, p50) to the ONNX forward."


def _run_cells(run: dict[str, Any] | None) -> list[str]:
    if not run or "frames_in" not in run:
        return ["—"] * 6 + [f"failed: {run.get('error') if run else 'not run'}"]
    c = run["capture_to_result_ms"]
    if contended(run):
        return [fmt(run["frames_in"]), fmt(run["frames_processed"])] + [NOT_A_RESULT] + ["—"] * 4
    return [fmt(run["frames_in"]), fmt(run["frames_processed"]), fmt(run["frames_dropped"]),
            fmt(run["fps_processed"], 1), f"{fmt(c['p50'], 2)} / {fmt(c['p95'], 2)} / {fmt(c['p99'], 2)}",
            fmt(run["stage_p50_ms"]["inference"], 2), fmt(run["stage_p50_ms"]["preprocess"], 2)]


def _rt_cell(run: dict[str, Any] | None) -> str:
    if run is None:
        return "not run"
    if "frames_in" not in run:
        return f"failed: {run.get('error')}"
    if contended(run):
        return NOT_A_RESULT
    c = run["capture_to_result_ms"]
    return (f"{run['frames_in']}/{run['frames_processed']}/{run['frames_dropped']}, "
            f"{fmt(c['p50'], 2)}/{fmt(c['p95'], 2)}/{fmt(c['p99'], 2)}")


def _recording_lines(rec: dict[str, Any]) -> list[str]:
    L = [f"## 7. Recording a {rec['size'].replace('x', '×')} source", ""]
    if not rec.get("ok"):
        return L + [f"Failed: {rec.get('error') or 'exit status ' + str(rec.get('rc'))}", ""]
    bad = contended(rec)
    keeps_up = rec.get("fps_in_over_source")
    L += [f"How: {rec['how']}.", ""]
    L += _table(["source fps", "input fps", "input / source", "frames in / processed", "pipeline dropped",
                 "recorder written / dropped", "capture→result p99 ms", "peak RSS MB", "time to stop s", "file MB"], [[
                     fmt(rec["source_fps"], 2), _v(rec, rec["fps_in"], 1),
                     NOT_A_RESULT if bad else f"{fmt(keeps_up, 2)}",
                     f"{fmt(rec['frames_in'])} / {fmt(rec['frames_processed'])}", _v(rec, rec["pipeline_dropped"]),
                     f"{fmt(rec['recorder_frames_written'])} / " + _v(rec, rec["recorder_dropped"]),
                     _v(rec, rec["capture_to_result_p99_ms"], 2),
                     fmt(rec["peak_rss_mb"], 0) + ("" if rec.get("torch_imported") is False else " (torch imported)"),
                     _v(rec, rec["stop_s"], 2), fmt(rec["file_mb"], 1)]])
    L += ["The recorder is bounded by bytes and never slows the live path: when the encoder falls behind, new "
          "frames are dropped from the recording (and counted) rather than from the pipeline.", ""]
    if rec.get("recorder_error"):
        L += [f"Recorder error: {rec['recorder_error']}", ""]
    return L


def _soak_lines(sk: dict[str, Any]) -> list[str]:
    L = [f"## 8. Soak: {sk.get('minutes', 0):g} min at {sk.get('rate_hz', 30):g} Hz", ""]
    if "frames_in" not in sk:
        return L + [f"Failed: {sk.get('error')}", ""]
    m = sk["memory"]
    c = sk["capture_to_result_ms"]
    L += [f"How: {sk['how']}.", ""]
    L += _table(["ran s", "frames in / processed", "dropped", "dropped / min", "fps in / processed",
                 "capture→result p50 / p99 / max ms", "RSS after warm-up → end MB", "growth MB", "slope MB/min",
                 "peak RSS MB", "RSS samples"], [[
                     fmt(sk["ran_s"], 0), f"{fmt(sk['frames_in'])} / {fmt(sk['frames_processed'])}",
                     _v(sk, sk["frames_dropped"]), _v(sk, sk["dropped_per_min"], 2),
                     NOT_A_RESULT if contended(sk) else f"{fmt(sk['fps_in'], 1)} / {fmt(sk['fps_processed'], 1)}",
                     NOT_A_RESULT if contended(sk) else f"{fmt(c['p50'], 2)} / {fmt(c['p99'], 2)} / {fmt(c['max'], 2)}",
                     f"{fmt(m['start_mb'], 1)} → {fmt(m['end_mb'], 1)}", fmt(m["growth_mb"], 1),
                     fmt(m["slope_mb_per_min"], 3), fmt(m["peak_mb"], 1), fmt(m["samples"])]])
    if not sk.get("counts_for_target"):
        L += [f"This soak ran {sk['minutes']:g} min: the memory target (< 10 MB over 30 min) is counted only "
              f"for `--soak 30` or longer.", ""]
    if sk.get("ended_early") or sk.get("error"):
        L += [f"The run ended early: {sk.get('error') or 'the source ended'}.", ""]
    return L


# --------------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------------
def stage_latencies_from_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Per-stage milliseconds of the processed frames in a ``sonolens run --csv`` file."""
    cols = ("t_captured_ns", "t_enqueued_ns", "t_dequeued_ns", "t_preprocessed_ns", "t_inferred_ns", "t_delivered_ns")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("status") == "processed":
                rows.append([int(row[c]) for c in cols])
    if not rows:
        return {s: np.empty(0) for s in STAGE_ORDER}
    cap, enq, deq, pre, inf, dlv = np.asarray(rows, dtype=np.int64).T
    return {"queue_wait": (deq - enq) / 1e6, "preprocess": (pre - deq) / 1e6, "inference": (inf - pre) / 1e6,
            "deliver": (dlv - inf) / 1e6, "capture_to_result": (dlv - cap) / 1e6}


def write_plots(body: dict[str, Any], cdf_csv: Path | None, out_dir: Path) -> dict[str, str]:
    """Write ``latency_cdf.png`` (from the key realtime run's per-frame CSV) and ``scaling.png``; return
    ``{name: path}`` of what was written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: dict[str, str] = {}
    key = _get(body, "pipeline", "key") or {}
    if cdf_csv is not None:
        stages = stage_latencies_from_csv(cdf_csv)
        if any(len(v) for v in stages.values()):
            fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
            for s in STAGE_ORDER:
                v = np.sort(stages[s])
                if v.size:
                    v = np.maximum(v, 1e-3)  # log axis: a 0-ms queue wait is drawn at 1 µs
                    ax.step(v, np.arange(1, v.size + 1) / v.size, where="post",
                            label=f"{s} (p99 {np.percentile(v, 99):.2f} ms)")
            ax.axvline(15.0, color="grey", ls="--", lw=1)
            ax.text(14.0, 0.03, "15 ms target (capture→result p99) ", color="grey", fontsize=8, ha="right")
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms, log scale)")
            ax.set_ylabel("fraction of frames ≤ x")
            n = len(stages["capture_to_result"])
            flag = f" — {NOT_A_RESULT}" if contended(key.get("realtime_cam")) else ""
            ax.set_title(f"Per-stage latency CDF: {key.get('clip', '?')}, --realtime, CAM on, {n} frames{flag}",
                         fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="lower right", fontsize=8)
            fig.tight_layout()
            path = out_dir / "latency_cdf.png"
            fig.savefig(path)
            plt.close(fig)
            written["latency_cdf"] = str(path)
    sc = body.get("scaling")
    if sc:
        # contended figures are not results: they are left out of the plots too
        sizes = [(row["size"], _get(row, "max_rate_cam", "fps_processed")) for row in sc.get("frame_size", [])
                 if not contended(row.get("max_rate_cam"))]
        sizes = [(s, v) for s, v in sizes if v is not None]
        streams = [(row["streams"], _get(row, "max_rate_cam", "aggregate_fps"),
                    _get(row, "max_rate_cam", "per_stream_fps_min")) for row in sc.get("streams", [])
                   if not contended(row.get("max_rate_cam"))]
        streams = [t for t in streams if t[1] is not None]
        if sizes or streams:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
            if sizes:
                a1.bar([s for s, _ in sizes], [v for _, v in sizes], color="tab:blue")
                a1.axhline(250, color="grey", ls="--", lw=1, label="250 fps target (SonoSite clip)")
                a1.legend(fontsize=8, loc="upper right")
                a1.set_title("--max-rate fps vs frame size (CAM on)", fontsize=10)
                a1.set_ylabel("processed frames/s")
                a1.tick_params(axis="x", labelsize=8)
            if streams:
                xs = [n for n, _, _ in streams]
                a2.plot(xs, [a for _, a, _ in streams], "o-", label="aggregate")
                a2.plot(xs, [p for _, _, p in streams], "s--", label="slowest stream")
                a2.set_xticks(xs)
                a2.set_ylim(bottom=0)
                a2.set_xlabel("concurrent streams (1 ORT thread each)")
                a2.set_ylabel("processed frames/s")
                a2.set_title("--max-rate fps vs concurrent streams", fontsize=10)
                a2.legend(fontsize=8)
            for a in (a1, a2):
                a.grid(True, alpha=0.3)
            fig.tight_layout()
            path = out_dir / "scaling.png"
            fig.savefig(path)
            plt.close(fig)
            written["scaling"] = str(path)
    return written
