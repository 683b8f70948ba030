"""Step 1 of ``sonolens bench``, what a run measures: the sections, the plans (full / quick / smoke: how much of each
section a mode measures), the second student's rows, and ``Inputs``, the files a run found or made.

Plain data and pure functions only: finding and preparing the inputs is ``inputs``, turning them into subprocess
jobs is ``jobs``. ``display_path`` is how every path appears in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SONOSITE = "itkpocus_sonosite-anon-eye1-video.mp4"  # a still: 100 identical frames (an upper bound, labelled so)
BREAST_CINE_ROWS = 3  # real breast cine clips (320×320, 30 fps) in the ../shared/videos table
SECTIONS = ("models", "gradcam", "pipeline", "scaling", "streams", "memory", "record4k", "soak", "batch")
# What each mode measures when --sections is not given. The soak runs only when asked for (--soak MINUTES); the 4K
# recording (re-encoding a 4K clip, then recording it in realtime) and the archive on Dask (three passes over 20 cine
# clips) are left out of --quick.
DEFAULT_SECTIONS = {
    "full": ("models", "gradcam", "pipeline", "scaling", "streams", "memory", "record4k", "batch"),
    "quick": ("models", "gradcam", "pipeline", "scaling", "streams", "memory"),
    "smoke": ("models", "gradcam", "pipeline", "scaling", "streams", "memory", "record4k", "batch"),
}
BREAST_CINE = "breast_cine"  # the batch section's archive: ../shared/videos/breast_cine (97 clips, 26,355 frames)
# What 'sonolens batch' needs beyond the runtime (the 'batch' extra; the modules batch.cli.require_extra checks):
# without one of them the batch section is skipped with a note.
BATCH_MODULES = ("dask", "distributed", "pyarrow")
# The batch section's three ways through one archive, in the order they run (its job keys: "batch:<way>").
BATCH_SETUPS = ("one_process", "local_cluster", "scheduler")
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
    # The streams section: N simultaneous realtime streams of moving footage (each its own copy of one rendered
    # sweep, read once, not looped) in ONE process (`sonolens run SRC1 … SRCN`), then in N separate processes.
    multi_counts: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    multi_size: tuple[int, int] = (960, 720)
    multi_seconds: float = 12.0  # at 30 fps: 360 frames a stream
    multi_threads: int = 1  # ONNX Runtime threads of the one process (1: what `sonolens run SRC1 SRC2 …` defaults to)
    multi_process_threads: int = 1  # ... of each separate process (today's way: `sonolens run --threads 1`)
    multi_max_batch: int = 0  # --max-batch of the one process (0: one frame from every stream)
    # The batch section: one archive three ways (one process, 'sonolens batch' on its LocalCluster, on a scheduler
    # and workers started beforehand). The recordings: the first batch_limit clips of ../shared/videos/breast_cine in
    # sorted order (None: all), or, with batch_rendered > 0, that many simulated sweeps rendered into the temp dir.
    batch_limit: int | None = None
    batch_rendered: int = 0
    batch_rendered_size: tuple[int, int] = (128, 96)
    batch_rendered_seconds: float = 0.3
    batch_scheduler_workers: int = 2  # `dask worker --nworkers N --nthreads 1` beside `dask scheduler`
    batch_timeout_s: float = 1800.0  # of each of the three measurements (start-up and clean-up included)
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
                  streams_realtime_frames=50, run_rss_frames=150, multi_counts=(1, 2, 4, 6, 8), multi_seconds=4.0,
                  batch_limit=20, batch_timeout_s=900.0),
    "smoke": Plan("smoke", isolate_torch=False, isolate_runtime=False, teacher_iters=1, teacher_max_s=1.0,
                  model_iters=2, model_max_s=1.0, onnx_iters=3, onnx_max_s=1.0, gradcam_iters=1, naive_frames=3,
                  naive_max_s=2.0, key_max_rate_frames=12, key_realtime_frames=8, key_realtime_no_cam_frames=6,
                  moving_size=(128, 96), moving_seconds=0.3, clip_max_rate_frames=10, clip_realtime_s=0.25,
                  sample_limit=1, shared_all=False,
                  group_tables=True, sizes=((96, 64), (128, 96)), size_base_frames=4, size_max_rate_frames=8,
                  size_realtime_frames=4, threads=(1,), threads_frames=8, streams=(1, 2), streams_max_rate_frames=8,
                  streams_realtime_frames=4, run_rss_frames=8, tiny_teachers=True, torch_threads=1,
                  record_size=(128, 96), record_clip_frames=4, record_frames=8, soak_interval_s=0.25,
                  multi_counts=(1, 2), multi_size=(128, 96), multi_seconds=0.3, batch_rendered=3,
                  batch_timeout_s=300.0),
}


# --------------------------------------------------------------------------------------------------------
# Inputs: the second student's rows, the files a run found or made
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
    """What ``inputs.resolve_inputs`` found or made for a run (the jobs and the report are built from it)."""

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
    multi_clips: list[Path] = field(default_factory=list)  # the streams section: stream k reads multi_clips[k - 1]
    batch_root: Path | None = None  # the batch section's archive (a folder of recordings; None: not measured)
    batch_selection: str = ""  # which recordings it holds, as the report says it
    batch_full: bool = False  # every clip of ../shared/videos/breast_cine: what the batch targets are stated over
    batch_skipped: str | None = None  # why the batch section was not measured (the extra missing, no recordings)
    standin_clip: Path | None = None  # the bundled sweep sample (else the first sample), for when it is absent
    notes: list[str] = field(default_factory=list)
    extra: dict[str, tuple[Path, str]] = field(default_factory=dict)  # extra_key -> (file, where it came from)

    @property
    def scale_clip(self) -> Path | None:
        """The clip the key and scaling runs use: SonoSite, else the stand-in sample."""
        return self.key_clip if self.key_clip is not None else self.standin_clip
