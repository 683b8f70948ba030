"""What a ``sonolens bench`` run measures: the plans (full / quick / smoke), the inputs it finds (student files,
sample clips, ../shared/videos, a teacher checkpoint), the re-encoded frame-size clips, and the jobs.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .runner import Job, run_child

REPO = Path(__file__).resolve().parents[1]
SONOSITE = "itkpocus_sonosite-anon-eye1-video.mp4"  # a still: 100 identical frames (an upper bound, labelled so)
BREAST_CINE_ROWS = 3  # real breast cine clips (320×320, 30 fps) in the ../shared/videos table
SECTIONS = ("models", "gradcam", "pipeline", "scaling", "memory", "record4k", "soak")
# What each mode measures when --sections is not given. The soak runs only when asked for (--soak MINUTES); the 4K
# recording (re-encoding a 4K clip, then recording it in realtime) is left out of --quick.
DEFAULT_SECTIONS = {
    "full": ("models", "gradcam", "pipeline", "scaling", "memory", "record4k"),
    "quick": ("models", "gradcam", "pipeline", "scaling", "memory"),
    "smoke": ("models", "gradcam", "pipeline", "scaling", "memory", "record4k"),
}
FRAME_SIZES = ((350, 350), (640, 480), (960, 720), (1280, 960), (1920, 1080))
TINY_PAPER = {"vit_name": "vit_tiny_patch16_224", "cnn_name": "convnext_atto", "head_hidden": 16}
TINY_OFFLINE = {"vit_dim": 32, "vit_depth": 1, "vit_heads": 2, "head_hidden": 16}


def display_path(p: str | Path | None) -> str | None:
    """A path as the report shows it: relative to the repository when inside it, else its last part only (no
    machine paths: home folders, temp dirs)."""
    if p is None:
        return None
    path = Path(p).resolve()
    root = REPO.resolve()
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix() or "."
    shared = root.parent / "shared"  # the checkout's ../shared (datasets, videos), possibly a symbolic link
    for cand, base in ((Path(p).absolute(), shared), (path, shared.resolve())):
        if cand.is_relative_to(base):
            return ("../shared/" + cand.relative_to(base).as_posix()).rstrip("/").removesuffix("/.")
    return path.name


# --------------------------------------------------------------------------------------------------------
# Plans: how much of everything a mode measures
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    mode: str
    isolate_torch: bool = True  # one subprocess per torch measurement (False: all torch jobs in one)
    isolate_runtime: bool = True  # the same for the torch-free (ONNX, pipeline) jobs
    teacher_iters: int = 30
    teacher_max_s: float = 25.0
    model_iters: int = 100  # offline teacher, student eager
    model_max_s: float = 10.0
    onnx_iters: int = 500
    onnx_max_s: float = 5.0
    gradcam_iters: int = 50
    naive_frames: int = 200
    naive_max_s: float = 40.0  # per naive variant; stops early on a slow machine
    key_max_rate_frames: int = 1000
    key_realtime_frames: int = 1000
    key_realtime_no_cam_frames: int = 500
    moving_size: tuple[int, int] = (960, 720)  # the headline's moving footage: a simulated sweep rendered per run
    moving_seconds: float = 12.0  # at 30 fps; max-rate and realtime each over the whole clip (not looped)
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
    torch_threads: int = 0  # 0: auto, the cores free when the measurement starts (contention.free_cores)
    record_size: tuple[int, int] = (3840, 2160)  # the 4K recording section: source frame size
    record_clip_frames: int = 60  # frames of the stand-in sample re-encoded at that size (2 s at 30 fps)
    record_frames: int = 300  # frames captured in realtime (the clip looped): 10 s at 30 fps
    soak_minutes: float | None = None  # --soak MINUTES
    soak_interval_s: float = 5.0  # VmRSS sampling period of the soak
    soak_rate_hz: float = 30.0


PLANS = {
    "full": Plan("full"),
    "quick": Plan("quick", isolate_torch=False, teacher_iters=3, teacher_max_s=3.0, model_iters=30,
                  model_max_s=2.0, onnx_iters=200, onnx_max_s=1.5, gradcam_iters=10, naive_frames=50,
                  naive_max_s=6.0, key_max_rate_frames=300, key_realtime_frames=100, key_realtime_no_cam_frames=50,
                  moving_seconds=4.0, clip_max_rate_frames=100, clip_realtime_s=None, shared_all=False,
                  group_tables=True,
                  sizes=((640, 480), (1920, 1080)), size_base_frames=25, size_max_rate_frames=100,
                  size_realtime_frames=0, threads_frames=200, streams=(1, 2), streams_max_rate_frames=150,
                  streams_realtime_frames=50, run_rss_frames=150),
    "smoke": Plan("smoke", isolate_torch=False, isolate_runtime=False, teacher_iters=1, teacher_max_s=1.0,
                  model_iters=2, model_max_s=1.0, onnx_iters=3, onnx_max_s=1.0, gradcam_iters=1, naive_frames=3,
                  naive_max_s=2.0, key_max_rate_frames=12, key_realtime_frames=8, key_realtime_no_cam_frames=6,
                  moving_size=(128, 96), moving_seconds=0.3, clip_max_rate_frames=10, clip_realtime_s=0.25,
                  sample_limit=1, shared_all=False,
                  group_tables=True, sizes=((96, 64), (128, 96)), size_base_frames=4, size_max_rate_frames=8,
                  size_realtime_frames=4, threads=(1,), threads_frames=8, streams=(1, 2), streams_max_rate_frames=8,
                  streams_realtime_frames=4, run_rss_frames=8, tiny_teachers=True, torch_threads=1,
                  record_size=(128, 96), record_clip_frames=4, record_frames=8, soak_interval_s=0.25),
}


# --------------------------------------------------------------------------------------------------------
# Inputs: student files, clips
# --------------------------------------------------------------------------------------------------------
# The second student's rows (issue: "a Lite0 row beside MobileNetV3-Small's"): architecture, input size. A bundled
# trained file of that architecture and size is measured as shipped (with its gate); otherwise a random-init export
# of the same graph (the same speed) and its INT8 quantised on the fly.
EXTRA_STUDENTS = (("tf_efficientnet_lite0", 160), ("tf_efficientnet_lite0", 224))
EXTRA_LABEL = {"tf_efficientnet_lite0": "EfficientNet-Lite0"}


def extra_key(arch: str, size: int, int8: bool) -> str:
    """The job/result key of an extra student's row: ``student2_<arch>_<size>_<fp32|int8>_cam``."""
    return f"student2_{arch}_{size}_{'int8' if int8 else 'fp32'}_cam"


def extra_label(arch: str, size: int, int8: bool) -> str:
    return (f"Student {EXTRA_LABEL.get(arch, arch)} {size} px, ONNX Runtime {'int8' if int8 else 'fp32'}, logits + "
            f"fused CAM (+ gate where the file has one)")


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
    moving_clip: Path | None = None  # the simulated moving sweep (rendered by the run when the pipeline is measured)
    standin_clip: Path | None = None  # the bundled sweep sample (else the first sample), for when it is absent
    notes: list[str] = field(default_factory=list)
    extra: dict[str, tuple[Path, str]] = field(default_factory=dict)  # extra_key -> (file, where it came from)

    @property
    def scale_clip(self) -> Path | None:
        """The clip the key and scaling runs use: SonoSite, else the stand-in sample."""
        return self.key_clip if self.key_clip is not None else self.standin_clip


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
    # The teacher of the bundled BUSI student (the breast paper's comparison); any other teacher run only as a
    # fallback, newest first.
    preferred = REPO / "runs" / "busi_teacher_offline" / "best.pt"
    if preferred.is_file():
        return preferred
    found = sorted((REPO / "runs").glob("busi*teacher*/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _model_spec(path: Path) -> Any:
    """The ``ModelSpec`` of an ONNX file, or None when it cannot be read (only informational here)."""
    try:
        import onnxruntime as ort

        from sonolens.pipeline.modelfile import META_KEY, ModelSpec

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ModelSpec.from_json(sess.get_modelmeta().custom_metadata_map[META_KEY])
    except Exception:  # noqa: BLE001 - only informational
        return None


def _model_trained(path: Path) -> bool | None:
    spec = _model_spec(path)
    return None if spec is None else bool(spec.trained)


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
    extra = _extra_students(workdir, prep)
    if prep:
        say("preparing the student: " + ", ".join(k for k in ("onnx_out", "int8_out", "extra") if k in prep))
        ans = run_child([{"task": "prepare_student", "args": prep}])
        res = ans["results"][0]
        if not res.get("ok"):
            raise ConfigError(f"could not prepare the student model: {res.get('error')}")
    samples_dir = Path(args.samples) if args.samples else REPO / "assets" / "sample_videos"
    samples = sorted(samples_dir.glob("*.mp4")) if samples_dir.is_dir() else []
    if not samples:
        notes.append(f"No bundled sample clips under {display_path(samples_dir)}: that table is empty.")
    standin = next((p for p in samples if p.name == "sweep.mp4"), samples[0] if samples else None)
    if plan.sample_limit is not None:
        samples = samples[: plan.sample_limit]
    shared = _shared_dir(args.shared_videos)
    if shared is not None and shared.is_dir():
        vids = sorted(shared.glob("*.mp4")) + sorted(shared.glob("breast_cine/*/*.mp4"))[:BREAST_CINE_ROWS]
        key = shared / SONOSITE if (shared / SONOSITE).is_file() else None
    else:
        vids, key = [], None
        notes.append(f"{display_path(shared)} is absent: the ../shared/videos rows and the SonoSite targets are "
                     "skipped; "
                     "scaling runs use the bundled sweep sample instead.")
    if vids and key is None:
        notes.append(f"{SONOSITE} not found in {display_path(shared)}: the SonoSite targets are not measured.")
    if not plan.shared_all:
        vids = [v for v in vids if v == key]
    return Inputs(student=student, student_source=source,
                  student_trained=_model_trained(student), int8=int8, int8_source=int8_source,
                  teacher_checkpoint=find_teacher_checkpoint(args.teacher_checkpoint), samples=samples,
                  shared_dir=shared if shared is not None and shared.is_dir() else None, shared_videos=vids,
                  key_clip=key, standin_clip=standin, notes=notes, extra=extra)


def _extra_students(workdir: Path, prep: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """The files of ``EXTRA_STUDENTS``' rows: a bundled file of that architecture and input size (and its
    ``_int8`` sibling) when there is one, else random-init exports that ``prepare_student`` writes (``prep``)."""
    out: dict[str, tuple[Path, str]] = {}
    todo = []
    bundled = _bundled_by_arch_size()
    for arch, size in EXTRA_STUDENTS:
        fp32 = bundled.get((arch, size))
        int8 = fp32.with_name(fp32.stem + "_int8.onnx") if fp32 is not None else None
        if fp32 is not None and int8 is not None and int8.is_file():
            out[extra_key(arch, size, False)] = (fp32, "bundled")
            out[extra_key(arch, size, True)] = (int8, "bundled")
            continue
        f, q = workdir / f"{arch}_{size}.onnx", workdir / f"{arch}_{size}_int8.onnx"
        todo.append({"arch": arch, "size": size, "out": str(f), "int8_out": str(q)})
        out[extra_key(arch, size, False)] = (f, "random-init export (no gate)")
        out[extra_key(arch, size, True)] = (q, "random-init export, quantised on the fly (synthetic calibration)")
    if todo:
        prep["extra"] = todo
    return out


def _bundled_by_arch_size() -> dict[tuple[str, int], Path]:
    """Bundled fp32 model files by (architecture, input height), read from their metadata."""
    found: dict[tuple[str, int], Path] = {}
    for path in sorted((REPO / "models" / "weights").glob("*.onnx")):
        spec = None if path.stem.endswith("_int8") else _model_spec(path)
        if spec is not None:
            found.setdefault((spec.arch, int(spec.input_size[0])), path)
    return found


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


def make_moving_clip(plan: Plan, workdir: Path, say) -> Path:
    """The headline's moving footage: ``sonolens simulate sweep`` (seed 0, 30 fps, H.264) at ``plan.moving_size``
    for ``plan.moving_seconds``, rendered into ``workdir``: every frame differs (the probe moves over speckle), so
    decoding costs what a live scan costs — unlike the SonoSite clip, a still."""
    from sonolens.simulator.cli import write_clip

    w, h = plan.moving_size
    path = workdir / f"moving_sweep_{w}x{h}.mp4"
    say(f"rendering {plan.moving_seconds:g} s of a moving {w}×{h} simulated sweep (the headline's footage)")
    write_clip("sweep", path, plan.moving_seconds, seed=0, fps=30.0, size=(w, h), progress=False)
    return path


# --------------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------------
def _pipe(clip: Path, model: Path | None, *, realtime: bool, cam: bool, frames: int | None = None,
          loop: bool = False, threads: int = 0, csv: str | None = None) -> dict[str, Any]:
    """``PipelineConfig`` fields of one run; ``model=None`` runs without a model (decode + ROI only)."""
    return {"source": str(clip), "model": None if model is None else str(model), "realtime": realtime, "cam": cam,
            "frames": frames, "loop": loop, "threads": threads, "csv": csv}


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


def build_jobs(inp: Inputs, plan: Plan, sections: set[str], workdir: Path, size_clips: dict[str, Path],
               record_clip: Path | None = None) -> list[Job]:
    jobs: list[Job] = []
    student = inp.student
    if "models" in sections:
        paper_kw = dict(TINY_PAPER, input_size=(64, 64)) if plan.tiny_teachers else {}
        offline_kw = dict(TINY_OFFLINE, input_size=(64, 64)) if plan.tiny_teachers else {}
        tt = plan.torch_threads
        t = dict(iters=plan.teacher_iters, max_s=plan.teacher_max_s, warmup=1 if plan.teacher_iters > 2 else 0,
                 torch_threads=tt)
        m = dict(iters=plan.model_iters, max_s=plan.model_max_s, warmup=min(3, plan.model_iters), torch_threads=tt)
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
        jobs += [Job(key, [{"task": "onnx_model", "args": dict(path=str(path), want_cam=True, **o)}], False,
                     f"model: {key}") for key, (path, _) in inp.extra.items()]
    if "gradcam" in sections:
        jobs.append(Job("gradcam", [{"task": "gradcam", "args": dict(iters=plan.gradcam_iters,
                                                                     max_s=plan.model_max_s * 2,
                                                                     torch_threads=plan.torch_threads)}],
                        True, "Grad-CAM: pytorch-grad-cam per frame"))
        if "models" not in sections:  # the fused side of the ratio
            jobs.append(Job("student_onnx_fp32_cam", [{"task": "onnx_model", "args": dict(
                path=str(student), want_cam=True, iters=plan.onnx_iters, max_s=plan.onnx_max_s)}], False,
                "model: student, ONNX fp32, logits + fused CAM"))
    if "pipeline" in sections:
        key = inp.scale_clip
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
                                                                     class_mode=mode, max_s=plan.naive_max_s,
                                                                     torch_threads=plan.torch_threads)}
                                      for mode in ("top", "all")],
                            True, f"naive: PyTorch eager + pytorch-grad-cam on {key.name}"))
        if inp.moving_clip is not None:
            runs = [_pipe(inp.moving_clip, student, realtime=rt, cam=True) for rt in (False, True)]
            jobs.append(Job("moving", [{"task": "pipeline", "args": {"runs": [r]}} for r in runs], False,
                            f"pipeline: moving footage {inp.moving_clip.name} (max-rate and realtime, CAM on)"))
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
            runs = [_pipe(path, student, realtime=False, cam=True, frames=plan.size_max_rate_frames, loop=True),
                    _pipe(path, None, realtime=False, cam=False, frames=plan.size_max_rate_frames, loop=True)]
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
    if "record4k" in sections and record_clip is not None:
        w, h = plan.record_size
        out, rep = workdir / "record_4k.mp4", workdir / "record_4k.json"
        argv = [str(record_clip), "--model", str(student), "--realtime", "--loop", "--frames",
                str(plan.record_frames), "--record", str(out), "--json", str(rep), "--quiet"]
        jobs.append(Job("record4k", [{"task": "record", "args": {"argv": argv, "report_json": str(rep)}}], False,
                        f"recording: {w}×{h} source, --realtime --record", own_process=True))
    if "soak" in sections and plan.soak_minutes and inp.standin_clip is not None:
        seconds = plan.soak_minutes * 60.0
        jobs.append(Job("soak", [{"task": "soak", "args": dict(
            source=str(inp.standin_clip), model=str(student), seconds=seconds, interval_s=plan.soak_interval_s,
            rate_hz=plan.soak_rate_hz)}], False,
            f"soak: {plan.soak_minutes:g} min of --realtime at {plan.soak_rate_hz:g} Hz on {inp.standin_clip.name}",
            own_process=True, timeout_s=seconds + 300.0))
    if "memory" in sections:
        rss_clip = inp.scale_clip
        if rss_clip is not None:
            argv = [str(rss_clip), "--model", str(student), "--max-rate", "--loop", "--frames",
                    str(plan.run_rss_frames), "--quiet", "--json", str(workdir / "run_rss.json")]
            jobs.append(Job("run_rss", [{"task": "run_cli", "args": {"argv": argv}}], False,
                            "memory: peak RSS of 'sonolens run'", own_process=True))
    return jobs


