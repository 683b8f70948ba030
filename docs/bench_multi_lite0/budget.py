"""#25: how many 30 Hz 960×720 streams can two cores hold at best? The CPU one frame costs, stage by stage.

Each stage of what one stream's frame goes through, on the bench's moving sweep (``sonolens simulate sweep --size
960x720 --fps 30 --seconds 12 --seed 0``), timed by process CPU time (every thread of this process, FFmpeg's
decoding threads included), single-threaded ONNX Runtime as the multi-stream runner uses it:

1. read: ``VideoSource.frames()`` — H.264 decoding plus the YUV→RGB conversion a RawFrame carries;
2. preprocess: ``Preprocessor`` — the ROI (tracked), grey, crop, resize, normalisation;
3. forward: the model with its fused CAM and gate score, at batch 1 and at batch ``--batch`` (the worker batches
   the frames of every stream waiting);

and, from the committed streams section (``docs/bench_multi_lite0/benchmarks/bench.json``, when given), what the
whole one-process runner measured per frame (CPU-s per wall-s over frames per second), which adds the threads, the
queues, the post-processing, telemetry and the per-frame CSV. The bound: ``cores / (30 Hz × CPU per frame)`` streams
if every core did nothing else and no frame ever waited — a ceiling, not a forecast (p99 ≤ 50 ms needs headroom).

    python docs/bench_multi_lite0/budget.py > docs/bench_multi_lite0/budget.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sonolens.pipeline.engines import load_engine
from sonolens.pipeline.preprocess import Preprocessor
from sonolens.pipeline.sources.video import VideoSource

HZ = 30.0
REPEATS = 3
SIM = ["simulate", "sweep", "--size", "960x720", "--fps", "30", "--seconds", "12", "--seed", "0"]


def make_clip(folder: Path) -> Path:
    out = folder / "moving_sweep_960x720.mp4"
    subprocess.run([sys.executable, "-m", "sonolens", *SIM, "--out", str(out), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def cpu_ms_per(n: int, fn, repeats: int = REPEATS) -> float:
    """CPU ms per item of ``fn()`` over ``n`` items: the least of ``repeats`` passes (what the work costs when
    nothing else interferes)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e3


def read_frames(clip: Path) -> list[np.ndarray]:
    with VideoSource(clip) as src:
        src.open()
        return [raw.pixels for raw in src.frames()]


def preprocess_all(meta, frames: list[np.ndarray]) -> list[np.ndarray]:
    """One stream's preprocessing: one Preprocessor sees every frame (the ROI settles over the first ones)."""
    pre = Preprocessor(meta)
    return [pre(f)[0] for f in frames]


def stage_costs(clip: Path, model: str, batch: int) -> dict[str, float]:
    frames = read_frames(clip)
    read = cpu_ms_per(len(frames), lambda: read_frames(clip))
    engine = load_engine(model, threads=1)
    prep = cpu_ms_per(len(frames), lambda: preprocess_all(engine.meta, frames))
    xs = preprocess_all(engine.meta, frames)
    engine.run_batch(np.concatenate(xs[:batch]))  # warm-up
    out = {"read": read, "preprocess": prep}
    for b in (1, batch):
        n = (len(xs) // b) * b
        out[f"forward_b{b}"] = cpu_ms_per(n, lambda b=b, n=n: [engine.run_batch(np.concatenate(xs[i:i + b]))
                                                             for i in range(0, n, b)])
    return out


def measured_runner(bench_json: Path | None) -> dict[int, float]:
    """Streams → CPU ms per frame of the whole one-process runner, from a streams section's bench.json."""
    if bench_json is None or not bench_json.is_file():
        return {}
    rows = json.loads(bench_json.read_text())["multi_stream"]["rows"]
    out = {}
    for r in rows:
        one = r["one_process"]
        fps = one["frames_processed"] / one["contention"]["wall_s"]
        out[int(r["streams"])] = one["contention"]["cpu_per_wall"] / fps * 1e3
    return out


def markdown(costs: dict[str, dict[str, float]], batch: int, cores: int, runner: dict[int, float],
             runner_model: str) -> str:
    lines = [f"CPU per frame (ms, process CPU time, ONNX Runtime 1 thread) on this machine's {cores} cores; "
             f"\"at best\" = {cores} cores / ({HZ:g} Hz × CPU per frame).", "",
             f"| model | read (decode + RGB) | preprocess | forward + CAM + gate, batch 1 / {batch} | "
             f"sum at batch {batch} | streams at best |", "|---|---|---|---|---|---|"]
    for model, c in costs.items():
        total = c["read"] + c["preprocess"] + c[f"forward_b{batch}"]
        lines.append(f"| `{model}` | {c['read']:.2f} | {c['preprocess']:.2f} | {c['forward_b1']:.2f} / "
                     f"{c[f'forward_b{batch}']:.2f} | {total:.2f} | {cores * 1e3 / (HZ * total):.1f} |")
    if runner:
        lines += ["", f"The whole one-process runner, as the committed streams section measured it (`{runner_model}`):",
                  "", "| streams | CPU per frame (ms) | streams at best at that cost |", "|---|---|---|"]
        lines += [f"| {n} | {ms:.2f} | {cores * 1e3 / (HZ * ms):.1f} |" for n, ms in sorted(runner.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=None, help="960×720 moving clip (default: made by the simulator)")
    p.add_argument("--model", action="append", default=None, help="model name or file (default: busi, busi-mnv3)")
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--bench-json", type=Path, default=Path("docs/bench_multi_lite0/benchmarks/bench.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or make_clip(Path(tmp))
        costs = {m: stage_costs(clip, m, args.batch) for m in (args.model or ["busi", "busi-mnv3"])}
    runner_model = ""
    if args.bench_json.is_file():
        runner_model = json.loads(args.bench_json.read_text())["multi_stream"]["model"]
    cores = len(os.sched_getaffinity(0))
    print(markdown(costs, args.batch, cores, measured_runner(args.bench_json), runner_model), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
