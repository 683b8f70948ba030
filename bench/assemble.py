"""Step 5 of ``sonolens bench``: the subprocesses' raw answers assembled into the report, one builder per section:
model rows and their ratios beside the paper's, Grad-CAM, the pipeline tables, scaling, many streams (one process
against N processes, and the largest count that held), memory, the 4K recording, the soak and an archive on Dask (one
process against ``sonolens batch``), then the contention summary. ``headline`` (from ``targets``) adds the flat keys
and their targets.

The result is plain data: what ``benchmarks/bench.json`` holds and ``report`` renders.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sonolens.pipeline.contention import NOT_A_RESULT, judge

from .entries import contended, contended_figures, p50, timed_entries
from .plan import BATCH_SETUPS, EXTRA_STUDENTS, Inputs, Plan, display_path, extra_key, extra_label
from .targets import SOAK_TARGET_MINUTES, TARGETS, headline

PAPER: dict[str, Any] = {  # the breast-ultrasound paper's own figures, for the side-by-side table
    "teacher_ms": 242.9, "student_ms": 16.3, "student_fps": 61.5, "size_ratio": 74.0, "speed_ratio": 15.0,
    "what": "ViT-B/16 + ConvNeXt-Tiny hybrid teacher vs distilled MobileNetV3-Small student, as published",
}
MODEL_LABELS = {
    "teacher_paper": "Paper teacher: ViT-B/16 + ConvNeXt-Tiny hybrid",
    "teacher_offline": "Offline teacher (hybrid_offline)",
    "student_torch": "Student MobileNetV3-Small, PyTorch eager",
    "student_onnx_fp32": "Student, ONNX Runtime fp32, logits only",
    "student_onnx_fp32_cam": "Student, ONNX Runtime fp32, logits + fused CAM",
    "student_onnx_int8": "Student, ONNX Runtime int8, logits only",
    "student_onnx_int8_cam": "Student, ONNX Runtime int8, logits + fused CAM",
}
KEY_RUNS = ("max_rate_cam", "max_rate_no_cam", "realtime_cam", "realtime_no_cam")  # the key job's runs, in order
# The streams section: what a count of simultaneous streams must hold (the target: 0 frames dropped and
# capture→result p99 ≤ 50 ms, every stream; and every stream's input read at most 50 ms behind its timestamps, since a
# file read late loses no frame: its input rate falls instead), and its two ways of running N streams.
STREAMS_RULE: dict[str, float] = {"dropped_max": 0, "p99_max_ms": 50.0, "behind_max_ms": 50.0}
STREAMS_SIDES = ("one_process", "processes")


def difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """``b`` − ``a`` in p50 ms, with the noise band of the two (their ``noise_ms`` in quadrature): a difference
    within the band is "no measurable difference (± band)". None when either p50 is missing."""
    if not a or not b or a.get("p50") is None or b.get("p50") is None:
        return None
    diff = b["p50"] - a["p50"]
    na, nb = a.get("noise_ms"), b.get("noise_ms")
    band = math.hypot(na, nb) if na is not None and nb is not None else None
    return {"diff_ms": diff, "noise_ms": band, "measurable": None if band is None else abs(diff) > band,
            "basis": "p50 difference; noise: half the range of the medians of 5 consecutive blocks of each "
                     "measurement's repeats, combined in quadrature"}


def verdict(rec: dict[str, Any] | None, latency: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The CPU record of a timed task with ``contention.judge``'s verdict added (None without a record)."""
    if rec is None:
        return None
    return {**rec, **judge(rec, latency)}


# --------------------------------------------------------------------------------------------------------
# Assembling the report
# --------------------------------------------------------------------------------------------------------
def assemble(inp: Inputs, plan: Plan, sections: set[str], results: dict[str, list[dict]],
             size_clips: dict[str, Path], record_clip: Path | None = None) -> dict[str, Any]:
    """The report's sections from ``execute``'s results (``{job key: [task result, ...]}``), in report order."""
    rep: dict[str, Any] = {"paper": PAPER}
    notes = list(inp.notes)
    if plan.tiny_teachers:
        notes.append("SMOKE RUN: the teachers are tiny stand-ins (vit_tiny + convnext_atto, 64 px); the numbers "
                     "only prove the plumbing.")
    rep["models"] = models = _models(inp, plan, results)
    rep["ratios"] = _ratios(models)
    gc = _first(results, "gradcam")
    if gc is not None:
        rep["gradcam"] = _gradcam(gc, models, results)
    if "pipeline" in sections:
        rep["pipeline"] = _pipeline(inp, plan, results)
    if "scaling" in sections:
        rep["scaling"] = _scaling(inp, plan, results, size_clips)
    if "streams" in sections:
        rep["multi_stream"] = _multi_stream(inp, plan, results)
    rr = _first(results, "run_rss")
    if rr is not None:
        rep["run_memory"] = _memory_entry(rr)
    rec = _first(results, "record4k")
    if rec is not None:
        rep["recording_4k"] = _recording_entry(rec, plan, record_clip)
    sk = _first(results, "soak")
    if sk is not None:
        rep["soak"] = _soak_entry(sk, plan)
    if "batch" in sections:
        rep["batch"] = _batch(inp, plan, results)
    rep["contended"] = contended_figures(rep)
    rep["not_judged"] = [what for what, e in timed_entries(rep) if not e["contention"].get("judged")]
    rep["notes"] = notes
    return rep


# --------------------------------------------------------------------------------------------------------
# 1. models and their ratios
# --------------------------------------------------------------------------------------------------------
def _models(inp: Inputs, plan: Plan, results: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """One row per measured model, with the file (and where it came from) of each ONNX row."""
    labels = dict(MODEL_LABELS)
    labels.update({extra_key(a, s, q): extra_label(a, s, q) for a, s in EXTRA_STUDENTS for q in (False, True)})
    if plan.tiny_teachers:
        for k in ("teacher_paper", "teacher_offline"):
            labels[k] += " [SMOKE: tiny stand-in]"
    models = {k: _model_entry(_first(results, k), v) for k, v in labels.items() if k in results}
    if "teacher_offline" in models and models["teacher_offline"].get("measured"):
        models["teacher_offline"]["checkpoint"] = display_path(inp.teacher_checkpoint)
    if "student_torch" in models:
        models["student_torch"]["note"] = "random init: eager speed does not depend on the weights"
    files: dict[str, tuple[Path, str]] = {
        "student_onnx_fp32": (inp.student, inp.student_source), "student_onnx_fp32_cam": (inp.student,
                                                                                          inp.student_source),
        "student_onnx_int8": (inp.int8, inp.int8_source), "student_onnx_int8_cam": (inp.int8, inp.int8_source),
        **inp.extra}
    for k, (path, source) in files.items():
        if k in models:
            models[k]["file"], models[k]["file_source"] = display_path(path), source
    return models


def _ratios(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Teacher / student speed and size beside the paper's. A ratio is built only on figures that are results: one
    contended side withholds it (and ``withheld`` says which)."""
    withheld: dict[str, str] = {}

    def ratio_of(name: str, num: str, den: str) -> float | None:
        bad = [models[k]["label"] for k in (num, den) if contended(models.get(k))]
        if bad:
            withheld[name] = f"{NOT_A_RESULT}: {' and '.join(bad)}"
            return None
        return _ratio(p50(models.get(num)), p50(models.get(den)))

    def size(k: str) -> float | None:
        return models[k]["size_mb"] if models.get(k, {}).get("measured") else None

    cam_row = models.get("student_onnx_fp32_cam")
    ratios = {
        "teacher_over_student": ratio_of("teacher_over_student", "teacher_paper", "student_onnx_fp32_cam"),
        "offline_teacher_over_student": ratio_of("offline_teacher_over_student", "teacher_offline",
                                                 "student_onnx_fp32_cam"),
        "teacher_over_student_torch": ratio_of("teacher_over_student_torch", "teacher_paper", "student_torch"),
        "size_teacher_over_student": _ratio(size("teacher_paper"), size("student_onnx_fp32")),
        "size_offline_teacher_over_student": _ratio(size("teacher_offline"), size("student_onnx_fp32")),
        "student_throughput_ips": (cam_row["throughput_ips"] if cam_row and cam_row.get("measured")
                                   and not contended(cam_row) else None),
        "withheld": withheld,
        "basis": "p50 latency at batch 1; the student side is ONNX Runtime fp32 with the fused CAM output (what "
                 "the pipeline runs); sizes: teacher fp32 parameter bytes / student ONNX fp32 file; throughput: "
                 "calls / wall time of the timed loop (measured, not 1000 / p50)",
        "paper": {"teacher_over_student": PAPER["teacher_ms"] / PAPER["student_ms"],
                  "size_teacher_over_student": PAPER["size_ratio"], "student_fps": PAPER["student_fps"]},
    }
    if cam_row and contended(cam_row):
        withheld["student_throughput_ips"] = f"{NOT_A_RESULT}: {cam_row['label']}"
    return ratios


# --------------------------------------------------------------------------------------------------------
# 2. Grad-CAM
# --------------------------------------------------------------------------------------------------------
def _gradcam(gc: dict[str, Any], models: dict[str, dict[str, Any]], results: dict[str, list[dict]]
             ) -> dict[str, Any]:
    """pytorch-grad-cam per frame (one class, every class) against the fused ONNX row, and what the fused CAM
    branch costs over logits only."""
    if not gc.get("ok"):
        return {"error": gc.get("error")}
    g = gc["result"]
    fused = models.get("student_onnx_fp32_cam") or _model_entry(_first(results, "student_onnx_fp32_cam"), "")
    top, every = g["top_class"]["latency_ms"], g["all_classes"]["latency_ms"]
    top_cpu = verdict(g["top_class"].get("contention"), top)
    all_cpu = verdict(g["all_classes"].get("contention"), every)
    fused_bad = contended(fused)
    top_bad, all_bad = bool(top_cpu and top_cpu["contended"]), bool(all_cpu and all_cpu["contended"])
    return {
        "framework": g["framework"], "threads": g["threads"], "threads_basis": g.get("threads_basis"),
        "classes": g["classes"],
        "gradcam_top_class_ms": {"p50": top["p50"], "p99": top["p99"], "contention": top_cpu},
        "gradcam_all_classes_ms": {"p50": every["p50"], "p99": every["p99"], "contention": all_cpu},
        "fused_ms": {"p50": p50(fused), "p99": fused["latency_ms"]["p99"] if fused.get("measured")
                     else None, "contended": fused_bad},
        "fused_cam_extra": _cam_extra(models.get("student_onnx_fp32"), fused),
        "gradcam_over_fused": None if top_bad or fused_bad else _ratio(top["p50"], p50(fused)),
        "gradcam_all_over_fused": None if all_bad or fused_bad else _ratio(every["p50"], p50(fused)),
        "basis": "p50 per frame, logits + CAM; pytorch-grad-cam runs one forward+backward per class (the "
                 "headline uses one class: the one a viewer shows), the fused ONNX graph gives every "
                 "class's map in its single forward pass",
    }


def _cam_extra(logits_row: dict[str, Any] | None, fused: dict[str, Any]) -> dict[str, Any] | None:
    """The fused row minus the logits-only row (``difference``), marked ``contended`` when either side was."""
    if not (logits_row and p50(fused) is not None and p50(logits_row) is not None):
        return None
    cam_extra = difference(logits_row["latency_ms"], fused["latency_ms"])
    if cam_extra is not None and (contended(fused) or contended(logits_row)):
        cam_extra["contended"] = True
    return cam_extra


# --------------------------------------------------------------------------------------------------------
# 3. pipeline
# --------------------------------------------------------------------------------------------------------
def _pipeline(inp: Inputs, plan: Plan, results: dict[str, list[dict]]) -> dict[str, Any]:
    """The key clip (with the naive way), the moving footage, and the samples and shared tables."""
    pipe: dict[str, Any] = {}
    if "key" in results and inp.scale_clip is not None:
        pipe["key"] = _key_entry(inp.scale_clip, inp.key_clip is not None, plan, results)
    if "moving" in results and inp.moving_clip is not None:
        pipe["moving"] = _moving_entry(inp.moving_clip, plan, results["moving"])
    for table, clips in (("samples", inp.samples), ("shared", inp.shared_videos)):
        pipe[table] = _table_rows(table, clips, plan, results)
    if inp.shared_dir is None:
        pipe["shared_skipped"] = "../shared/videos is absent"
    mr_what = ("the whole clip" if plan.clip_max_rate_frames is None
               else f"the first {plan.clip_max_rate_frames} frames")
    pipe["table_note"] = (f"max-rate: {mr_what}; "
                          + (f"realtime: at most {plan.clip_realtime_s:g} s of each clip"
                             if plan.clip_realtime_s is not None else "realtime: skipped in this mode"))
    return pipe


def _key_entry(clip: Path, is_sonosite: bool, plan: Plan, results: dict[str, list[dict]]) -> dict[str, Any]:
    """The key clip looped: its four runs, the naive way on it (one class, every class) and sonolens / naive."""
    frames = (plan.key_max_rate_frames, plan.key_max_rate_frames, plan.key_realtime_frames,
              plan.key_realtime_no_cam_frames)
    key: dict[str, Any] = {"clip": clip.name, "is_sonosite": is_sonosite,
                           "source": _source_info(clip), "frames": dict(zip(KEY_RUNS, frames)),
                           "loop_note": f"the clip is looped (loop=True, frames=N) for a steady-state "
                                        f"measurement: --max-rate over {frames[0]} frames, --realtime over "
                                        f"{frames[2]} frames (CAM on) and {frames[3]} (CAM off)"}
    for name, run in zip(KEY_RUNS, _runs_of(results["key"])):
        key[name] = run if isinstance(run, dict) else {"error": run}
    for res, mode in zip(results.get("naive") or [], ("top", "all")):
        if res.get("ok"):
            r = dict(res["result"])
            r["contention"] = verdict(r.get("contention"), r["latency_ms"]["inference_gradcam"])
            key[f"naive_{mode}"] = r
        else:
            key[f"naive_{mode}"] = {"error": res.get("error")}
    mr_run = key.get("max_rate_cam", {})
    mr = None if contended(mr_run) else mr_run.get("fps_processed")
    for mode in ("top", "all"):
        nv_run = key.get(f"naive_{mode}", {})
        key[f"sonolens_over_naive_{mode}"] = None if contended(nv_run) else _ratio(mr, nv_run.get("fps"))
    return key


def _moving_entry(clip: Path, plan: Plan, task_results: list[dict[str, Any]]) -> dict[str, Any]:
    """The simulated moving sweep, max-rate and realtime over the whole clip."""
    moving: dict[str, Any] = {"clip": clip.name, "source": _source_info(clip),
                              "made_by": "sonolens simulate sweep --size {}x{} --fps 30 --seconds {:g} "
                                         "--seed 0".format(*plan.moving_size, plan.moving_seconds)}
    for name, run in zip(("max_rate_cam", "realtime_cam"), _runs_of(task_results)):
        moving[name] = run if isinstance(run, dict) else {"error": run}
    return moving


def _table_rows(table: str, clips: list[Path], plan: Plan, results: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """One row per clip of a table: its runs and its source's size and rate."""
    if plan.group_tables and f"table:{table}" in results:
        per_clip = [_runs_of([r]) for r in results[f"table:{table}"]]
    else:
        per_clip = [_runs_of(results.get(f"table:{table}:{c.name}", [])) for c in clips]
    rows = []
    for clip, runs in zip(clips, per_clip):
        row = _clip_row(clip, runs, plan)
        row["source"] = _source_info(clip)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------
# 4. scaling
# --------------------------------------------------------------------------------------------------------
def _scaling(inp: Inputs, plan: Plan, results: dict[str, list[dict]], size_clips: dict[str, Path]
             ) -> dict[str, Any]:
    """Frame sizes, ONNX Runtime threads and concurrent streams on the scaling clip."""
    sc: dict[str, Any] = {"clip": inp.scale_clip.name if inp.scale_clip else None}
    rows = []
    for name in size_clips:
        row: dict[str, Any] = {"size": name}
        for k, run in zip(("max_rate_cam", "max_rate_no_model", "realtime_cam"),
                          _runs_of(results.get(f"size:{name}", []))):
            row[k] = run if isinstance(run, dict) else {"error": run}
        rows.append(row)
    sc["frame_size"] = rows
    sc["frame_size_note"] = (f"the first {plan.size_base_frames} frames of {sc['clip']} resized and re-encoded "
                             f"(H.264) into a temp dir, looped: {plan.size_max_rate_frames} frames max-rate with "
                             f"the model and without one (decode + ROI only: what the capture side can deliver)"
                             + (f", {plan.size_realtime_frames} realtime" if plan.size_realtime_frames else ""))
    sc["threads"] = [{"threads": n, "max_rate_cam": _as_row(next(iter(_runs_of(results.get(f"threads:{n}", []))),
                                                                  None))}
                     for n in plan.threads]
    sc["streams"] = [_streams_row(n, results.get(f"streams:{n}", [])) for n in plan.streams]
    sc["streams_note"] = (f"N pipelines in one process, 1 ONNX Runtime thread each, started together: "
                          f"{plan.streams_max_rate_frames} frames each max-rate, {plan.streams_realtime_frames} "
                          f"realtime")
    return sc


def _streams_row(n: int, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """N concurrent streams, max-rate then realtime: per stream and summed up."""
    srow: dict[str, Any] = {"streams": n}
    for res_i, mode in zip(answers, ("max_rate_cam", "realtime_cam")):
        if not res_i.get("ok"):
            srow[mode] = {"error": res_i.get("error")}
            continue
        cpus = res_i["result"].get("contention") or []
        per = [summarize_run(r, cpus[i] if i < len(cpus) else None)
               for i, r in enumerate(res_i["result"]["reports"])]
        srow[mode] = {"per_stream": per, "contention": per[0]["contention"] if per else None,
                      "aggregate_fps": sum(p["fps_processed"] for p in per),
                      "per_stream_fps_min": min(p["fps_processed"] for p in per),
                      "total_dropped": sum(p["frames_dropped"] for p in per),
                      "worst_capture_to_result_p99_ms": max(p["capture_to_result_ms"]["p99"] for p in per),
                      "wall_s": res_i["result"]["wall_s"]}
    return srow


# --------------------------------------------------------------------------------------------------------
# 6. memory, 7. 4K recording, 8. soak
# --------------------------------------------------------------------------------------------------------
def _memory_entry(rr: dict[str, Any]) -> dict[str, Any]:
    """The peak RSS of ``sonolens run`` in a process of its own, and whether torch stayed out of it."""
    return {"peak_rss_mb": rr["peak_rss_mb"] if rr.get("ok") else None,
            "torch_imported": rr["torch_imported"], "ok": bool(rr.get("ok")),
            "ru_maxrss_mb": rr.get("ru_maxrss_mb"),
            "rc": rr["result"]["rc"] if rr.get("ok") else None,
            "argv": [display_path(a) if "/" in a else a for a in rr["result"]["argv"]]
            if rr.get("ok") else None,
            "error": None if rr.get("ok") else rr.get("error"), "isolated": rr.get("isolated"),
            "how": "the 'sonolens run' entry point (sonolens.pipeline.run_cli.cli_main) with the "
                   "process settings the sonolens command applies, in a fresh process; its peak "
                   "RSS (VmHWM) and 'torch' in sys.modules read at its end"}


def _recording_entry(res: dict[str, Any], plan: Plan, clip: Path | None) -> dict[str, Any]:
    w, h = plan.record_size
    base = {"size": f"{w}x{h}", "frames_asked": plan.record_frames, "clip_frames": plan.record_clip_frames,
            "clip": clip.name if clip else None}
    if not res.get("ok"):
        return {**base, "ok": False, "error": res.get("error")}
    r = res["result"]
    rep = r["report"]
    src = rep.get("source") or {}
    rec = rep.get("recording") or {}
    c2r = (rep.get("latency_ms") or {}).get("capture_to_result") or {}
    fps_src = src.get("fps")
    return {**base, "ok": r["rc"] == 0, "rc": r["rc"], "source_fps": fps_src, "fps_in": rep.get("fps_in"),
            "fps_in_over_source": _ratio(rep.get("fps_in"), fps_src), "frames_in": rep.get("frames_in"),
            "frames_processed": rep.get("frames_processed"), "pipeline_dropped": rep.get("frames_dropped"),
            "fps_processed": rep.get("fps_processed"), "capture_to_result_p99_ms": c2r.get("p99"),
            "recorder_frames_written": rec.get("frames_written"), "recorder_dropped": rec.get("dropped"),
            "recorder_error": rec.get("error"), "file_mb": r.get("file_mb"), "stop_s": r.get("stop_s"),
            "peak_rss_mb": res.get("peak_rss_mb"), "torch_imported": res.get("torch_imported"),
            "isolated": res.get("isolated"), "contention": verdict(r.get("contention")),
            "how": f"the first {plan.record_clip_frames} frames of the bundled sample resized to {w}×{h} and "
                   f"re-encoded (H.264) into a temp dir, then 'sonolens run --realtime --loop --frames "
                   f"{plan.record_frames} --record' in a fresh process; time to stop: its final Pipeline.stop() "
                   f"(threads joined, the recorder's queue encoded, the file finished)"}


def _soak_entry(res: dict[str, Any], plan: Plan) -> dict[str, Any]:
    minutes = plan.soak_minutes or 0.0
    if not res.get("ok"):
        return {"minutes": minutes, "ok": False, "error": res.get("error")}
    r = res["result"]
    rep = r["report"]
    c2r = (rep.get("latency_ms") or {}).get("capture_to_result") or {}
    ran_min = r["ran_s"] / 60.0
    return {"minutes": minutes, "ok": rep.get("error") is None and not r["ended_early"], "ran_s": r["ran_s"],
            "clip": rep["source"]["name"], "rate_hz": r["rate_hz"], "interval_s": r["interval_s"],
            "frames_in": rep["frames_in"], "frames_processed": rep["frames_processed"],
            "frames_dropped": rep["frames_dropped"], "fps_in": rep["fps_in"], "fps_processed": rep["fps_processed"],
            "dropped_per_min": rep["frames_dropped"] / ran_min if ran_min > 0 else None,
            "capture_to_result_ms": {k: c2r.get(k) for k in ("p50", "p99", "max")},
            "memory": r["memory"], "rss_mb": r["rss_mb"], "ended_early": r["ended_early"],
            "error": rep.get("error"), "contention": verdict(r.get("contention")),
            "counts_for_target": minutes >= SOAK_TARGET_MINUTES,
            "how": f"--realtime, CAM on, the bundled sample looped and paced at {r['rate_hz']:g} Hz, in a fresh "
                   f"process; VmRSS of that process every {r['interval_s']:g} s; growth = median of the last 3 "
                   f"samples − median of the first 3 after a {r['memory']['warmup_s']:g} s warm-up"}


# --------------------------------------------------------------------------------------------------------
# 9. many streams: one process against N processes
# --------------------------------------------------------------------------------------------------------
def _multi_stream(inp: Inputs, plan: Plan, results: dict[str, list[dict]]) -> dict[str, Any]:
    """For each count N, N simultaneous realtime streams in one process and in N separate processes, and the largest
    count that held on each side (``largest_holding``)."""
    clip = inp.multi_clips[0] if inp.multi_clips else None
    rows = [{"streams": n, "one_process": _streams_side(_first(results, f"multi:one:{n}"), n, True),
             "processes": _streams_side(_first(results, f"multi:procs:{n}"), n, False)} for n in plan.multi_counts]
    w, h = plan.multi_size
    return {"clip": clip.name if clip else None, "source": _source_info(clip) if clip else {},
            "made_by": f"sonolens simulate sweep --size {w}x{h} --fps 30 --seconds {plan.multi_seconds:g} --seed 0",
            "copies": "one copy of the clip per stream: stream k reads its own file",
            "model": display_path(inp.student), "model_source": inp.student_source,
            "threads": {"one_process": plan.multi_threads, "processes": plan.multi_process_threads},
            "max_batch": plan.multi_max_batch, "rule": dict(STREAMS_RULE), "rows": rows,
            "verdict": {side: largest_holding(rows, side) for side in STREAMS_SIDES}, "how": _multi_how(plan)}


def _multi_how(plan: Plan) -> str:
    w, h = plan.multi_size
    threads = plan.multi_threads or "its default"
    return (f"each stream reads its own copy of one moving {w}×{h} H.264 sweep once (not looped), paced in real "
            f"time (30 Hz a stream, queue `latest`), CAM on, the default model; counts one after the other, for "
            f"each the one process and then the N processes. One process: `build_streams` + `run_to_end`, what "
            f"`sonolens run CLIP1 … CLIPN --realtime` runs (a capture thread and bounded queue per stream, one "
            f"inference worker running the waiting frames as one batch, --max-batch {plan.multi_max_batch}), ONNX "
            f"Runtime threads: {threads}. N processes (today's way): a fresh process per stream running `build` + "
            f"`run_to_end`, what `sonolens run CLIP --realtime --threads {plan.multi_process_threads}` runs; each "
            f"is built (source opened, model loaded) before all N are started together. capture→result comes from "
            f"every frame's per-frame CSV (worst stream: the highest of the streams' p50 and p99; pooled: every "
            f"stream's frames together); the N processes' CPU record is the group's (only processes outside the "
            f"group count as others)")


def _streams_side(res: dict[str, Any] | None, n: int, one_process: bool) -> dict[str, Any]:
    """One way of running ``n`` streams: totals, the worst stream, the pooled latency, the CPU record, each stream;
    ``holds``: whether it held (``stream_holds``)."""
    if res is None or not res.get("ok"):
        return {"error": "not run" if res is None else res.get("error")}
    r = res["result"]
    reports = r["report"]["streams"] if one_process else r["reports"]
    per = [_stream_summary(rep, c2r) for rep, c2r in zip(reports, r["c2r"]["per_stream"])]
    errors = [f"stream {k}: {rep['error']}" for k, rep in enumerate(reports, 1) if rep.get("error")]
    if one_process and r["report"].get("error"):
        errors.insert(0, r["report"]["error"])
    if len(per) != n:
        errors.append(f"{len(per)} of {n} streams reported")
    c2r = [p["capture_to_result_ms"] for p in per]
    side: dict[str, Any] = {
        "frames_in": sum(p["frames_in"] for p in per), "frames_processed": sum(p["frames_processed"] for p in per),
        "frames_dropped": sum(p["frames_dropped"] for p in per),
        "worst_stream_dropped": max((p["frames_dropped"] for p in per), default=None),
        "fps_in_min": min((p["fps_in"] for p in per), default=None),
        "capture_behind_ms_max": _worst([p["capture_behind_ms"] for p in per]),
        "capture_to_result_ms": {"worst_stream": {"p50": _worst([c.get("p50") for c in c2r]),
                                                  "p99": _worst([c.get("p99") for c in c2r])},
                                 "pooled": {k: r["c2r"]["pooled"].get(k) for k in ("n", "p50", "p95", "p99", "max")}},
        "per_stream": per, "threads": r["threads"], "contention": verdict(r.get("contention")),
        "wall_s": r["report"]["wall_s"] if one_process else r["wall_s"],
        "peak_rss_mb": res.get("peak_rss_mb") if one_process else sum(r["peak_rss_mb"]),
        "rss_basis": ("the process's peak RSS" + ("" if res.get("isolated") else " (shared process: an upper bound)")
                      if one_process else "the sum of the N processes' peak RSS"),
        "error": "; ".join(errors) or None}
    if one_process:
        side["batches"] = r["report"]["totals"]["batches"]
    side["holds"] = stream_holds(side)
    return side


def _stream_summary(rep: dict[str, Any], c2r: dict[str, Any]) -> dict[str, Any]:
    """One stream of a run: its counts and rates (its report), how far behind its timestamps its input was read, and
    its capture→result percentiles (its CSV)."""
    behind = rep.get("capture_behind_s_max")
    return {"frames_in": rep["frames_in"], "frames_processed": rep["frames_processed"],
            "frames_dropped": rep["frames_dropped"], "fps_in": rep["fps_in"], "fps_processed": rep["fps_processed"],
            "capture_behind_ms": None if behind is None else behind * 1e3,
            "capture_to_result_ms": {k: c2r.get(k) for k in ("n", "p50", "p95", "p99", "max")}}


def _worst(values: list[float | None]) -> float | None:
    """The highest of the streams' figures; None when there is none, or a stream has none."""
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def stream_holds(side: dict[str, Any], rule: dict[str, float] = STREAMS_RULE) -> bool:
    """Whether ``n`` streams run one way held: no error, frames processed, at most ``dropped_max`` dropped in all,
    every stream's capture→result p99 at most ``p99_max_ms`` and its input read at most ``behind_max_ms`` behind its
    timestamps. Says nothing about contention (``largest_holding`` leaves contended figures out)."""
    p99 = ((side.get("capture_to_result_ms") or {}).get("worst_stream") or {}).get("p99")
    behind = side.get("capture_behind_ms_max")
    return (not side.get("error") and (side.get("frames_processed") or 0) > 0
            and side.get("frames_dropped") is not None and side["frames_dropped"] <= rule["dropped_max"]
            and p99 is not None and p99 <= rule["p99_max_ms"]
            and (behind is None or behind <= rule["behind_max_ms"]))


def largest_holding(rows: list[dict[str, Any]], side: str, rule: dict[str, float] = STREAMS_RULE) -> dict[str, Any]:
    """The largest count whose ``side`` (``one_process`` or ``processes``) held, from the figures that are results:
    a contended one (``contention.judge``) or a failed run is not judged. ``largest``: that count; 0 when counts were
    judged and none held; None when none was judged. ``held``, ``failed``, ``contended``, ``errors``: the counts of
    each kind; ``largest_as_measured``: the largest that held counting the contended figures too (not a result)."""
    held: list[int] = []
    failed: list[int] = []
    flagged: list[int] = []
    errors: list[int] = []
    flagged_held: list[int] = []
    for row in rows:
        n, e = row["streams"], row.get(side) or {}
        if "frames_in" not in e or e.get("error"):
            errors.append(n)
        elif contended(e):
            flagged.append(n)
            if stream_holds(e, rule):
                flagged_held.append(n)
        elif stream_holds(e, rule):
            held.append(n)
        else:
            failed.append(n)
    largest = max(held) if held else (0 if failed else None)
    return {"largest": largest, "held": held, "failed": failed, "contended": flagged, "errors": errors,
            "largest_as_measured": max(held + flagged_held, default=None),
            "measured": [row["streams"] for row in rows]}


# --------------------------------------------------------------------------------------------------------
# 10. an archive on Dask: one process against 'sonolens batch'
# --------------------------------------------------------------------------------------------------------
BATCH_LABELS = {
    "one_process": "one process: `sonolens run --max-rate --no-cam`, the recordings one after another",
    "local_cluster": "`sonolens batch`, its embedded LocalCluster",
    "scheduler": "`sonolens batch --scheduler`, a scheduler + workers started beforehand on 127.0.0.1",
}


def _batch(inp: Inputs, plan: Plan, results: dict[str, list[dict]]) -> dict[str, Any]:
    """The archive three ways (``BATCH_SETUPS``), a row each, each cluster's frames/s over the one process's, and the
    two ratios the targets are stated over: LocalCluster / one process and scheduler / LocalCluster."""
    sec: dict[str, Any] = {"archive": inp.batch_selection, "full_set": inp.batch_full,
                           "model": display_path(inp.student), "model_source": inp.student_source,
                           "scheduler_workers": plan.batch_scheduler_workers, "how": _batch_how(plan)}
    if inp.batch_skipped or inp.batch_root is None:
        return {**sec, "skipped": inp.batch_skipped or "no archive"}
    rows = {s: _batch_row(_first(results, f"batch:{s}"), s) for s in BATCH_SETUPS}
    for s in ("local_cluster", "scheduler"):
        rows[s]["over_one_process"] = batch_ratio(rows[s], rows["one_process"])
    sec["rows"] = [{"setup": s, **row} for s, row in rows.items()]
    sec["ratios"] = {"local_over_one_process": rows["local_cluster"]["over_one_process"],
                     "scheduler_over_local": batch_ratio(rows["scheduler"], rows["local_cluster"])}
    return sec


def _batch_how(plan: Plan) -> str:
    n = plan.batch_scheduler_workers
    return ("every frame of every recording (blocking queue, none dropped), CAM off, the same model and gate; each "
            "way in a fresh process, one after the other. One process: `build` + `run_to_end` for each recording "
            "with what `sonolens run REC --max-rate --no-cam --model M` resolves to — ONNX Runtime's default threads "
            "— and the model loaded once (as each batch worker loads it); wall: from listing the recordings to the "
            "last one's end. `sonolens batch ROOT --out OUT --model M --quiet` (its defaults: one single-threaded "
            "worker process per core, ONNX Runtime threads 1, CAM off) through its own entry point, "
            "`batch.cli.cli_main`, on a fresh OUT (nothing to resume); wall: from importing the batch package (Dask "
            "with it) to the command's end — cluster start or connection, the tasks, closing, the table and summary "
            "written — the interpreter's start aside; its cluster part (`batch.run.execute`) timed on its own. "
            f"Scheduler: `dask scheduler` and `dask worker --nworkers {n} --nthreads 1` on 127.0.0.1 (free ports), "
            "started and waited for before the timed command (their start-up not counted), stopped after. Frames: "
            "frames processed, from the batch's table (its `frames` column) or the one process's reports. CPU "
            "record: of the one process, its threads; of a batch, its process tree (the command's process, its "
            "LocalCluster's workers, or the scheduler and workers), from /proc at the start, every 0.5 s and at the "
            "end, only processes outside the tree counting as others. Only frames, times, rows and errors are kept: "
            "not a recording's predictions")


def _batch_row(res: dict[str, Any] | None, setup: str) -> dict[str, Any]:
    """One way through the archive: recordings, frames, failures, wall time and frames/s, the cluster part, the CPU
    record."""
    label = BATCH_LABELS[setup]
    if res is None or not res.get("ok"):
        return {"label": label, "error": "not run" if res is None else res.get("error")}
    r = res["result"]
    frames, wall = r["frames"], r["wall_s"]
    row: dict[str, Any] = {
        "label": label, "recordings": r["recordings"], "frames": frames, "failed": r["failed"],
        "errors": r["errors"], "wall_s": wall, "fps": frames / wall if wall > 0 else None,
        "threads": r.get("threads"), "cam": r.get("cam"), "queue": r.get("queue"),
        "contention": verdict(r.get("contention")), "error": None}
    if setup == "one_process":
        row["load_s"] = r.get("load_s")
        return row
    cluster = r.get("cluster_s")
    row.update(cluster_s=cluster, cluster_fps=frames / cluster if cluster else None, workers=r.get("workers"),
               lost=r.get("lost"), rc=r.get("rc"))
    if setup == "scheduler":
        row["workers_start_s"] = r.get("workers_start_s")
    return row


def batch_ratio(num: dict[str, Any], den: dict[str, Any]) -> dict[str, Any]:
    """``num``'s frames/s over ``den``'s: ``value`` when both are results over the same frames; else None and
    ``withheld`` says why (``contended``, with the flagged figures' reasons, when one side was contended).
    ``measured``: the ratio as measured, whatever it is."""
    if num.get("fps") is None or den.get("fps") is None:
        bad = [r["label"] for r in (num, den) if r.get("fps") is None]
        return {"value": None, "measured": None, "contended": False,
                "withheld": "not measured: " + "; ".join(bad) + " failed"}
    measured = num["fps"] / den["fps"]
    flagged = [r for r in (num, den) if contended(r)]
    if flagged:
        reasons = [f"{r['label']}: " + "; ".join(r["contention"]["reasons"]) for r in flagged]
        return {"value": None, "measured": measured, "contended": True, "withheld": NOT_A_RESULT,
                "reasons": reasons}
    if num["frames"] != den["frames"]:
        return {"value": None, "measured": measured, "contended": False,
                "withheld": f"not comparable: {num['frames']} frames against {den['frames']}"}
    return {"value": measured, "measured": measured, "contended": False, "withheld": None}


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------
def _first(results: dict[str, list[dict]], key: str) -> dict[str, Any] | None:
    got = results.get(key)
    return got[0] if got else None


def _model_entry(res: dict[str, Any] | None, label: str) -> dict[str, Any]:
    if res is None:
        return {"label": label, "measured": False}
    if not res.get("ok"):
        return {"label": label, "measured": False, "error": res.get("error")}
    r = res["result"]
    lat = r["latency_ms"]
    init = r["init"]
    if init.startswith("checkpoint:"):
        init = "checkpoint:" + str(display_path(init.split(":", 1)[1]))
    return {"label": label, "measured": True, "framework": r["framework"], "init": init,
            "arch": r.get("arch"), "input_size": r["input_size"], "threads": r.get("threads"),
            "threads_basis": r.get("threads_basis"),
            "latency_ms": {k: lat.get(k) for k in ("p50", "p99", "mean", "n", "p10", "p90", "noise_ms")},
            "throughput_ips": r["throughput_ips"], "wall_s": r.get("wall_s"),
            "contention": verdict(r.get("contention"), lat),
            "size_mb": r["size_mb"], "size_basis": r["size_basis"],
            "params": r.get("params"), "peak_rss_mb": res["peak_rss_mb"], "rss_isolated": res["isolated"],
            "ru_maxrss_mb": res.get("ru_maxrss_mb"),
            "rss_after_import_mb": r.get("rss_after_import_mb"), "torch_imported": res["torch_imported"],
            "build_s": r.get("build_s")}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def summarize_run(rep: dict[str, Any], cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """The columns the tables show, from one ``Pipeline.report()`` and the CPU record of its run."""
    lat = rep["latency_ms"]
    return {"mode": rep["mode"], "cam": rep["cam"], "frames_in": rep["frames_in"], "contention": verdict(cpu),
            "frames_processed": rep["frames_processed"], "frames_dropped": rep["frames_dropped"],
            "fps_in": rep["fps_in"], "fps_processed": rep["fps_processed"], "wall_s": rep["wall_s"],
            "queue": rep["queue"]["policy"],
            "capture_to_result_ms": {k: lat["capture_to_result"][k] for k in ("p50", "p95", "p99", "max")},
            "stage_p50_ms": {s: lat[s]["p50"] for s in ("queue_wait", "preprocess", "inference", "deliver")},
            "error": rep.get("error")}


def _as_row(run: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """A run's summary as a table row: a failed run (its error string) as ``{"error": ...}``, like every table."""
    return {"error": run} if isinstance(run, str) else run


def _runs_of(task_results: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    """Flatten pipeline task results into summaries (or error strings), in order."""
    out: list[dict[str, Any] | str] = []
    for res in task_results:
        if not res.get("ok"):
            out.append(str(res.get("error")))
            continue
        cpus = res["result"].get("contention") or []
        for i, rep in enumerate(res["result"]["reports"]):
            out.append(summarize_run(rep, cpus[i] if i < len(cpus) else None))
    return out


def _clip_row(clip: Path, runs: list, plan: Plan) -> dict[str, Any]:
    names = ["max_rate_cam", "max_rate_no_cam"] + (["realtime_cam", "realtime_no_cam"]
                                                   if plan.clip_realtime_s is not None else [])
    row: dict[str, Any] = {"clip": clip.name}
    for name, run in zip(names, runs):
        row[name] = run if isinstance(run, dict) else {"error": run}
    return row


def _source_info(clip: Path) -> dict[str, Any]:
    from sonolens.pipeline.sources import open_source

    src = open_source(str(clip))
    try:
        info = src.open()
        return {"width": info.width, "height": info.height, "fps": info.fps, "frame_count": info.frame_count}
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc)}
    finally:
        src.close()


__all__ = ["BATCH_LABELS", "PAPER", "SOAK_TARGET_MINUTES", "STREAMS_RULE", "TARGETS", "assemble", "batch_ratio",
           "contended", "contended_figures", "difference", "headline", "largest_holding", "stream_holds",
           "summarize_run", "timed_entries", "verdict"]
