"""Step 3 of ``sonolens bench``: the plan and its inputs as ``Job``s, the subprocess tasks ``runner`` runs.

``build_jobs`` asks each measured section for its jobs, in the order they run: models, Grad-CAM, pipeline, scaling,
streams, the 4K recording, the soak, memory, the archive on Dask. A job's tasks are ``{"task": name, "args": {...}}``
for ``child``; its key is where ``assemble`` finds its results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plan import TINY_OFFLINE, TINY_PAPER, Inputs, Plan


@dataclass
class Job:
    """One or more tasks that belong in the same subprocess (e.g. the four runs of one clip)."""

    key: str
    tasks: list[dict[str, Any]]
    torch: bool
    label: str = ""
    own_process: bool = False  # always in a process of its own, even when the plan groups jobs
    timeout_s: float = 600.0  # of its subprocess (a pooled group gets the largest of its jobs')


def build_jobs(inp: Inputs, plan: Plan, sections: set[str], workdir: Path, size_clips: dict[str, Path],
               record_clip: Path | None = None) -> list[Job]:
    """Every job of the measured ``sections``, in the order they run."""
    jobs: list[Job] = []
    if "models" in sections:
        jobs += _model_jobs(inp, plan)
    if "gradcam" in sections:
        jobs += _gradcam_jobs(inp, plan, fused_side="models" not in sections)
    if "pipeline" in sections:
        jobs += _pipeline_jobs(inp, plan, workdir)
    if "scaling" in sections and inp.scale_clip is not None:
        jobs += _scaling_jobs(inp.scale_clip, inp.student, plan, size_clips)
    if "streams" in sections and inp.multi_clips:
        jobs += multi_stream_jobs(inp.multi_clips, inp.student, plan)
    if "record4k" in sections and record_clip is not None:
        jobs.append(_record_job(record_clip, inp.student, plan, workdir))
    if "soak" in sections and plan.soak_minutes and inp.standin_clip is not None:
        jobs.append(_soak_job(inp.standin_clip, inp.student, plan, plan.soak_minutes))
    if "memory" in sections and inp.scale_clip is not None:
        jobs.append(_memory_job(inp.scale_clip, inp.student, plan, workdir))
    if "batch" in sections and inp.batch_root is not None and not inp.batch_skipped:
        jobs += batch_jobs(inp.batch_root, inp.student, plan)
    return jobs


def _pipe(clip: Path, model: Path | None, *, realtime: bool, cam: bool, frames: int | None = None,
          loop: bool = False, threads: int = 0, csv: str | None = None) -> dict[str, Any]:
    """``PipelineConfig`` fields of one run; ``model=None`` runs without a model (decode + ROI only)."""
    return {"source": str(clip), "model": None if model is None else str(model), "realtime": realtime, "cam": cam,
            "frames": frames, "loop": loop, "threads": threads, "csv": csv}


def _pipeline_task(runs: list[dict[str, Any]], concurrent: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"runs": runs}
    if concurrent:
        args["concurrent"] = True
    return {"task": "pipeline", "args": args}


# --------------------------------------------------------------------------------------------------------
# 1. models, 2. Grad-CAM
# --------------------------------------------------------------------------------------------------------
def _model_jobs(inp: Inputs, plan: Plan) -> list[Job]:
    """The teachers and the student in PyTorch (torch jobs), the student files in ONNX Runtime."""
    tiny, tt = plan.tiny_teachers, plan.torch_threads
    paper_kw = dict(TINY_PAPER, input_size=(64, 64)) if tiny else {}
    offline_kw = dict(TINY_OFFLINE, input_size=(64, 64)) if tiny else {}
    t = dict(iters=plan.teacher_iters, max_s=plan.teacher_max_s, warmup=1 if plan.teacher_iters > 2 else 0,
             torch_threads=tt)
    m = dict(iters=plan.model_iters, max_s=plan.model_max_s, warmup=min(3, plan.model_iters), torch_threads=tt)
    ckpt = str(inp.teacher_checkpoint) if inp.teacher_checkpoint and not tiny else None
    jobs = [
        _torch_model_job("teacher_paper", dict(arch="hybrid_paper", kwargs=paper_kw, **t),
                         "model: paper teacher (ViT-B/16 + ConvNeXt-Tiny), PyTorch"),
        _torch_model_job("teacher_offline", dict(arch="hybrid_offline", kwargs=offline_kw, checkpoint=ckpt, **m),
                         "model: offline teacher, PyTorch"),
        _torch_model_job("student_torch", dict(arch="student", **m), "model: student, PyTorch eager"),
    ]
    for key, path, cam, what in (("student_onnx_fp32", inp.student, False, "fp32, logits"),
                                 ("student_onnx_fp32_cam", inp.student, True, "fp32, logits + fused CAM"),
                                 ("student_onnx_int8", inp.int8, False, "int8, logits"),
                                 ("student_onnx_int8_cam", inp.int8, True, "int8, logits + fused CAM")):
        jobs.append(_onnx_model_job(key, path, cam, plan, f"model: student, ONNX {what}"))
    jobs += [_onnx_model_job(key, path, True, plan, f"model: {key}") for key, (path, _) in inp.extra.items()]
    return jobs


def _torch_model_job(key: str, args: dict[str, Any], label: str) -> Job:
    return Job(key, [{"task": "torch_model", "args": args}], True, label)


def _onnx_model_job(key: str, path: Path, want_cam: bool, plan: Plan, label: str, warmup: bool = True) -> Job:
    args: dict[str, Any] = dict(path=str(path), want_cam=want_cam, iters=plan.onnx_iters, max_s=plan.onnx_max_s)
    if warmup:
        args["warmup"] = min(10, plan.onnx_iters)
    return Job(key, [{"task": "onnx_model", "args": args}], False, label)


def _gradcam_jobs(inp: Inputs, plan: Plan, fused_side: bool) -> list[Job]:
    """pytorch-grad-cam per frame; with ``fused_side`` (the models are not measured) also the fused ONNX row, the
    other side of the ratio."""
    jobs = [Job("gradcam", [{"task": "gradcam", "args": dict(iters=plan.gradcam_iters, max_s=plan.model_max_s * 2,
                                                             torch_threads=plan.torch_threads)}],
                True, "Grad-CAM: pytorch-grad-cam per frame")]
    if fused_side:
        jobs.append(_onnx_model_job("student_onnx_fp32_cam", inp.student, True, plan,
                                    "model: student, ONNX fp32, logits + fused CAM", warmup=False))
    return jobs


# --------------------------------------------------------------------------------------------------------
# 3. pipeline
# --------------------------------------------------------------------------------------------------------
def _pipeline_jobs(inp: Inputs, plan: Plan, workdir: Path) -> list[Job]:
    """The key clip looped and the naive way on it, the moving footage, then the samples and shared tables."""
    jobs: list[Job] = []
    key, student = inp.scale_clip, inp.student
    if key is not None:
        cdf_csv = str(workdir / "key_realtime.csv")
        runs = [
            _pipe(key, student, realtime=False, cam=True, frames=plan.key_max_rate_frames, loop=True),
            _pipe(key, student, realtime=False, cam=False, frames=plan.key_max_rate_frames, loop=True),
            _pipe(key, student, realtime=True, cam=True, frames=plan.key_realtime_frames, loop=True, csv=cdf_csv),
            _pipe(key, student, realtime=True, cam=False, frames=plan.key_realtime_no_cam_frames, loop=True),
        ]
        jobs.append(Job("key", [_pipeline_task([r]) for r in runs], False,
                        f"pipeline: {key.name} looped (max-rate and realtime, CAM on/off)"))
        jobs.append(Job("naive", [{"task": "naive", "args": dict(clip=str(key), frames=plan.naive_frames,
                                                                 class_mode=mode, max_s=plan.naive_max_s,
                                                                 torch_threads=plan.torch_threads)}
                                  for mode in ("top", "all")],
                        True, f"naive: PyTorch eager + pytorch-grad-cam on {key.name}"))
    if inp.moving_clip is not None:
        runs = [_pipe(inp.moving_clip, student, realtime=rt, cam=True) for rt in (False, True)]
        jobs.append(Job("moving", [_pipeline_task([r]) for r in runs], False,
                        f"pipeline: moving footage {inp.moving_clip.name} (max-rate and realtime, CAM on)"))
    for table, clips in (("samples", inp.samples), ("shared", inp.shared_videos)):
        jobs += _table_jobs(table, clips, student, plan)
    return jobs


def _table_jobs(table: str, clips: list[Path], student: Path, plan: Plan) -> list[Job]:
    """One job per clip of a table, or one for the whole table when the plan groups them."""
    if plan.group_tables and clips:
        return [Job(f"table:{table}", [_pipeline_task(table_runs(c, student, plan)) for c in clips], False,
                    f"pipeline: {table} table")]
    return [Job(f"table:{table}:{c.name}", [_pipeline_task(table_runs(c, student, plan))], False,
                f"pipeline: {table}/{c.name}") for c in clips]


def _clip_frames(clip: Path) -> tuple[int | None, float | None]:
    from sonolens.pipeline.sources import open_source

    src = open_source(str(clip))
    try:
        info = src.open()
        return info.frame_count, info.fps
    finally:
        src.close()


def table_runs(clip: Path, model: Path, plan: Plan) -> list[dict[str, Any]]:
    """The runs of one clip in a table: max-rate CAM on/off (whole clip or capped), realtime CAM on/off
    (at most ``clip_realtime_s`` seconds of the clip)."""
    runs = [_pipe(clip, model, realtime=False, cam=c, frames=plan.clip_max_rate_frames) for c in (True, False)]
    if plan.clip_realtime_s is not None:
        n, fps = _clip_frames(clip)
        cap = max(2, int(round(plan.clip_realtime_s * (fps or 25.0))))
        frames = min(n, cap) if n else cap
        runs += [_pipe(clip, model, realtime=True, cam=c, frames=frames) for c in (True, False)]
    return runs


# --------------------------------------------------------------------------------------------------------
# 4. scaling, 9. streams; 6. memory, 7. 4K recording, 8. soak: one process each
# --------------------------------------------------------------------------------------------------------
def _scaling_jobs(clip: Path, student: Path, plan: Plan, size_clips: dict[str, Path]) -> list[Job]:
    """Frame sizes (with the model and without one), ONNX Runtime threads, concurrent streams."""
    jobs = []
    for name, path in size_clips.items():
        runs = [_pipe(path, student, realtime=False, cam=True, frames=plan.size_max_rate_frames, loop=True),
                _pipe(path, None, realtime=False, cam=False, frames=plan.size_max_rate_frames, loop=True)]
        if plan.size_realtime_frames:
            runs.append(_pipe(path, student, realtime=True, cam=True, frames=plan.size_realtime_frames, loop=True))
        jobs.append(Job(f"size:{name}", [_pipeline_task(runs)], False, f"scaling: frame size {name}"))
    for n in plan.threads:
        jobs.append(Job(f"threads:{n}", [_pipeline_task([_pipe(
            clip, student, realtime=False, cam=True, frames=plan.threads_frames, loop=True, threads=n)])],
            False, f"scaling: {n} ONNX Runtime thread(s)"))
    for n in plan.streams:
        mr = [_pipe(clip, student, realtime=False, cam=True, frames=plan.streams_max_rate_frames, loop=True,
                    threads=1)] * n
        rt = [_pipe(clip, student, realtime=True, cam=True, frames=plan.streams_realtime_frames, loop=True,
                    threads=1)] * n
        jobs.append(Job(f"streams:{n}", [_pipeline_task(mr, concurrent=True), _pipeline_task(rt, concurrent=True)],
                        False, f"scaling: {n} concurrent stream(s)"))
    return jobs


def multi_stream_jobs(clips: list[Path], student: Path, plan: Plan) -> list[Job]:
    """The streams section: for each count N, N realtime streams in ONE process (``multi_stream``: ``build_streams``,
    what ``sonolens run SRC1 … SRCN`` runs), then N separate processes (``separate_processes``: today's way), one
    process each so the two see the same machine one after the other. Stream k reads ``clips[k - 1]``."""
    jobs = []
    timeout = 3 * plan.multi_seconds + 300.0  # start-up of 8 processes on a busy 2-core machine, then the clip
    for n in plan.multi_counts:
        files = [str(c) for c in clips[:n]]
        one = dict(clips=files, model=str(student), threads=plan.multi_threads, max_batch=plan.multi_max_batch)
        procs = dict(clips=files, model=str(student), threads=plan.multi_process_threads, timeout_s=timeout - 30.0)
        jobs += [Job(f"multi:one:{n}", [{"task": "multi_stream", "args": one}], False,
                     f"streams: {n} in one process", own_process=True, timeout_s=timeout),
                 Job(f"multi:procs:{n}", [{"task": "separate_processes", "args": procs}], False,
                     f"streams: {n} separate process(es)", own_process=True, timeout_s=timeout)]
    return jobs


def _record_job(record_clip: Path, student: Path, plan: Plan, workdir: Path) -> Job:
    w, h = plan.record_size
    out, rep = workdir / "record_4k.mp4", workdir / "record_4k.json"
    argv = [str(record_clip), "--model", str(student), "--realtime", "--loop", "--frames",
            str(plan.record_frames), "--record", str(out), "--json", str(rep), "--quiet"]
    return Job("record4k", [{"task": "record", "args": {"argv": argv, "report_json": str(rep)}}], False,
               f"recording: {w}×{h} source, --realtime --record", own_process=True)


def _soak_job(clip: Path, student: Path, plan: Plan, minutes: float) -> Job:
    seconds = minutes * 60.0
    return Job("soak", [{"task": "soak", "args": dict(
        source=str(clip), model=str(student), seconds=seconds, interval_s=plan.soak_interval_s,
        rate_hz=plan.soak_rate_hz)}], False,
        f"soak: {minutes:g} min of --realtime at {plan.soak_rate_hz:g} Hz on {clip.name}",
        own_process=True, timeout_s=seconds + 300.0)


def _memory_job(clip: Path, student: Path, plan: Plan, workdir: Path) -> Job:
    argv = [str(clip), "--model", str(student), "--max-rate", "--loop", "--frames",
            str(plan.run_rss_frames), "--quiet", "--json", str(workdir / "run_rss.json")]
    return Job("run_rss", [{"task": "run_cli", "args": {"argv": argv}}], False,
               "memory: peak RSS of 'sonolens run'", own_process=True)


# --------------------------------------------------------------------------------------------------------
# 10. an archive on Dask: one process each way
# --------------------------------------------------------------------------------------------------------
def batch_jobs(root: Path, student: Path, plan: Plan) -> list[Job]:
    """The batch section: the archive under ``root`` in one process (recordings one after another), then through
    ``sonolens batch`` on its LocalCluster, then on a scheduler and ``plan.batch_scheduler_workers`` workers started
    beforehand; a fresh process each (``archive``'s tasks), one after the other on the same machine."""
    common = {"root": str(root), "model": str(student)}
    t = plan.batch_timeout_s
    n = plan.batch_scheduler_workers
    return [Job("batch:one_process", [{"task": "batch_one_process", "args": common}], False,
                "batch: one process, the recordings one after another", own_process=True, timeout_s=t),
            Job("batch:local_cluster", [{"task": "batch_local", "args": common}], False,
                "batch: 'sonolens batch' on its LocalCluster", own_process=True, timeout_s=t),
            Job("batch:scheduler", [{"task": "batch_scheduler", "args": {**common, "workers": n,
                                                                         "timeout_s": t - 60.0}}],
                False, f"batch: 'sonolens batch --scheduler' (dask scheduler + {n} workers)", own_process=True,
                timeout_s=t)]
