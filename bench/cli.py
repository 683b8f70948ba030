"""``sonolens bench``: every speed and memory claim of sonolens, measured side by side in one run.

One run writes ``benchmarks/bench.json`` (every number, plus machine, versions, command line and date),
``BENCHMARKS.md`` (templated from that JSON only, see ``report.py``) and PNG plots — under ``out/bench/`` by default,
in the repository root (the committed report) only with ``--update-committed``. What it measures:

1. models at batch 1 — the paper's teacher architecture (ViT-B/16 ‖ ConvNeXt-Tiny), the offline teacher, the
   student in eager PyTorch, and the student in ONNX Runtime (fp32 logits, fp32 logits + fused CAM, INT8);
2. Grad-CAM per frame — pytorch-grad-cam ``GradCAM`` against the fused ONNX output;
3. the end-to-end pipeline (``build`` + ``run_to_end``, the code ``sonolens run`` uses) on the bundled samples
   and on ``../shared/videos``, ``--realtime`` and ``--max-rate``, CAM on and off, and the naive way
   (one thread: decode → preprocess → eager PyTorch + pytorch-grad-cam) on the same clip;
4. how the cost grows with frame size, ONNX Runtime threads and concurrent streams;
5. a per-stage latency CDF plot;
6. the peak RSS of ``sonolens run`` in a process that proves torch was never imported;
7. recording a 3840×2160 source with ``sonolens run --realtime --record``: input fps against the source's, the
   recorder's drops, peak RSS and the time the run takes to stop (not in ``--quick``);
8. with ``--soak MINUTES``: the realtime pipeline at 30 Hz on the bundled sample, looped, for that long, with
   resident memory sampled every few seconds (growth after warm-up) and the drops;
9. many streams (section ``streams``): N simultaneous 30 Hz streams of moving 960×720 H.264 footage in ONE process
   (``sonolens run SRC1 … SRCN``: one batching inference worker) against N separate ``sonolens run --threads 1``
   processes, for each count N, and the largest count that held (0 frames dropped, capture→result p99 ≤ 50 ms).
10. an archive on Dask (section ``batch``): every clip of ../shared/videos/breast_cine (``--quick``: the first 20) in
    one process, recordings one after another (what ``sonolens run --max-rate --no-cam`` runs), against ``sonolens
    batch`` on its embedded LocalCluster and on a scheduler + 2 workers started beforehand on 127.0.0.1: total
    frames/s each way and their ratios (not in ``--quick``; skipped when the 'batch' extra is not installed).

Every timed task also records what its process got from the CPU (``sonolens.pipeline.contention``); a figure
measured while other processes competed for the cores is flagged "contended: not a result" in the report instead
of being printed as one, and the ratios built on it are withheld.

Every measurement runs in a fresh subprocess (``child.py``) so its peak RSS is its own and no measurement
inherits another's threads, caches or imports; this parent process never imports torch. ``--quick`` and
``--smoke`` pool some of them to save start-up time and say so next to each memory figure.

This module is the command line; ``run_bench`` takes the steps of the package one after the other (see
``sonolens.bench``): ``plan`` → ``inputs`` → ``jobs`` → ``runner`` → ``assemble`` (+ ``targets``) → ``report`` and
``plots``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .assemble import TARGETS, assemble, headline
from .child import disable_av_log_callback
from .env import machine_info, versions
from .inputs import make_batch_archive, make_moving_clip, make_size_clips, make_stream_clips, resolve_inputs
from .jobs import build_jobs
from .plan import DEFAULT_SECTIONS, PLANS, REPO, SECTIONS, Inputs, Plan, display_path
from .plots import write_plots
from .report import render_markdown
from .runner import Say, execute, run_child

# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------
DEFAULT_OUT = "out/bench"  # git-ignored; the committed report only with --update-committed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens bench",
        description="Measure every speed/memory claim side by side (models, Grad-CAM, end-to-end pipeline, "
                    "scaling, many streams, memory, 4K recording, an archive on Dask, optional soak); writes "
                    "BENCHMARKS.md, "
                    "benchmarks/bench.json and PNG plots. The full run takes ~25 minutes on 2 cores (plus --soak "
                    "MINUTES): run it on a quiet machine; figures measured while other processes compete for the CPU "
                    "are flagged, not reported.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="~3 minute version: fewer iterations and frames, "
                                                          "skips the slowest parts and the 4K recording")
    mode.add_argument("--smoke", action="store_true", help="seconds-long plumbing check with tiny teacher "
                                                          "stand-ins (tests); its numbers mean nothing")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out-dir", default=None, help=f"where BENCHMARKS.md and benchmarks/ go (default: "
                                                       f"{DEFAULT_OUT}; created when missing)")
    where.add_argument("--update-committed", action="store_true",
                       help="write the committed report in the repository root (BENCHMARKS.md, benchmarks/): only "
                            "for a full run on a quiet machine")
    p.add_argument("--student", default=None,
                   help="student ONNX file (default: the bundled MobileNetV3-Small, busi_student.onnx, else a "
                        "random-init export, flagged)")
    p.add_argument("--student-int8", default=None, help="INT8 student (default: the *_int8.onnx sibling, else "
                                                       "quantised on the fly)")
    p.add_argument("--teacher-checkpoint", default=None,
                   help="offline teacher checkpoint (default: newest runs/*teacher*/best.pt, else random init)")
    p.add_argument("--samples", default=None, help="folder of sample clips (default: assets/sample_videos)")
    p.add_argument("--shared-videos", default=None, help="folder of real recordings (default: ../shared/videos)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads for the PyTorch rows and the naive way (default, or 0: the cores "
                        "free when each measurement starts; torch's own one-per-core default can be ~100x slower "
                        "on a busy 2-core machine)")
    p.add_argument("--sections", default=None,
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all but soak; --quick also "
                        f"leaves out record4k and batch; --soak always adds soak)")
    p.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                   help="also run the soak section for MINUTES (e.g. 30): realtime pipeline at 30 Hz on the bundled "
                        "sample looped, resident memory sampled every few seconds, growth after warm-up and drops")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    disable_av_log_callback()  # see child.cli_process_settings: avoids a PyAV close-time deadlock
    plan = PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.torch_threads is not None:
        if args.torch_threads < 0:
            raise ConfigError(f"--torch-threads must be >= 0, got {args.torch_threads}")
        plan = replace(plan, torch_threads=args.torch_threads)
    if args.sections is None:
        sections = set(DEFAULT_SECTIONS[plan.mode])
    else:
        sections = {s.strip() for s in args.sections.split(",") if s.strip()}
        unknown = sorted(sections - set(SECTIONS))
        if unknown:
            raise ConfigError(f"--sections: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if args.soak is not None:
        if not (args.soak > 0 and args.soak < float("inf")):
            raise ConfigError(f"--soak must be a positive number of minutes, got {args.soak:g}")
        plan = replace(plan, soak_minutes=float(args.soak))
        sections.add("soak")
    if "soak" in sections and plan.soak_minutes is None:
        raise ConfigError("--sections soak needs --soak MINUTES")
    if args.update_committed and (args.quick or args.smoke):
        raise ConfigError("--update-committed replaces the committed full report: not with --quick or --smoke")
    out_dir = make_out_dir(args.out_dir, committed=args.update_committed)
    report = run_bench(plan, sections, args, out_dir, command=shown_command(argv))
    t = report["targets"]
    passed = sum(1 for v in t.values() if v["pass"] is True)
    measured = sum(1 for v in t.values() if v["pass"] is not None)
    print(f"wrote {out_dir / 'BENCHMARKS.md'} and {out_dir / 'benchmarks' / 'bench.json'} "
          f"({report['duration_s']:.0f} s; targets met: {passed}/{measured} measured)")
    return 0


def make_out_dir(arg: str | None, committed: bool = False) -> Path:
    """``--out-dir`` (default: ``DEFAULT_OUT`` under the current folder; the repository root with ``committed``,
    ``--update-committed``), created with its parents when missing; a ``ConfigError`` (one line, exit 2) when it
    cannot be. A run never replaces the committed report unless told to."""
    out_dir = REPO if committed else Path(arg) if arg else Path(DEFAULT_OUT)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {str(out_dir)!r} is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out-dir {str(out_dir)!r} cannot be created: {exc.strerror or exc}") from None
    if not out_dir.is_dir():
        raise ConfigError(f"--out-dir {str(out_dir)!r} is not a folder")
    return out_dir


def shown_command(argv: list[str]) -> str:
    """The command line as the report shows it: absolute paths as ``display_path`` shows them (no machine paths)."""
    def shown(arg: str) -> str:
        opt, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        return opt + eq + (display_path(value) or value if Path(value).is_absolute() else value)

    return "sonolens bench" + "".join(" " + shlex.quote(shown(a)) for a in argv)


def run_bench(plan: Plan, sections: set[str], args: argparse.Namespace, out_dir: Path, command: str
              ) -> dict[str, Any]:
    """The whole benchmark, one step after the other: inputs and clips → jobs → subprocesses → the assembled report
    → JSON, Markdown and plots under ``out_dir``."""
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        el = time.perf_counter() - t0
        print(f"[bench {int(el // 60)}:{int(el % 60):02d}] {msg}", file=sys.stderr, flush=True)

    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    say(f"mode {plan.mode}, sections {', '.join(s for s in SECTIONS if s in sections)}")
    with tempfile.TemporaryDirectory(prefix="sonolens-bench-") as tmp:
        workdir = Path(tmp)
        inp = resolve_inputs(args, plan, workdir, say, sections)
        size_clips, record_clip = make_clips(inp, plan, sections, workdir, say)
        jobs = build_jobs(inp, plan, sections, workdir, size_clips, record_clip)
        results = execute(jobs, plan, say)
        say("assembling the report")
        body = assemble(inp, plan, sections, results, size_clips, record_clip)
        cores = os.cpu_count() or 1
        if load_start[0] > 0.5 * cores:
            body["notes"].append(f"The machine was busy when the run started (load average {load_start[0]:.1f} on "
                                 f"{cores} cores). Each timed figure carries its own CPU record; those measured "
                                 f"while other processes competed for the cores are flagged below.")
        body["task_seconds"] = {k: round(sum(r.get("seconds", 0.0) for r in v), 2) for k, v in results.items()}
        bench_dir = out_dir / "benchmarks"
        bench_dir.mkdir(parents=True, exist_ok=True)
        csv = workdir / "key_realtime.csv"
        plots = write_plots(body, csv if csv.is_file() else None, bench_dir)
    report: dict[str, Any] = {
        "schema": 1, "command": command, "mode": plan.mode, "date": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t0, "sections": sorted(sections),
        "machine": {**machine_info(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())},
        "versions": versions(), "plan": asdict(plan),
        "student": {"path": display_path(inp.student), "source": inp.student_source,
                    "trained": inp.student_trained, "int8_path": display_path(inp.int8),
                    "int8_source": inp.int8_source},
        **body, "plots": {k: str(Path("benchmarks") / Path(v).name) for k, v in plots.items()},
    }
    report.update(headline(report))
    report = write_report(report, out_dir)
    say("done")
    return report


def make_clips(inp: Inputs, plan: Plan, sections: set[str], workdir: Path, say: Say
               ) -> tuple[dict[str, Path], Path | None]:
    """The clips the measured sections need, made in ``workdir``: the moving footage, a copy of it per stream and the
    batch section's archive (set on ``inp``), the frame-size clips (``{"WxH": path}``) and the 4K recording's
    source."""
    if "pipeline" in sections:
        inp.moving_clip = make_moving_clip(plan, workdir, say)
    if "streams" in sections:
        inp.multi_clips = make_stream_clips(plan, workdir, say)
    if "batch" in sections:
        make_batch_archive(inp, plan, workdir, say)
    size_clips: dict[str, Path] = {}
    if "scaling" in sections and inp.scale_clip is not None:
        say(f"re-encoding {inp.scale_clip.name} at {len(plan.sizes)} frame sizes into a temp dir")
        size_clips = make_size_clips(inp.scale_clip, plan.sizes, plan.size_base_frames, workdir)
    record_clip = None
    if "record4k" in sections and inp.standin_clip is not None:
        w, h = plan.record_size
        say(f"re-encoding {plan.record_clip_frames} frames of {inp.standin_clip.name} at {w}×{h} into a temp dir")
        record_clip = make_size_clips(inp.standin_clip, (plan.record_size,), plan.record_clip_frames,
                                      workdir)[f"{w}x{h}"]
    return size_clips, record_clip


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``benchmarks/bench.json`` and ``BENCHMARKS.md`` under ``out_dir``; return the report as the JSON file
    holds it, which is exactly what the Markdown is rendered from."""
    text = json.dumps(report, indent=2, default=str)
    (out_dir / "benchmarks" / "bench.json").write_text(text)
    report = json.loads(text)
    (out_dir / "BENCHMARKS.md").write_text(render_markdown(report))
    return report


__all__ = ["PLANS", "Plan", "TARGETS", "cli_main", "execute", "headline", "run_bench", "run_child"]

