"""Measurement tasks for ``sonolens bench``, each run in a fresh Python process.

Why a subprocess per measurement: peak resident memory (``ru_maxrss``) only means something for a process that
did nothing else, and a model measured after another one would inherit its allocator state, its threads and, for
the ONNX path, a torch import it never needs. So the parent (``runner.run_child``) writes a small JSON spec,
starts ``python -m sonolens.bench.child SPEC.json``, and reads back a JSON file with each task's result,
the process's peak RSS and whether ``torch`` ended up in ``sys.modules``.

This module imports nothing heavy at the top: torch is imported only inside the tasks that need it, which is what
lets the ONNX and pipeline measurements prove they ran without it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sonolens.bench.archive import TASKS as ARCHIVE_TASKS

TASKS: dict[str, Callable[..., dict[str, Any]]] = {}


def task(name: str):
    def deco(fn):
        TASKS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------
def ru_maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MB (KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over
    from the parent through fork + exec, so a child started by a 500 MB parent reports >= 500 MB however small
    it is (measured: a 10 MB child of a 511 MB parent read 511 MB). ``VmHWM`` belongs to the process's own
    address space, which exec creates afresh. Elsewhere, ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return ru_maxrss_mb()


NOISE_BLOCKS = 5


def noise_ms(ms: list[float], blocks: int = NOISE_BLOCKS) -> float | None:
    """How much the median of these repeats moves within the run: half the range of the medians of ``blocks``
    consecutive blocks of them (None below 2 repeats a block). Two medians closer than their combined noise
    are not a measurable difference (``assemble.difference``)."""
    import numpy as np

    a = np.asarray(ms, dtype=np.float64)
    if a.size < 2 * blocks:
        return None
    meds = [float(np.median(b)) for b in np.array_split(a, blocks)]
    return (max(meds) - min(meds)) / 2


def latency_stats(ms: list[float]) -> dict[str, float | None]:
    import numpy as np

    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p10, p50, p90, p95, p99 = np.percentile(a, [10, 50, 90, 95, 99])
    return {"n": int(a.size), "p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "p10": float(p10), "p90": float(p90),
            "noise_ms": noise_ms(ms)}


def time_calls(fn: Callable[[], Any], iters: int, warmup: int, max_s: float, threads: int | None = None
               ) -> tuple[list[float], float, dict[str, Any]]:
    """Call ``fn`` ``warmup`` times untimed, then up to ``iters`` times (stopping early after ``max_s`` seconds,
    but never before 3 calls). Returns per-call milliseconds, the wall time of the timed calls, and the CPU record
    of the timed calls (``contention.CpuWatch``: what the process got from the CPU meanwhile)."""
    from sonolens.pipeline.contention import CpuWatch

    for _ in range(max(0, warmup)):
        fn()
    out: list[float] = []
    watch = CpuWatch()
    t_start = time.perf_counter()
    for i in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
        if i >= 2 and time.perf_counter() - t_start > max_s:
            break
    wall = time.perf_counter() - t_start
    return out, wall, watch.record(threads=threads, compute_bound=True)


def _timing_result(ms: list[float], wall_s: float, cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """Latency percentiles, the measured throughput (calls / wall time of the timed loop) and the CPU record."""
    return {"latency_ms": latency_stats(ms), "throughput_ips": len(ms) / wall_s if wall_s > 0 else 0.0,
            "iters": len(ms), "wall_s": wall_s, "contention": cpu}


def vm_rss_mb() -> float | None:
    """Resident set size of this process now (``VmRSS`` of ``/proc/self/status``), MB; None where unreadable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# --------------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------------
@task("probe")
def probe(imports: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """Import the given modules and nothing else: checks the subprocess plumbing itself."""
    import importlib

    for name in imports:
        importlib.import_module(name)
    return {"imported": list(imports)}


@task("prepare_student")
def prepare_student(onnx_out: str | None = None, int8_src: str | None = None, int8_out: str | None = None,
                    seed: int = 0, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Export a random-init student (when no bundled one exists) and/or quantise a student to INT8; ``extra``:
    other students (``arch``, ``size``) exported at random init to ``out`` and quantised to ``int8_out``."""
    from sonolens.models.onnx_export import export_random_student
    from sonolens.models.quantize import quantize_int8

    out: dict[str, Any] = {}
    if onnx_out:
        t0 = time.perf_counter()
        meta = export_random_student(onnx_out, seed=seed)
        out["export_s"] = time.perf_counter() - t0
        out["arch"] = meta.arch
    if int8_src and int8_out:
        t0 = time.perf_counter()
        quantize_int8(int8_src, int8_out)
        out["quantize_s"] = time.perf_counter() - t0
    for e in extra or ():
        export_random_student(e["out"], seed=seed, arch=e["arch"], input_size=(e["size"], e["size"]))
        quantize_int8(e["out"], e["int8_out"])
    return out


def _torch_threads(n: int) -> str:
    """Set torch's intra-op thread count and say how it was chosen. ``n`` > 0: exactly ``n``. 0: the cores free
    right now (``contention.free_cores``: usable cores minus those other processes keep busy, at least 1), because
    torch's default of one thread per core spin-waits for any thread the scheduler parks: measured on 2 cores with
    one kept busy, 2 threads timed the student at 511 ms and 1 thread near its quiet 3.6 ms."""
    import torch

    from sonolens.pipeline.contention import free_cores

    if n > 0:
        torch.set_num_threads(int(n))
        return f"{n} (--torch-threads)"
    free, basis = free_cores()
    torch.set_num_threads(free)
    return f"{free} (auto: {basis})"


def _build_torch_model(arch: str, kwargs: dict[str, Any], checkpoint: str | None):
    """(model, init label) — a checkpoint when given, else random init (speed does not depend on weights)."""
    if checkpoint:
        from sonolens.models.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint), f"checkpoint:{checkpoint}"
    if arch == "student":
        from sonolens.models.random_student import build_random_student

        return build_random_student(seed=0, **kwargs), "random init"
    from sonolens.models.registry import create_model

    return create_model(arch, pretrained=False, **kwargs), "random init"


@task("torch_model")
def torch_model(arch: str, kwargs: dict[str, Any] | None = None, checkpoint: str | None = None, iters: int = 50,
                warmup: int = 3, max_s: float = 20.0, torch_threads: int = 0) -> dict[str, Any]:
    """Eager PyTorch forward, batch 1, ``torch.inference_mode``: latency, throughput, parameter bytes."""
    import torch

    threads_basis = _torch_threads(torch_threads)
    rss_import = peak_rss_mb()
    t0 = time.perf_counter()
    model, init = _build_torch_model(arch, dict(kwargs or {}), checkpoint)
    build_s = time.perf_counter() - t0
    model.eval()
    h, w = (int(v) for v in model.sonolens_spec.input_size)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    n_params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode():
        ms, wall, cpu = time_calls(lambda: model(x), iters, warmup, max_s, threads=torch.get_num_threads())
    return {**_timing_result(ms, wall, cpu), "framework": f"PyTorch {torch.__version__} eager",
            "arch": getattr(model.sonolens_spec, "arch", arch), "init": init, "input_size": [h, w],
            "params": int(n_params), "size_mb": n_params * 4 / 1e6, "size_basis": "parameter bytes, fp32",
            "threads": torch.get_num_threads(), "threads_basis": threads_basis, "build_s": build_s,
            "rss_after_import_mb": rss_import}


@task("onnx_model")
def onnx_model(path: str, want_cam: bool = True, threads: int = 0, iters: int = 200, warmup: int = 10,
               max_s: float = 10.0) -> dict[str, Any]:
    """ONNX Runtime through the runtime's own ``OnnxEngine.infer`` (the call the inference worker makes: logits,
    the CAM when wanted, and the out-of-domain score when the file has one)."""
    import numpy as np
    import onnxruntime as ort

    from sonolens.pipeline.engines import OnnxEngine

    rss_import = peak_rss_mb()
    engine = OnnxEngine(path, threads=threads)
    h, w = engine.meta.input_size
    x = np.random.default_rng(0).standard_normal((1, 3, int(h), int(w))).astype(np.float32)
    ms, wall, cpu = time_calls(lambda: engine.infer(x, want_cam=want_cam), iters, warmup, max_s,
                               threads=threads or None)
    return {**_timing_result(ms, wall, cpu), "framework": f"ONNX Runtime {ort.__version__}",
            "arch": engine.meta.arch, "init": "trained" if engine.meta.trained else "random init",
            "trained": bool(engine.meta.trained), "input_size": [int(h), int(w)],
            "size_mb": Path(path).stat().st_size / 1e6, "size_basis": "ONNX file size",
            "threads": threads, "cam": bool(want_cam and engine.has_cam), "rss_after_import_mb": rss_import}


@task("gradcam")
def gradcam(checkpoint: str | None = None, iters: int = 30, warmup: int = 2, max_s: float = 15.0,
            torch_threads: int = 0) -> dict[str, Any]:
    """pytorch-grad-cam ``GradCAM`` through ``TorchEngine``: one class per frame (what a viewer shows) and
    every class (what the fused ONNX output gives)."""
    import numpy as np
    import torch

    from sonolens.models.torch_engine import TorchEngine

    threads_basis = _torch_threads(torch_threads)
    model, init = _build_torch_model("student", {}, checkpoint)
    engine = TorchEngine(model)
    h, w = engine.meta.input_size
    x = np.random.default_rng(0).standard_normal((1, 3, int(h), int(w))).astype(np.float32)
    n = torch.get_num_threads()
    one, wall_one, cpu_one = time_calls(lambda: engine.run(x, want_cam=True, class_idx=0), iters, warmup, max_s,
                                        threads=n)
    every, wall_all, cpu_all = time_calls(lambda: engine.run(x, want_cam=True), max(1, iters // 2), 0, max_s,
                                          threads=n)
    return {"top_class": _timing_result(one, wall_one, cpu_one), "all_classes": _timing_result(every, wall_all,
                                                                                                cpu_all),
            "classes": len(engine.meta.class_names), "init": init, "threads": n, "threads_basis": threads_basis,
            "framework": f"PyTorch {torch.__version__} + pytorch-grad-cam GradCAM"}


@task("naive")
def naive(clip: str, frames: int, class_mode: str = "top", checkpoint: str | None = None,
          max_s: float = 60.0, torch_threads: int = 0) -> dict[str, Any]:
    """The naive way on a clip: one thread decodes (same source), preprocesses (same ``Preprocessor``), runs
    eager PyTorch + pytorch-grad-cam (``TorchEngine``) per frame, looping the clip until ``frames`` frames.

    ``class_mode="top"``: one GradCAM call per frame for the class on display (the previous frame's top class,
    the same cost as pytorch-grad-cam's default target); ``"all"``: every class, as the fused output gives.
    Stops early after ``max_s`` seconds (at least 3 frames), so a slow machine cannot stall the benchmark.
    """
    import numpy as np
    import torch

    from sonolens.models.torch_engine import TorchEngine
    from sonolens.pipeline.contention import CpuWatch
    from sonolens.pipeline.preprocess import Preprocessor
    from sonolens.pipeline.sources import open_source

    threads_basis = _torch_threads(torch_threads)
    model, init = _build_torch_model("student", {}, checkpoint)
    engine = TorchEngine(model)
    pre = Preprocessor(engine.meta)
    x0, _ = pre(_first_pixels(clip))
    assert x0 is not None  # a Preprocessor with a model always returns the input tensor
    engine.run(x0, want_cam=True, class_idx=0)  # warm-up: the first backward pass sets autograd up (~seconds)
    pre = Preprocessor(engine.meta)
    source = open_source(clip)
    info = source.open()
    t_done: list[int] = []
    decode_ms: list[float] = []
    pre_ms: list[float] = []
    inf_ms: list[float] = []
    top = 0
    watch = CpuWatch()
    t_start = time.perf_counter()

    def more() -> bool:
        return len(t_done) < frames and (len(t_done) < 3 or time.perf_counter() - t_start < max_s)

    try:
        while more():
            it = iter(source.frames())
            got = 0
            while more():
                t0 = time.perf_counter_ns()
                raw = next(it, None)
                if raw is None:
                    break
                got += 1
                t1 = time.perf_counter_ns()
                x, _roi = pre(raw.pixels)
                assert x is not None
                t2 = time.perf_counter_ns()
                logits, _cams = engine.run(x, want_cam=True, class_idx=top if class_mode == "top" else None)
                top = int(np.argmax(logits))
                t3 = time.perf_counter_ns()
                decode_ms.append((t1 - t0) / 1e6)
                pre_ms.append((t2 - t1) / 1e6)
                inf_ms.append((t3 - t2) / 1e6)
                t_done.append(t3)
            if got == 0:
                break
    finally:
        cpu = watch.record(threads=torch.get_num_threads(), compute_bound=True)
        source.close()
    n = len(t_done)
    fps = (n - 1) / ((t_done[-1] - t_done[0]) / 1e9) if n > 1 and t_done[-1] > t_done[0] else 0.0
    return {"frames": n, "frames_asked": frames, "fps": fps, "class_mode": class_mode, "init": init,
            "threads": torch.get_num_threads(), "threads_basis": threads_basis, "contention": cpu,
            "source": {"name": info.name, "width": info.width, "height": info.height, "fps": info.fps},
            "latency_ms": {"decode": latency_stats(decode_ms), "preprocess": latency_stats(pre_ms),
                           "inference_gradcam": latency_stats(inf_ms)}}


def _first_pixels(clip: str):
    from sonolens.pipeline.sources import open_source

    src = open_source(clip)
    src.open()
    try:
        return next(iter(src.frames())).pixels
    finally:
        src.close()


@task("pipeline")
def pipeline(runs: list[dict[str, Any]], concurrent: bool = False) -> dict[str, Any]:
    """``build`` + ``run_to_end`` for each config (sequentially), or all configs started at once and waited for
    together (``concurrent``: several streams in one process, the way one app would serve several probes)."""
    from sonolens.pipeline.contention import CpuWatch
    from sonolens.pipeline.stream import PipelineConfig, build, run_to_end

    cfgs = [PipelineConfig(**r) for r in runs]
    if not concurrent:
        reports, cpu = [], []
        for cfg in cfgs:
            pipe = build(cfg)
            watch = CpuWatch(poll=True)
            reports.append(run_to_end(pipe))
            cpu.append(watch.record(compute_bound=not cfg.realtime))
        return {"reports": reports, "contention": cpu}
    pipes = [build(cfg) for cfg in cfgs]
    watch = CpuWatch(poll=True)
    t0 = time.perf_counter()
    try:
        for p in pipes:
            p.start()
        for p in pipes:
            p.wait()
    finally:
        for p in pipes:
            p.stop()
    wall = time.perf_counter() - t0
    rec = watch.record(compute_bound=not any(c.realtime for c in cfgs))
    return {"reports": [p.report() for p in pipes], "wall_s": wall, "contention": [rec] * len(pipes)}


@task("run_cli")
def run_cli(argv: list[str]) -> dict[str, Any]:
    """``sonolens run ARGV`` in this (torch-free) process: the subcommand's own entry point, with the process
    settings ``sonolens`` applies (``cli_process_settings``, already made by ``main``)."""
    from sonolens.pipeline.run_cli import cli_main

    rc = cli_main(list(argv))
    return {"rc": int(rc), "argv": list(argv)}


def rss_growth(samples: list[tuple[float, float | None]], warmup_s: float) -> dict[str, Any]:
    """Memory growth of a soak from ``(seconds since start, VmRSS MB)`` samples, after ``warmup_s``.

    ``growth_mb``: the median of the last three samples minus the median of the first three after warm-up (one
    sample each when there are fewer); ``slope_mb_per_min``: least-squares slope over the samples after warm-up;
    ``peak_mb``: the largest sample of the whole run."""
    import numpy as np

    post = [(t, r) for t, r in samples if t >= warmup_s and r is not None]
    out: dict[str, Any] = {"warmup_s": warmup_s, "samples": len(samples), "samples_after_warmup": len(post),
                           "peak_mb": max((r for _, r in samples if r is not None), default=None),
                           "start_mb": None, "end_mb": None, "growth_mb": None, "slope_mb_per_min": None,
                           "span_s": None}
    if len(post) < 2:
        return out
    k = 3 if len(post) >= 6 else 1
    start = float(np.median([r for _, r in post[:k]]))
    end = float(np.median([r for _, r in post[-k:]]))
    t = np.asarray([p[0] for p in post]) / 60.0
    r = np.asarray([p[1] for p in post])
    slope = float(np.polyfit(t, r, 1)[0]) if np.ptp(t) > 0 else None
    out.update(start_mb=start, end_mb=end, growth_mb=end - start, slope_mb_per_min=slope,
               span_s=post[-1][0] - post[0][0])
    return out


@task("soak")
def soak(source: str, model: str | None, seconds: float, interval_s: float = 5.0, warmup_s: float | None = None,
         rate_hz: float = 30.0) -> dict[str, Any]:
    """The realtime pipeline (CAM on, the clip looped, paced at ``rate_hz``) for ``seconds``, with this process's
    resident memory (``VmRSS``) sampled every ``interval_s``: memory growth after warm-up and drops over a long
    run. Warm-up (default: 20 % of the run, at most 2 minutes) covers allocator and ONNX Runtime arenas settling."""
    from sonolens.pipeline.contention import CpuWatch
    from sonolens.pipeline.sources import open_source
    from sonolens.pipeline.stream import PipelineConfig, build

    probe = open_source(source)
    try:
        fps = probe.open().fps or rate_hz
    finally:
        probe.close()
    cfg = PipelineConfig(source=source, model=model, realtime=True, loop=True, cam=True, speed=rate_hz / fps)
    pipe = build(cfg)
    warmup = min(120.0, 0.2 * seconds) if warmup_s is None else float(warmup_s)
    samples: list[tuple[float, float | None]] = []
    watch = CpuWatch(poll=True)
    pipe.start()
    t0 = time.perf_counter()
    samples.append((0.0, vm_rss_mb()))
    ended_early = False
    try:
        while (left := t0 + seconds - time.perf_counter()) > 0:
            if pipe.wait(min(interval_s, left)):  # the source ended or failed
                ended_early = True
                break
            samples.append((time.perf_counter() - t0, vm_rss_mb()))
    finally:
        pipe.stop()
    cpu = watch.record(compute_bound=False)
    rep = pipe.report()
    return {"report": rep, "seconds": seconds, "ran_s": time.perf_counter() - t0, "rate_hz": rate_hz,
            "speed": cfg.speed, "interval_s": interval_s, "rss_mb": [[round(t, 2), r] for t, r in samples],
            "memory": rss_growth(samples, warmup), "ended_early": ended_early, "contention": cpu}


@task("record")
def record(argv: list[str], report_json: str) -> dict[str, Any]:
    """``sonolens run ARGV`` (with ``--record``) in this process, as ``run_cli`` runs it, plus the time its final
    ``Pipeline.stop()`` takes: capture and worker joined, the recorder's queued frames encoded and the file
    finished, i.e. how long a user waits for the recording once the run ends."""
    from sonolens.pipeline import run_cli as rc
    from sonolens.pipeline.contention import CpuWatch

    timing: dict[str, float] = {}
    original = rc.run_to_end

    def timed_run_to_end(pipe, *a, **k):
        real_stop = pipe.stop

        def stop() -> None:
            t0 = time.perf_counter()
            try:
                real_stop()
            finally:
                timing.setdefault("stop_s", time.perf_counter() - t0)

        pipe.stop = stop
        return original(pipe, *a, **k)

    rc.run_to_end = timed_run_to_end
    watch = CpuWatch(poll=True)
    try:
        code = rc.cli_main(list(argv))
    finally:
        rc.run_to_end = original
    cpu = watch.record(compute_bound=False)
    rep = json.loads(Path(report_json).read_text())
    out_path = Path((rep.get("recording") or {}).get("path") or "")
    size = None
    if out_path.is_file():
        size = out_path.stat().st_size / 1e6
        out_path.unlink()  # a temp file of the benchmark: only its size is kept
    return {"rc": int(code), "report": rep, "stop_s": timing.get("stop_s"), "file_mb": size, "contention": cpu}


# --------------------------------------------------------------------------------------------------------
# The streams section: N realtime streams in one process, and in N separate processes
# --------------------------------------------------------------------------------------------------------
def capture_to_result_ms(csv_path: str | Path) -> list[float]:
    """capture→result milliseconds of every processed frame of a per-frame CSV (``sonolens run --csv``)."""
    import csv

    with open(csv_path, newline="", encoding="utf-8") as f:
        return [(int(row["t_delivered_ns"]) - int(row["t_captured_ns"])) / 1e6 for row in csv.DictReader(f)
                if row.get("status") == "processed"]


def _c2r_stats(csvs: list[Path]) -> dict[str, Any]:
    """capture→result percentiles of each stream's CSV and of all their frames pooled (exact: from every frame)."""
    per = [capture_to_result_ms(p) if p.is_file() else [] for p in csvs]
    keep = ("n", "p50", "p95", "p99", "max")

    def stats(ms: list[float]) -> dict[str, Any]:
        s = latency_stats(ms)
        return {k: s.get(k) for k in keep}

    return {"per_stream": [stats(ms) for ms in per], "pooled": stats([v for ms in per for v in ms])}


@task("multi_stream")
def multi_stream(clips: list[str], model: str | None, threads: int = 0, max_batch: int = 0) -> dict[str, Any]:
    """N realtime streams, CAM on, in this one process: ``build_streams`` + ``run_to_end``, what
    ``sonolens run CLIP1 … CLIPN --realtime --csv F.csv`` runs (one capture thread and bounded queue a stream, one
    batching inference worker); the CPU record of the run and each stream's capture→result from its CSV."""
    import tempfile

    from sonolens.pipeline.contention import CpuWatch
    from sonolens.pipeline.multi import StreamSpec, build_streams, stream_path
    from sonolens.pipeline.stream import PipelineConfig, run_to_end

    with tempfile.TemporaryDirectory(prefix="sonolens-bench-multi-") as tmp:
        cfg = PipelineConfig(source=clips[0], model=model, realtime=True, cam=True, threads=threads,
                             max_batch=max_batch, csv=str(Path(tmp) / "frames.csv"))
        pipe = build_streams(cfg, [StreamSpec(c) for c in clips])
        watch = CpuWatch(poll=True)
        rep = run_to_end(pipe)
        cpu = watch.record(compute_bound=False)
        c2r = _c2r_stats([Path(str(stream_path(cfg.csv, k))) for k in range(1, len(clips) + 1)])
    return {"report": rep, "contention": cpu, "c2r": c2r, "threads": threads, "max_batch": max_batch}


@task("gated_stream")
def gated_stream(run: dict[str, Any], csv: str) -> dict[str, Any]:
    """One ``sonolens run --realtime`` pipeline (``build`` + ``run_to_end``), started on the word: built first
    (source opened, model loaded), then ``ready`` on stdout, then it waits for ``go`` on stdin — so the N separate
    processes of ``separate_processes`` run together, not one after the other's start-up."""
    from sonolens.pipeline.contention import CpuWatch
    from sonolens.pipeline.stream import PipelineConfig, build, run_to_end

    pipe = build(PipelineConfig(**run, csv=csv))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        pipe.stop()
        raise RuntimeError("not started: the measuring process gave up")
    watch = CpuWatch(poll=True)
    rep = run_to_end(pipe)
    return {"report": rep, "contention": watch.record(compute_bound=False)}


@dataclass
class _Gated:
    """Stream ``k``'s process of ``separate_processes``: where its answer and its stderr go."""

    k: int
    proc: subprocess.Popen[bytes]
    out: Path
    err: IO[bytes]

    def failure(self) -> str:
        """Why it failed: its task's error, else its exit status and the end of its stderr."""
        try:
            res = json.loads(self.out.read_text())["results"][0]
            if not res.get("ok"):
                return f"stream process {self.k}: {res.get('error')}"
        except (OSError, ValueError, KeyError, IndexError):
            pass
        tail = Path(self.err.name).read_text(errors="replace").strip().splitlines()[-3:]
        return f"stream process {self.k} exited with status {self.proc.poll()}: {' | '.join(tail) or '(no output)'}"


def _start_gated(tmp: Path, k: int, clip: str, model: str | None, threads: int) -> _Gated:
    """Start stream ``k``'s process (``gated_stream`` in a fresh ``python -m sonolens.bench.child``)."""
    run = {"source": clip, "model": model, "realtime": True, "cam": True, "threads": threads}
    spec, out = tmp / f"spec_{k}.json", tmp / f"out_{k}.json"
    spec.write_text(json.dumps({"tasks": [{"task": "gated_stream",
                                           "args": {"run": run, "csv": str(tmp / f"frames_{k}.csv")}}]}))
    err = open(tmp / f"stderr_{k}.txt", "wb")  # closed by ``_stop_all``
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sonolens.bench.child", str(spec), str(out)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=tmp)
    except BaseException:
        err.close()
        raise
    return _Gated(k, proc, out, err)


def _await_ready(procs: list[_Gated], deadline: float) -> None:
    """Wait until every process has said ``ready`` on its stdout; a ``RuntimeError`` when one ends (or the deadline
    passes) first."""
    import select

    heard = {g.k: b"" for g in procs}
    waiting = list(procs)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{len(waiting)} of {len(procs)} stream processes not ready in time")
        pipes = {g.proc.stdout.fileno(): g for g in waiting if g.proc.stdout is not None}
        readable, _, _ = select.select(list(pipes), [], [], min(left, 1.0))
        for fd in readable:
            g = pipes[fd]
            chunk = os.read(fd, 4096)
            heard[g.k] += chunk
            if b"ready\n" in heard[g.k]:
                waiting.remove(g)
            elif not chunk:
                g.proc.wait()
                raise RuntimeError(f"{g.failure()} (before it was ready)")


def _stop_all(procs: list[_Gated]) -> None:
    """Kill whatever is still running of ``procs`` (a failed measurement) and close their files."""
    for g in procs:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
        for f in (g.proc.stdin, g.proc.stdout, g.err):
            if f is not None and not f.closed:
                f.close()


def _gated_answers(procs: list[_Gated]) -> list[dict[str, Any]]:
    """Each process's answer (its one task's result and its peak RSS); a ``RuntimeError`` naming the first that
    failed."""
    answers = []
    for g in procs:
        try:
            ans = json.loads(g.out.read_text()) if g.proc.returncode == 0 else None
        except (OSError, ValueError):
            ans = None
        res = ans["results"][0] if ans else {}
        if not res.get("ok"):
            raise RuntimeError(g.failure())
        answers.append({**res["result"], "peak_rss_mb": ans["peak_rss_mb"] if ans else None})
    return answers


def _go(procs: list[_Gated], deadline: float) -> float:
    """Tell every process to go (one after the other, microseconds apart) and wait for them all, until ``deadline``
    (``time.monotonic``) at most; the wall time."""
    t0 = time.perf_counter()
    for g in procs:
        assert g.proc.stdin is not None
        g.proc.stdin.write(b"go\n")
        g.proc.stdin.close()
    for g in procs:
        g.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return time.perf_counter() - t0


@task("separate_processes")
def separate_processes(clips: list[str], model: str | None, threads: int = 1, timeout_s: float = 600.0
                       ) -> dict[str, Any]:
    """N separate realtime pipelines, one process each (today's way: N ``sonolens run --realtime --threads 1``),
    started together once all are built (``gated_stream``); the group's CPU record (``procwatch.GroupWatch``),
    each process's report and peak RSS, and each stream's capture→result from its CSV."""
    import tempfile

    from sonolens.bench.procwatch import GroupWatch

    with tempfile.TemporaryDirectory(prefix="sonolens-bench-procs-") as tmp_s:
        tmp = Path(tmp_s)
        procs: list[_Gated] = []
        try:
            for k, clip in enumerate(clips, 1):
                procs.append(_start_gated(tmp, k, clip, model, threads))
            deadline = time.monotonic() + timeout_s  # start-up gets at most half of it
            _await_ready(procs, time.monotonic() + timeout_s / 2)
            watch = GroupWatch([g.proc.pid for g in procs])
            wall = _go(procs, deadline)
            cpu = watch.record()
        finally:
            _stop_all(procs)
        answers = _gated_answers(procs)
        c2r = _c2r_stats([tmp / f"frames_{k}.csv" for k in range(1, len(clips) + 1)])
    return {"reports": [a["report"] for a in answers], "process_contention": [a["contention"] for a in answers],
            "peak_rss_mb": [a["peak_rss_mb"] for a in answers], "contention": cpu, "c2r": c2r, "wall_s": wall,
            "threads": threads}


# The batch section's tasks (one archive: one process, 'sonolens batch' on its LocalCluster, on a scheduler): their
# own module, which imports nothing heavy at its top either.
TASKS.update(ARCHIVE_TASKS)


# --------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------
def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["tasks"]`` in order; one failing task is recorded, not fatal. ``peak_rss_mb`` per task is the
    process's peak *so far* (exact for the first task; an upper bound for later ones in a shared process)."""
    results = []
    for item in spec["tasks"]:
        name, args = item["task"], dict(item.get("args") or {})
        t0 = time.perf_counter()
        try:
            if name not in TASKS:
                raise KeyError(f"unknown bench task {name!r}")
            res: dict[str, Any] = {"ok": True, "result": TASKS[name](**args)}
        except BaseException as exc:  # noqa: BLE001 - report any failure to the parent, keep going
            if isinstance(exc, KeyboardInterrupt):
                raise
            res = {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                   "traceback": traceback.format_exc()[-2000:]}
        res.update(task=name, seconds=time.perf_counter() - t0, peak_rss_mb=peak_rss_mb(),
                   ru_maxrss_mb=ru_maxrss_mb(), torch_imported="torch" in sys.modules)
        results.append(res)
    return {"results": results, "peak_rss_mb": peak_rss_mb(), "ru_maxrss_mb": ru_maxrss_mb(),
            "torch_imported": "torch" in sys.modules, "pid": os.getpid()}


def cli_process_settings() -> None:
    """The process-wide settings the ``sonolens`` command applies (``sonolens.cli.tune_process``: malloc
    tuning that changes decode speed), so a pipeline measured here runs as it does under ``sonolens run``.

    PyAV's Python log callback is then switched off again (``set_level(None)``, PyAV's default, which
    already discards FFmpeg's logs): with it installed, an FFmpeg frame-decoding thread that logs needs the
    GIL while the main thread holds it inside ``avcodec_free_context`` (closing a video mid-stream), and the
    process deadlocks.
    """
    try:
        from sonolens.cli import tune_process
    except ImportError:
        pass
    else:
        tune_process()
    disable_av_log_callback()


def disable_av_log_callback() -> None:
    try:
        import av.logging
    except ImportError:
        return
    if av.logging.get_level() is not None:
        av.logging.set_level(None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m sonolens.bench.child SPEC.json OUT.json", file=sys.stderr)
        return 2
    cli_process_settings()
    spec = json.loads(Path(argv[0]).read_text())
    out = run_spec(spec)
    Path(argv[1]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
