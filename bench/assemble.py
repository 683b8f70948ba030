"""Turn the subprocesses' raw answers into the report: model rows, ratios beside the paper's, Grad-CAM, pipeline
tables, scaling, memory, and the flat headline keys with their ``targets`` block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import Inputs, Plan

PAPER = {  # the breast-ultrasound paper's own figures, for the side-by-side table
    "teacher_ms": 242.9, "student_ms": 16.3, "student_fps": 61.5, "size_ratio": 74.0, "speed_ratio": 15.0,
    "what": "ViT-B/16 + ConvNeXt-Tiny hybrid teacher vs distilled MobileNetV3-Small student, as published",
}
# Targets of the flat headline keys. model_forward: the per-frame budget of the 250 frames/s max-rate target
# (1000 / 250 = 4 ms), since the worker's inference must fit in it for the pipeline to keep up.
TARGETS = {
    "model_forward_p50_ms": ("<=", 2.0, "student ONNX fp32 forward with fused CAM, batch 1, p50 (ms)"),
    "max_rate_fps_sonosite_cam": (">=", 250.0, "--max-rate over the SonoSite clip, CAM on (processed frames/s)"),
    "realtime_dropped_sonosite": ("<=", 0, "--realtime over the SonoSite clip, CAM on: dropped frames"),
    "realtime_capture_to_result_p99_ms_sonosite": ("<=", 15.0, "--realtime, CAM on: capture→result p99 (ms)"),
    "run_peak_rss_mb": ("<=", 400.0, "peak RSS of 'sonolens run' (ONNX path, torch not imported), MB"),
}

# --------------------------------------------------------------------------------------------------------
# Assembling the report
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
    return {"label": label, "measured": True, "framework": r["framework"], "init": r["init"],
            "arch": r.get("arch"), "input_size": r["input_size"], "threads": r.get("threads"),
            "latency_ms": {"p50": lat["p50"], "p99": lat["p99"], "mean": lat["mean"], "n": lat["n"]},
            "throughput_ips": r["throughput_ips"], "size_mb": r["size_mb"], "size_basis": r["size_basis"],
            "params": r.get("params"), "peak_rss_mb": res["peak_rss_mb"], "rss_isolated": res["isolated"],
            "ru_maxrss_mb": res.get("ru_maxrss_mb"),
            "rss_after_import_mb": r.get("rss_after_import_mb"), "torch_imported": res["torch_imported"],
            "build_s": r.get("build_s")}


def _p50(entry: dict[str, Any] | None) -> float | None:
    if not entry or not entry.get("measured"):
        return None
    return entry["latency_ms"]["p50"]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def summarize_run(rep: dict[str, Any]) -> dict[str, Any]:
    """The columns the tables show, from one ``Pipeline.report()``."""
    lat = rep["latency_ms"]
    return {"mode": rep["mode"], "cam": rep["cam"], "frames_in": rep["frames_in"],
            "frames_processed": rep["frames_processed"], "frames_dropped": rep["frames_dropped"],
            "fps_in": rep["fps_in"], "fps_processed": rep["fps_processed"], "wall_s": rep["wall_s"],
            "queue": rep["queue"]["policy"],
            "capture_to_result_ms": {k: lat["capture_to_result"][k] for k in ("p50", "p95", "p99", "max")},
            "stage_p50_ms": {s: lat[s]["p50"] for s in ("queue_wait", "preprocess", "inference", "deliver")},
            "error": rep.get("error")}


def _runs_of(task_results: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    """Flatten pipeline task results into summaries (or error strings), in order."""
    out: list[dict[str, Any] | str] = []
    for res in task_results:
        if not res.get("ok"):
            out.append(str(res.get("error")))
            continue
        for rep in res["result"]["reports"]:
            out.append(summarize_run(rep))
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


def assemble(inp: Inputs, plan: Plan, sections: set[str], results: dict[str, list[dict]],
             size_clips: dict[str, Path]) -> dict[str, Any]:
    rep: dict[str, Any] = {"paper": PAPER}
    notes = list(inp.notes)
    # 1. models --------------------------------------------------------------------------------------
    labels = {
        "teacher_paper": "Paper teacher: ViT-B/16 + ConvNeXt-Tiny hybrid",
        "teacher_offline": "Offline teacher (hybrid_offline)",
        "student_torch": "Student MobileNetV3-Small, PyTorch eager",
        "student_onnx_fp32": "Student, ONNX Runtime fp32, logits only",
        "student_onnx_fp32_cam": "Student, ONNX Runtime fp32, logits + fused CAM",
        "student_onnx_int8": "Student, ONNX Runtime int8, logits only",
        "student_onnx_int8_cam": "Student, ONNX Runtime int8, logits + fused CAM",
    }
    if plan.tiny_teachers:
        for k in ("teacher_paper", "teacher_offline"):
            labels[k] += " [SMOKE: tiny stand-in]"
    models = {k: _model_entry(_first(results, k), v) for k, v in labels.items() if k in results}
    if plan.tiny_teachers:
        notes.append("SMOKE RUN: the teachers are tiny stand-ins (vit_tiny + convnext_atto, 64 px); the numbers "
                     "only prove the plumbing.")
    if "teacher_offline" in models and models["teacher_offline"].get("measured"):
        models["teacher_offline"]["checkpoint"] = str(inp.teacher_checkpoint) if inp.teacher_checkpoint else None
    if "student_torch" in models:
        models["student_torch"]["note"] = "random init: eager speed does not depend on the weights"
    for k in ("student_onnx_fp32", "student_onnx_fp32_cam"):
        if k in models:
            models[k]["file"], models[k]["file_source"] = str(inp.student), inp.student_source
    for k in ("student_onnx_int8", "student_onnx_int8_cam"):
        if k in models:
            models[k]["file"], models[k]["file_source"] = str(inp.int8), inp.int8_source
    rep["models"] = models
    student_p50 = _p50(models.get("student_onnx_fp32_cam"))
    paper_p50 = _p50(models.get("teacher_paper"))
    size = lambda k: models[k]["size_mb"] if models.get(k, {}).get("measured") else None  # noqa: E731
    ratios = {
        "teacher_over_student": _ratio(paper_p50, student_p50),
        "offline_teacher_over_student": _ratio(_p50(models.get("teacher_offline")), student_p50),
        "teacher_over_student_torch": _ratio(paper_p50, _p50(models.get("student_torch"))),
        "size_teacher_over_student": _ratio(size("teacher_paper"), size("student_onnx_fp32")),
        "size_offline_teacher_over_student": _ratio(size("teacher_offline"), size("student_onnx_fp32")),
        "student_fps": _ratio(1000.0, student_p50),
        "basis": "p50 latency at batch 1; the student side is ONNX Runtime fp32 with the fused CAM output (what "
                 "the pipeline runs); sizes: teacher fp32 parameter bytes / student ONNX fp32 file",
        "paper": {"teacher_over_student": PAPER["teacher_ms"] / PAPER["student_ms"],
                  "size_teacher_over_student": PAPER["size_ratio"], "student_fps": PAPER["student_fps"]},
    }
    rep["ratios"] = ratios
    # 2. Grad-CAM ------------------------------------------------------------------------------------
    gc = _first(results, "gradcam")
    fused = models.get("student_onnx_fp32_cam") or _model_entry(_first(results, "student_onnx_fp32_cam"), "")
    if gc is not None:
        if gc.get("ok"):
            g = gc["result"]
            top, every = g["top_class"]["latency_ms"], g["all_classes"]["latency_ms"]
            logits_only = _p50(models.get("student_onnx_fp32"))
            rep["gradcam"] = {
                "framework": g["framework"], "threads": g["threads"], "classes": g["classes"],
                "gradcam_top_class_ms": {"p50": top["p50"], "p99": top["p99"]},
                "gradcam_all_classes_ms": {"p50": every["p50"], "p99": every["p99"]},
                "fused_ms": {"p50": _p50(fused), "p99": fused["latency_ms"]["p99"] if fused.get("measured")
                             else None},
                "fused_cam_extra_ms": (_p50(fused) - logits_only) if _p50(fused) is not None
                and logits_only is not None else None,
                "gradcam_over_fused": _ratio(top["p50"], _p50(fused)),
                "gradcam_all_over_fused": _ratio(every["p50"], _p50(fused)),
                "basis": "p50 per frame, logits + CAM; pytorch-grad-cam runs one forward+backward per class (the "
                         "headline uses one class: the one a viewer shows), the fused ONNX graph gives every "
                         "class's map in its single forward pass",
            }
        else:
            rep["gradcam"] = {"error": gc.get("error")}
    # 3. pipeline ------------------------------------------------------------------------------------
    if "pipeline" in sections:
        pipe: dict[str, Any] = {}
        key_clip = inp.scale_clip
        if "key" in results:
            runs = _runs_of(results["key"])
            names = ("max_rate_cam", "max_rate_no_cam", "realtime_cam", "realtime_no_cam")
            frames = (plan.key_max_rate_frames, plan.key_max_rate_frames, plan.key_realtime_frames,
                      plan.key_realtime_no_cam_frames)
            key: dict[str, Any] = {"clip": key_clip.name, "is_sonosite": inp.key_clip is not None,
                                   "source": _source_info(key_clip), "frames": dict(zip(names, frames)),
                                   "loop_note": f"the clip is looped (loop=True, frames=N) for a steady-state "
                                                f"measurement: --max-rate over {frames[0]} frames, --realtime over "
                                                f"{frames[2]} frames (CAM on) and {frames[3]} (CAM off)"}
            for name, run in zip(names, runs):
                key[name] = run if isinstance(run, dict) else {"error": run}
            nv = results.get("naive") or []
            for res, mode in zip(nv, ("top", "all")):
                key[f"naive_{mode}"] = res["result"] if res.get("ok") else {"error": res.get("error")}
            mr = key.get("max_rate_cam", {}).get("fps_processed")
            for mode in ("top", "all"):
                key[f"sonolens_over_naive_{mode}"] = _ratio(mr, key.get(f"naive_{mode}", {}).get("fps"))
            pipe["key"] = key
        for table, clips in (("samples", inp.samples), ("shared", inp.shared_videos)):
            rows = []
            if plan.group_tables and f"table:{table}" in results:
                per_clip = [_runs_of([r]) for r in results[f"table:{table}"]]
            else:
                per_clip = [_runs_of(results.get(f"table:{table}:{c.name}", [])) for c in clips]
            for clip, runs in zip(clips, per_clip):
                row = _clip_row(clip, runs, plan)
                row["source"] = _source_info(clip)
                rows.append(row)
            pipe[table] = rows
        if inp.shared_dir is None:
            pipe["shared_skipped"] = "../shared/videos is absent"
        mr_what = ("the whole clip" if plan.clip_max_rate_frames is None
                   else f"the first {plan.clip_max_rate_frames} frames")
        pipe["table_note"] = (f"max-rate: {mr_what}; "
                              + (f"realtime: at most {plan.clip_realtime_s:g} s of each clip"
                                 if plan.clip_realtime_s is not None else "realtime: skipped in this mode"))
        rep["pipeline"] = pipe
    # 4. scaling -------------------------------------------------------------------------------------
    if "scaling" in sections:
        sc: dict[str, Any] = {"clip": inp.scale_clip.name if inp.scale_clip else None}
        rows = []
        for name in size_clips:
            runs = _runs_of(results.get(f"size:{name}", []))
            row = {"size": name}
            for k, run in zip(("max_rate_cam", "max_rate_no_model", "realtime_cam"), runs):
                row[k] = run if isinstance(run, dict) else {"error": run}
            rows.append(row)
        sc["frame_size"] = rows
        sc["frame_size_note"] = (f"the first {plan.size_base_frames} frames of {sc['clip']} resized and re-encoded "
                                 f"(H.264) into a temp dir, looped: {plan.size_max_rate_frames} frames max-rate with "
                                 f"the model and without one (decode + ROI only: what the capture side can deliver)"
                                 + (f", {plan.size_realtime_frames} realtime" if plan.size_realtime_frames else ""))
        sc["threads"] = [{"threads": n, "max_rate_cam": (_runs_of(results.get(f"threads:{n}", [])) or [None])[0]}
                         for n in plan.threads]
        streams = []
        for n in plan.streams:
            res = results.get(f"streams:{n}", [])
            row: dict[str, Any] = {"streams": n}
            for res_i, mode in zip(res, ("max_rate_cam", "realtime_cam")):
                if not res_i.get("ok"):
                    row[mode] = {"error": res_i.get("error")}
                    continue
                per = [summarize_run(r) for r in res_i["result"]["reports"]]
                row[mode] = {"per_stream": per,
                             "aggregate_fps": sum(p["fps_processed"] for p in per),
                             "per_stream_fps_min": min(p["fps_processed"] for p in per),
                             "total_dropped": sum(p["frames_dropped"] for p in per),
                             "worst_capture_to_result_p99_ms": max(p["capture_to_result_ms"]["p99"] for p in per),
                             "wall_s": res_i["result"]["wall_s"]}
            streams.append(row)
        sc["streams"] = streams
        sc["streams_note"] = (f"N pipelines in one process, 1 ONNX Runtime thread each, started together: "
                              f"{plan.streams_max_rate_frames} frames each max-rate, {plan.streams_realtime_frames} "
                              f"realtime")
        rep["scaling"] = sc
    # 6. memory --------------------------------------------------------------------------------------
    rr = _first(results, "run_rss")
    if rr is not None:
        rep["run_memory"] = {"peak_rss_mb": rr["peak_rss_mb"] if rr.get("ok") else None,
                             "torch_imported": rr["torch_imported"], "ok": bool(rr.get("ok")),
                             "ru_maxrss_mb": rr.get("ru_maxrss_mb"),
                             "rc": rr["result"]["rc"] if rr.get("ok") else None,
                             "argv": rr["result"]["argv"] if rr.get("ok") else None,
                             "error": None if rr.get("ok") else rr.get("error"), "isolated": rr.get("isolated"),
                             "how": "the 'sonolens run' entry point (sonolens.pipeline.run_cli.cli_main) with the "
                                    "process settings the sonolens command applies, in a fresh process; its peak "
                                    "RSS (VmHWM) and 'torch' in sys.modules read at its end"}
    rep["notes"] = notes
    return rep


def headline(rep: dict[str, Any]) -> dict[str, Any]:
    """The flat keys and their ``targets`` block."""
    key = rep.get("pipeline", {}).get("key", {})
    sonosite = bool(key.get("is_sonosite"))
    mem = rep.get("run_memory", {})
    flat = {
        "teacher_over_student": rep.get("ratios", {}).get("teacher_over_student"),
        "offline_teacher_over_student": rep.get("ratios", {}).get("offline_teacher_over_student"),
        "gradcam_over_fused": rep.get("gradcam", {}).get("gradcam_over_fused"),
        "model_forward_p50_ms": _p50(rep.get("models", {}).get("student_onnx_fp32_cam")),
        "max_rate_fps_sonosite_cam": key.get("max_rate_cam", {}).get("fps_processed") if sonosite else None,
        "realtime_dropped_sonosite": key.get("realtime_cam", {}).get("frames_dropped") if sonosite else None,
        "realtime_capture_to_result_p99_ms_sonosite":
            key.get("realtime_cam", {}).get("capture_to_result_ms", {}).get("p99") if sonosite else None,
        "run_peak_rss_mb": mem.get("peak_rss_mb") if mem.get("torch_imported") is False and mem.get("isolated")
        else None,
    }
    targets = {}
    for name, (op, thr, what) in TARGETS.items():
        v = flat[name]
        ok = None if v is None else (v <= thr if op == "<=" else v >= thr)
        targets[name] = {"target": f"{op} {thr:g}", "op": op, "threshold": thr, "value": v, "pass": ok,
                         "what": what}
    if mem and mem.get("torch_imported") is not False:
        targets["run_peak_rss_mb"]["note"] = "not counted: torch was imported (or the run failed)"
    return {**flat, "targets": targets}


