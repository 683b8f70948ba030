"""``sonolens bench``: every speed and memory claim of sonolens, measured side by side in one run.

One run writes ``benchmarks/bench.json`` (every number, plus machine, versions, command line and date),
``BENCHMARKS.md`` (templated from that JSON only, see ``bench_report.py``) and PNG plots. What it measures:

1. models at batch 1 — the paper's teacher architecture (ViT-B/16 ‖ ConvNeXt-Tiny), the offline teacher, the
   student in eager PyTorch, and the student in ONNX Runtime (fp32 logits, fp32 logits + fused CAM, INT8);
2. Grad-CAM per frame — pytorch-grad-cam ``GradCAM`` against the fused ONNX output;
3. the end-to-end pipeline (``build`` + ``run_to_end``, the code ``sonolens run`` uses) on the bundled samples
   and on ``../shared/videos``, ``--realtime`` and ``--max-rate``, CAM on and off, and the naive way
   (one thread: decode → preprocess → eager PyTorch + pytorch-grad-cam) on the same clip;
4. how the cost grows with frame size, ONNX Runtime threads and concurrent streams;
5. a per-stage latency CDF plot;
6. the peak RSS of ``sonolens run`` in a process that proves torch was never imported.

Every measurement runs in a fresh subprocess (``bench_child.py``) so its peak RSS is its own and no measurement
inherits another's threads, caches or imports; this parent process never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .bench_env import machine_info, versions
from .bench_report import render_markdown, write_plots

REPO = Path(__file__).resolve().parents[1]
SONOSITE = "itkpocus_sonosite-anon-eye1-video.mp4"
PAPER = {  # the breast-ultrasound paper's own figures, for the side-by-side table
    "teacher_ms": 242.9, "student_ms": 16.3, "student_fps": 61.5, "size_ratio": 74.0, "speed_ratio": 15.0,
    "what": "ViT-B/16 + ConvNeXt-Tiny hybrid teacher vs distilled MobileNetV3-Small student, as published",
}
# Targets of the flat headline keys. model_forward: the per-frame budget of the 250 frames/s max-rate target
# (1000 / 250 = 4 ms), since the worker's inference must fit in it for the pipeline to keep up.
TARGETS = {
    "model_forward_p50_ms": ("<=", 4.0, "student ONNX fp32 forward with fused CAM, batch 1, p50 (ms)"),
    "max_rate_fps_sonosite_cam": (">=", 250.0, "--max-rate over the SonoSite clip, CAM on (processed frames/s)"),
    "realtime_dropped_sonosite": ("<=", 0, "--realtime over the SonoSite clip, CAM on: dropped frames"),
    "realtime_capture_to_result_p99_ms_sonosite": ("<=", 15.0, "--realtime, CAM on: capture→result p99 (ms)"),
    "run_peak_rss_mb": ("<=", 400.0, "peak RSS of 'sonolens run' (ONNX path, torch not imported), MB"),
}
SECTIONS = ("models", "gradcam", "pipeline", "scaling", "memory")
FRAME_SIZES = ((350, 350), (640, 480), (960, 720), (1280, 960), (1920, 1080))
TINY_PAPER = {"vit_name": "vit_tiny_patch16_224", "cnn_name": "convnext_atto", "head_hidden": 16}
TINY_OFFLINE = {"vit_dim": 32, "vit_depth": 1, "vit_heads": 2, "head_hidden": 16}


# --------------------------------------------------------------------------------------------------------
# Plans: how much of everything a mode measures
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    mode: str
    isolate: bool = True  # one subprocess per measurement (False: one for torch jobs, one for the rest)
    teacher_iters: int = 30
    teacher_max_s: float = 25.0
    model_iters: int = 100  # offline teacher, student eager
    model_max_s: float = 10.0
    onnx_iters: int = 500
    onnx_max_s: float = 5.0
    gradcam_iters: int = 50
    naive_frames: int = 200
    key_max_rate_frames: int = 1000
    key_realtime_frames: int = 1000
    key_realtime_no_cam_frames: int = 500
    clip_max_rate_frames: int | None = None  # per clip of the sample/shared tables (None: the whole clip)
    clip_realtime_s: float | None = 10.0  # realtime runs of the tables: at most this many seconds (None: skip)
    sample_limit: int | None = None
    shared_all: bool = True  # False: only the key clip from ../shared/videos
    group_tables: bool = False  # one subprocess per table instead of per clip
    sizes: tuple[tuple[int, int], ...] = FRAME_SIZES
    size_base_frames: int = 50
    size_max_rate_frames: int = 300
    size_realtime_frames: int = 100  # 0: skip
    threads: tuple[int, ...] = (1, 2)
    threads_frames: int = 500
    streams: tuple[int, ...] = (1, 2, 3)
    streams_max_rate_frames: int = 500
    streams_realtime_frames: int = 250
    run_rss_frames: int = 300
    tiny_teachers: bool = False  # smoke only: tiny stand-ins for the teachers (numbers meaningless)


PLANS = {
    "full": Plan("full"),
    "quick": Plan("quick", teacher_iters=5, teacher_max_s=5.0, model_iters=30, model_max_s=3.0, onnx_iters=200,
                  onnx_max_s=2.0, gradcam_iters=10, naive_frames=50, key_max_rate_frames=300,
                  key_realtime_frames=125, key_realtime_no_cam_frames=75, clip_max_rate_frames=100,
                  clip_realtime_s=None, shared_all=False, group_tables=True, sizes=((640, 480), (1920, 1080)),
                  size_base_frames=25, size_max_rate_frames=100, size_realtime_frames=0, threads_frames=200,
                  streams=(1, 2), streams_max_rate_frames=150, streams_realtime_frames=75, run_rss_frames=150),
    "smoke": Plan("smoke", isolate=False, teacher_iters=1, teacher_max_s=1.0, model_iters=2, model_max_s=1.0,
                  onnx_iters=3, onnx_max_s=1.0, gradcam_iters=1, naive_frames=3, key_max_rate_frames=12,
                  key_realtime_frames=8, key_realtime_no_cam_frames=6, clip_max_rate_frames=10,
                  clip_realtime_s=0.25, sample_limit=1, shared_all=False, group_tables=True,
                  sizes=((96, 64), (128, 96)), size_base_frames=4, size_max_rate_frames=8, size_realtime_frames=4,
                  threads=(1,), threads_frames=8, streams=(1, 2), streams_max_rate_frames=8,
                  streams_realtime_frames=4, run_rss_frames=8, tiny_teachers=True),
}


# --------------------------------------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------------------------------------
def run_child(tasks: list[dict[str, Any]], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``tasks`` (``{"task": name, "args": {...}}``) in a fresh ``python -m sonolens.training.bench_child``
    and return its answer: ``results`` (one per task: ok/result or error, peak_rss_mb, torch_imported),
    ``peak_rss_mb`` and ``torch_imported`` of the whole process. A crash or timeout becomes per-task errors."""
    with tempfile.TemporaryDirectory(prefix="sonolens-bench-") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"tasks": tasks}))
        cmd = [sys.executable, "-m", "sonolens.training.bench_child", str(spec), str(out)]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                                  cwd=tmp)
            failure = None if proc.returncode == 0 and out.is_file() else \
                f"bench subprocess exited with status {proc.returncode}: {_tail(proc.stderr)}"
        except subprocess.TimeoutExpired:
            failure = f"bench subprocess timed out after {timeout:.0f} s"
        if failure is None:
            return json.loads(out.read_text())
    return {"results": [{"ok": False, "task": t["task"], "error": failure} for t in tasks],
            "peak_rss_mb": None, "torch_imported": None}


def _tail(text: str, n: int = 400) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-4:])[-n:] if lines else "(no output)"


@dataclass
class Job:
    """One or more tasks that belong in the same subprocess (e.g. the four runs of one clip)."""

    key: str
    tasks: list[dict[str, Any]]
    torch: bool
    label: str = ""


def execute(jobs: list[Job], isolate: bool, say) -> dict[str, list[dict[str, Any]]]:
    """Run the jobs; ``{job.key: [task result, ...]}``. Each task result carries ``isolated``: whether its
    peak RSS belongs to it alone (first task of its own process) or is a shared process's peak so far."""
    out: dict[str, list[dict[str, Any]]] = {}
    if isolate:
        for i, job in enumerate(jobs, 1):
            say(f"[{i}/{len(jobs)}] {job.label or job.key}")
            ans = run_child(job.tasks)
            out[job.key] = [dict(r, isolated=(j == 0)) for j, r in enumerate(ans["results"])]
        return out
    for torch_group in (True, False):
        group = [j for j in jobs if j.torch == torch_group]
        if not group:
            continue
        say(f"{len(group)} {'torch' if torch_group else 'runtime'} job(s) in one process")
        ans = run_child([t for j in group for t in j.tasks])
        results = iter(ans["results"])
        first = True
        for job in group:
            out[job.key] = []
            for _ in job.tasks:
                out[job.key].append(dict(next(results), isolated=first))
                first = False
    return out


# --------------------------------------------------------------------------------------------------------
# Inputs: student files, clips
# --------------------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    student: Path
    student_source: str  # "bundled" | "given" | "random-init export"
    student_trained: bool | None
    int8: Path
    int8_source: str
    teacher_checkpoint: Path | None
    samples: list[Path]
    shared_dir: Path | None
    shared_videos: list[Path]
    key_clip: Path | None  # the SonoSite clip, None when ../shared is absent
    notes: list[str] = field(default_factory=list)

    @property
    def scale_clip(self) -> Path | None:
        """The clip the scaling runs use: SonoSite, else the bundled sweep sample."""
        if self.key_clip is not None:
            return self.key_clip
        sweep = [p for p in self.samples if p.name == "sweep.mp4"]
        return (sweep or self.samples or [None])[0]


def _shared_dir(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    base = Path(os.environ.get("SONOLENS_SHARED", REPO.parent / "shared"))
    return base / "videos"


def find_teacher_checkpoint(arg: str | None) -> Path | None:
    if arg:
        p = Path(arg)
        if not p.is_file():
            raise ConfigError(f"--teacher-checkpoint {arg!r} does not exist")
        return p
    found = sorted((REPO / "runs").glob("*teacher*/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _model_trained(path: Path) -> bool | None:
    try:
        import onnxruntime as ort

        from sonolens.pipeline.modelfile import META_KEY, ModelMeta

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ModelMeta.from_json(sess.get_modelmeta().custom_metadata_map[META_KEY]).trained
    except Exception:  # noqa: BLE001 - only informational
        return None


def resolve_inputs(args: argparse.Namespace, plan: Plan, workdir: Path, say) -> Inputs:
    from sonolens.pipeline.engines import bundled_model_path

    notes: list[str] = []
    prep: dict[str, Any] = {}
    if args.student:
        student, source = Path(args.student), "given"
        if not student.is_file():
            raise ConfigError(f"--student {args.student!r} does not exist")
    else:
        bundled = bundled_model_path("busi")
        if bundled is not None:
            student, source = bundled, "bundled"
        else:
            student, source = workdir / "random_student.onnx", "random-init export"
            prep["onnx_out"] = str(student)
            notes.append("No bundled models/weights/busi_student.onnx: the student is a random-init export "
                         "(same architecture and graph, so the same speed; its predictions mean nothing).")
    if args.student_int8:
        int8, int8_source = Path(args.student_int8), "given"
        if not int8.is_file():
            raise ConfigError(f"--student-int8 {args.student_int8!r} does not exist")
    else:
        sibling = student.with_name(student.stem + "_int8.onnx")
        if sibling.is_file():
            int8, int8_source = sibling, "bundled" if source == "bundled" else "sibling file"
        else:
            int8, int8_source = workdir / "student_int8.onnx", "quantised on the fly (synthetic calibration)"
            prep["int8_src"], prep["int8_out"] = str(student), str(int8)
    if prep:
        say("preparing the student: " + ", ".join(k for k in ("onnx_out", "int8_out") if k in prep))
        ans = run_child([{"task": "prepare_student", "args": prep}])
        res = ans["results"][0]
        if not res.get("ok"):
            raise ConfigError(f"could not prepare the student model: {res.get('error')}")
    samples_dir = Path(args.samples) if args.samples else REPO / "assets" / "sample_videos"
    samples = sorted(samples_dir.glob("*.mp4")) if samples_dir.is_dir() else []
    if not samples:
        notes.append(f"No bundled sample clips under {samples_dir}: that table is empty.")
    if plan.sample_limit is not None:
        samples = samples[: plan.sample_limit]
    shared = _shared_dir(args.shared_videos)
    if shared is not None and shared.is_dir():
        vids = sorted(shared.glob("*.mp4"))
        key = shared / SONOSITE if (shared / SONOSITE).is_file() else None
    else:
        vids, key = [], None
        notes.append(f"{shared} is absent: the ../shared/videos rows and the SonoSite targets are skipped; "
                     "scaling runs use the bundled sweep sample instead.")
    if vids and key is None:
        notes.append(f"{SONOSITE} not found in {shared}: the SonoSite targets are not measured.")
    if not plan.shared_all:
        vids = [v for v in vids if v == key]
    return Inputs(student=student, student_source=source,
                  student_trained=_model_trained(student), int8=int8, int8_source=int8_source,
                  teacher_checkpoint=find_teacher_checkpoint(args.teacher_checkpoint), samples=samples,
                  shared_dir=shared if shared is not None and shared.is_dir() else None, shared_videos=vids,
                  key_clip=key, notes=notes)


def make_size_clips(base: Path, sizes: tuple[tuple[int, int], ...], n_frames: int, workdir: Path
                    ) -> dict[str, Path]:
    """Re-encode the first ``n_frames`` of ``base`` at each size into ``workdir`` (a temp dir, never the repo)."""
    import cv2

    from sonolens.pipeline.sources import open_source
    from sonolens.pipeline.videoio import VideoWriter

    src = open_source(str(base))
    info = src.open()
    frames = []
    try:
        for raw in src.frames():
            frames.append(raw.pixels)
            if len(frames) >= n_frames:
                break
    finally:
        src.close()
    out = {}
    for w, h in sizes:
        path = workdir / f"size_{w}x{h}.mp4"
        with VideoWriter(path, info.fps or 25.0, size=(w, h)) as writer:
            for px in frames:
                rgb = px if px.ndim == 3 else cv2.cvtColor(px, cv2.COLOR_GRAY2RGB)
                writer.write(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))
        out[f"{w}x{h}"] = path
    return out


# --------------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------------
def _pipe(clip: Path, model: Path, *, realtime: bool, cam: bool, frames: int | None = None, loop: bool = False,
          threads: int = 0, csv: str | None = None) -> dict[str, Any]:
    return {"source": str(clip), "model": str(model), "realtime": realtime, "cam": cam, "frames": frames,
            "loop": loop, "threads": threads, "csv": csv}


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


def build_jobs(inp: Inputs, plan: Plan, sections: set[str], workdir: Path, size_clips: dict[str, Path]
               ) -> list[Job]:
    jobs: list[Job] = []
    student = inp.student
    if "models" in sections:
        paper_kw = dict(TINY_PAPER, input_size=(64, 64)) if plan.tiny_teachers else {}
        offline_kw = dict(TINY_OFFLINE, input_size=(64, 64)) if plan.tiny_teachers else {}
        t = dict(iters=plan.teacher_iters, max_s=plan.teacher_max_s, warmup=1 if plan.teacher_iters > 2 else 0)
        m = dict(iters=plan.model_iters, max_s=plan.model_max_s, warmup=min(3, plan.model_iters))
        o = dict(iters=plan.onnx_iters, max_s=plan.onnx_max_s, warmup=min(10, plan.onnx_iters))
        ckpt = str(inp.teacher_checkpoint) if inp.teacher_checkpoint and not plan.tiny_teachers else None
        jobs += [
            Job("teacher_paper", [{"task": "torch_model", "args": dict(arch="hybrid_paper", kwargs=paper_kw, **t)}],
                True, "model: paper teacher (ViT-B/16 + ConvNeXt-Tiny), PyTorch"),
            Job("teacher_offline", [{"task": "torch_model", "args": dict(arch="hybrid_offline", kwargs=offline_kw,
                                                                         checkpoint=ckpt, **m)}],
                True, "model: offline teacher, PyTorch"),
            Job("student_torch", [{"task": "torch_model", "args": dict(arch="student", **m)}], True,
                "model: student, PyTorch eager"),
            Job("student_onnx_fp32", [{"task": "onnx_model", "args": dict(path=str(student), want_cam=False, **o)}],
                False, "model: student, ONNX fp32, logits"),
            Job("student_onnx_fp32_cam", [{"task": "onnx_model", "args": dict(path=str(student), want_cam=True,
                                                                              **o)}],
                False, "model: student, ONNX fp32, logits + fused CAM"),
            Job("student_onnx_int8", [{"task": "onnx_model", "args": dict(path=str(inp.int8), want_cam=False, **o)}],
                False, "model: student, ONNX int8, logits"),
            Job("student_onnx_int8_cam", [{"task": "onnx_model", "args": dict(path=str(inp.int8), want_cam=True,
                                                                              **o)}],
                False, "model: student, ONNX int8, logits + fused CAM"),
        ]
    if "gradcam" in sections:
        jobs.append(Job("gradcam", [{"task": "gradcam", "args": dict(iters=plan.gradcam_iters,
                                                                     max_s=plan.model_max_s * 2)}],
                        True, "Grad-CAM: pytorch-grad-cam per frame"))
        if "models" not in sections:  # the fused side of the ratio
            jobs.append(Job("student_onnx_fp32_cam", [{"task": "onnx_model", "args": dict(
                path=str(student), want_cam=True, iters=plan.onnx_iters, max_s=plan.onnx_max_s)}], False,
                "model: student, ONNX fp32, logits + fused CAM"))
    if "pipeline" in sections:
        key = inp.key_clip or inp.scale_clip
        if key is not None:
            cdf_csv = str(workdir / "key_realtime.csv")
            runs = [
                _pipe(key, student, realtime=False, cam=True, frames=plan.key_max_rate_frames, loop=True),
                _pipe(key, student, realtime=False, cam=False, frames=plan.key_max_rate_frames, loop=True),
                _pipe(key, student, realtime=True, cam=True, frames=plan.key_realtime_frames, loop=True,
                      csv=cdf_csv),
                _pipe(key, student, realtime=True, cam=False, frames=plan.key_realtime_no_cam_frames, loop=True),
            ]
            jobs.append(Job("key", [{"task": "pipeline", "args": {"runs": [r]}} for r in runs], False,
                            f"pipeline: {key.name} looped (max-rate and realtime, CAM on/off)"))
            jobs.append(Job("naive", [{"task": "naive", "args": dict(clip=str(key), frames=plan.naive_frames,
                                                                     class_mode=mode)} for mode in ("top", "all")],
                            True, f"naive: PyTorch eager + pytorch-grad-cam on {key.name}"))
        for table, clips in (("samples", inp.samples), ("shared", inp.shared_videos)):
            if plan.group_tables and clips:
                jobs.append(Job(f"table:{table}", [{"task": "pipeline", "args": {"runs": table_runs(c, student,
                                                                                                   plan)}}
                                                   for c in clips], False, f"pipeline: {table} table"))
            else:
                for c in clips:
                    jobs.append(Job(f"table:{table}:{c.name}", [{"task": "pipeline", "args": {
                        "runs": table_runs(c, student, plan)}}], False, f"pipeline: {table}/{c.name}"))
    if "scaling" in sections and inp.scale_clip is not None:
        for name, path in size_clips.items():
            runs = [_pipe(path, student, realtime=False, cam=True, frames=plan.size_max_rate_frames, loop=True)]
            if plan.size_realtime_frames:
                runs.append(_pipe(path, student, realtime=True, cam=True, frames=plan.size_realtime_frames,
                                  loop=True))
            jobs.append(Job(f"size:{name}", [{"task": "pipeline", "args": {"runs": runs}}], False,
                            f"scaling: frame size {name}"))
        clip = inp.scale_clip
        for n in plan.threads:
            jobs.append(Job(f"threads:{n}", [{"task": "pipeline", "args": {"runs": [_pipe(
                clip, student, realtime=False, cam=True, frames=plan.threads_frames, loop=True, threads=n)]}}],
                False, f"scaling: {n} ONNX Runtime thread(s)"))
        for n in plan.streams:
            mr = [_pipe(clip, student, realtime=False, cam=True, frames=plan.streams_max_rate_frames, loop=True,
                        threads=1)] * n
            rt = [_pipe(clip, student, realtime=True, cam=True, frames=plan.streams_realtime_frames, loop=True,
                        threads=1)] * n
            jobs.append(Job(f"streams:{n}", [{"task": "pipeline", "args": {"runs": mr, "concurrent": True}},
                                             {"task": "pipeline", "args": {"runs": rt, "concurrent": True}}],
                            False, f"scaling: {n} concurrent stream(s)"))
    if "memory" in sections:
        clip = inp.key_clip or inp.scale_clip
        if clip is not None:
            argv = [str(clip), "--model", str(student), "--max-rate", "--loop", "--frames",
                    str(plan.run_rss_frames), "--quiet", "--json", str(workdir / "run_rss.json")]
            jobs.append(Job("run_rss", [{"task": "run_cli", "args": {"argv": argv}}], False,
                            "memory: peak RSS of 'sonolens run'"))
    return jobs


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
        key_clip = inp.key_clip or inp.scale_clip
        if "key" in results:
            runs = _runs_of(results["key"])
            names = ("max_rate_cam", "max_rate_no_cam", "realtime_cam", "realtime_no_cam")
            frames = (plan.key_max_rate_frames, plan.key_max_rate_frames, plan.key_realtime_frames,
                      plan.key_realtime_no_cam_frames)
            key: dict[str, Any] = {"clip": key_clip.name, "is_sonosite": inp.key_clip is not None,
                                   "source": _source_info(key_clip),
                                   "loop_note": f"the clip is looped (loop=True, frames=N) for a steady-state "
                                                f"measurement over N frames: {dict(zip(names, frames))}"}
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
        pipe["table_note"] = (f"max-rate: {'whole clip' if plan.clip_max_rate_frames is None else f'first {plan.clip_max_rate_frames} frames'}; "
                              + (f"realtime: at most {plan.clip_realtime_s:g} s of each clip"
                                 if plan.clip_realtime_s is not None else "realtime: skipped in this mode"))
        rep["pipeline"] = pipe
    # 4. scaling -------------------------------------------------------------------------------------
    if "scaling" in sections:
        sc: dict[str, Any] = {"clip": inp.scale_clip.name if inp.scale_clip else None}
        rows = []
        for name in size_clips:
            runs = _runs_of(results.get(f"size:{name}", []))
            row = {"size": name, "max_rate_cam": runs[0] if runs else None}
            if len(runs) > 1:
                row["realtime_cam"] = runs[1]
            rows.append(row)
        sc["frame_size"] = rows
        sc["frame_size_note"] = (f"the first {plan.size_base_frames} frames of {sc['clip']} resized and re-encoded "
                                 f"(H.264) into a temp dir, looped: {plan.size_max_rate_frames} frames max-rate"
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
                             "rc": rr["result"]["rc"] if rr.get("ok") else None,
                             "argv": rr["result"]["argv"] if rr.get("ok") else None,
                             "error": None if rr.get("ok") else rr.get("error"),
                             "how": "sonolens.cli.main(['run', ...]) in a fresh process; ru_maxrss at the end; "
                                    "'torch' in sys.modules checked at the end"}
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
        "run_peak_rss_mb": mem.get("peak_rss_mb") if mem.get("torch_imported") is False else None,
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


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens bench",
        description="Measure every speed/memory claim side by side (models, Grad-CAM, end-to-end pipeline, "
                    "scaling, memory); writes BENCHMARKS.md, benchmarks/bench.json and PNG plots. The full run "
                    "takes ~10 minutes on 2 cores: run it on a quiet machine.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="~1-2 minute version: fewer iterations and frames, "
                                                          "skips the slowest parts")
    mode.add_argument("--smoke", action="store_true", help="seconds-long plumbing check with tiny teacher "
                                                          "stand-ins (tests); its numbers mean nothing")
    p.add_argument("--out-dir", default=None, help="where BENCHMARKS.md and benchmarks/ go (default: repo root)")
    p.add_argument("--student", default=None, help="student ONNX file (default: bundled busi_student.onnx, else "
                                                  "a random-init export, flagged)")
    p.add_argument("--student-int8", default=None, help="INT8 student (default: the *_int8.onnx sibling, else "
                                                       "quantised on the fly)")
    p.add_argument("--teacher-checkpoint", default=None,
                   help="offline teacher checkpoint (default: newest runs/*teacher*/best.pt, else random init)")
    p.add_argument("--samples", default=None, help="folder of sample clips (default: assets/sample_videos)")
    p.add_argument("--shared-videos", default=None, help="folder of real recordings (default: ../shared/videos)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    plan = PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sorted(sections - set(SECTIONS))
    if unknown:
        raise ConfigError(f"--sections: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    out_dir = Path(args.out_dir) if args.out_dir else REPO
    if not out_dir.is_dir():
        raise ConfigError(f"--out-dir {str(out_dir)!r} is not a folder")
    report = run_bench(plan, sections, args, out_dir, command="sonolens bench" + "".join(
        " " + shlex.quote(a) for a in argv))
    t = report["targets"]
    passed = sum(1 for v in t.values() if v["pass"] is True)
    measured = sum(1 for v in t.values() if v["pass"] is not None)
    print(f"wrote {out_dir / 'BENCHMARKS.md'} and {out_dir / 'benchmarks' / 'bench.json'} "
          f"({report['duration_s']:.0f} s; targets met: {passed}/{measured} measured)")
    return 0


def run_bench(plan: Plan, sections: set[str], args: argparse.Namespace, out_dir: Path, command: str
              ) -> dict[str, Any]:
    """The whole benchmark: inputs → jobs → subprocesses → JSON, Markdown and plots under ``out_dir``."""
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        el = time.perf_counter() - t0
        print(f"[bench {int(el // 60)}:{int(el % 60):02d}] {msg}", file=sys.stderr, flush=True)

    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    say(f"mode {plan.mode}, sections {', '.join(s for s in SECTIONS if s in sections)}")
    with tempfile.TemporaryDirectory(prefix="sonolens-bench-") as tmp:
        workdir = Path(tmp)
        inp = resolve_inputs(args, plan, workdir, say)
        size_clips: dict[str, Path] = {}
        if "scaling" in sections and inp.scale_clip is not None:
            say(f"re-encoding {inp.scale_clip.name} at {len(plan.sizes)} frame sizes into a temp dir")
            size_clips = make_size_clips(inp.scale_clip, plan.sizes, plan.size_base_frames, workdir)
        jobs = build_jobs(inp, plan, sections, workdir, size_clips)
        results = execute(jobs, plan.isolate, say)
        say("assembling the report")
        body = assemble(inp, plan, sections, results, size_clips)
        bench_dir = out_dir / "benchmarks"
        bench_dir.mkdir(parents=True, exist_ok=True)
        csv = workdir / "key_realtime.csv"
        plots = write_plots(body, csv if csv.is_file() else None, bench_dir)
    report: dict[str, Any] = {
        "schema": 1, "command": command, "mode": plan.mode, "date": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t0, "sections": sorted(sections),
        "machine": {**machine_info(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())},
        "versions": versions(), "plan": asdict(plan),
        "student": {"path": str(inp.student), "source": inp.student_source, "trained": inp.student_trained,
                    "int8_path": str(inp.int8), "int8_source": inp.int8_source},
        **body, "plots": {k: str(Path("benchmarks") / Path(v).name) for k, v in plots.items()},
    }
    report.update(headline(report))
    (out_dir / "benchmarks" / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "BENCHMARKS.md").write_text(render_markdown(report))
    say("done")
    return report


__all__ = ["PLANS", "Plan", "TARGETS", "cli_main", "execute", "headline", "run_bench", "run_child"]
