"""``sonolens run``: the headless pipeline, with a JSON report, a per-frame CSV and an optional recording."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .config import Resolved, resolve
from .engines import NO_MODEL, resolve_model_path
from .errors import ConfigError, SonolensError, SourceError
from .outputs import check_writable, refuse_inputs_as_outputs, strict_json, write_text_atomic
from .shutdown import ShutdownSignals, signal_name
from .stream import build, run_to_end

REPORT_EVERY_S = 5.0  # a running `--json` report is refreshed this often (marked complete: false)
DEFAULT_SAMPLE = "assets/sample_videos/busi_demo.mp4"  # real BUSI test images, panned (see its README)


MULTI_HELP = (
    "Several SOURCEs run as streams of one process: a capture thread and a bounded queue (with its own drop count) "
    "per stream, one inference worker that runs the waiting frame of every stream as one batch through the model, "
    "each result back to its stream. Every flag applies to each stream (--frames: per stream). Outputs per stream, "
    "numbered 1, 2... in the order given: --csv F.csv and --record R.mp4 write F_1.csv, F_2.csv... and R_1.mp4, "
    "R_2.mp4... (the number before the extension; none may be an input); --json writes one report with a section "
    "per stream and the totals; --igtl-send sends stream N as devices SonolensResult_N and SonolensHeatmap_N. A "
    "stream that stalls or ends does not hold the others; the run ends when all have ended. In a config file: "
    "'sources:' with one entry per stream (spec, optional options).")


def default_sample() -> str | None:
    """The bundled sample clip: next to the installed package (editable install) or in the working directory."""
    here = Path(__file__).resolve().parents[1] / DEFAULT_SAMPLE
    for p in (here, Path.cwd() / DEFAULT_SAMPLE):
        if p.is_file():
            return str(p)
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens run",
        description="Run source -> bounded queue -> ONNX inference with Grad-CAM -> report, headless. "
                    "Research use only - not for diagnosis.", epilog=MULTI_HELP)
    p.add_argument("source", nargs="*", metavar="SOURCE",
                   help="video file, camera:N, /dev/videoN, stream URL, image, folder of images, or phantom:KIND "
                        "(default: the bundled sample); several: one stream each, in one process (see below)")
    p.add_argument("--model", default=None,
                   help="ONNX model file or bundled name: busi (default; breast ultrasound, EfficientNet-Lite0), "
                        "busi-mnv3 (breast, the paper's MobileNetV3-Small), busi-uclm (breast, MobileNetV3-Small on "
                        "two hospitals), chest-xray (chest X-rays, not ultrasound); 'off' for none")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                      help="pace files by their timestamps (default)")
    pace.add_argument("--max-rate", dest="realtime", action="store_false", help="read as fast as possible")
    p.add_argument("--frames", type=int, default=None, help="stop after N captured frames")
    p.add_argument("--queue", choices=["latest", "block"], default=None,
                   help="latest: drop (and count) the oldest waiting frame; block: process every frame. "
                        "Default: latest with --realtime, block with --max-rate")
    p.add_argument("--loop", action="store_true", default=None, help="restart the file at its end")
    p.add_argument("--start", type=float, default=None, dest="start_s", help="start offset in seconds")
    p.add_argument("--speed", type=float, default=None, help="playback speed factor for --realtime")
    p.add_argument("--roi", default=None, help="x,y,w,h of the ultrasound image (default: detected automatically)")
    p.add_argument("--dwell", type=float, default=None, metavar="S",
                   help="a folder of images: show each for S seconds (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads (0 = its default, one per core; with several SOURCEs the "
                        "default is 1)")
    p.add_argument("--no-cam", dest="cam", action="store_false", default=None, help="skip the Grad-CAM output")
    p.add_argument("--ema", type=float, default=None, help="probability smoothing factor in [0, 1)")
    p.add_argument("--decision", dest="decision_s", type=float, default=None, metavar="SECONDS",
                   help="video-level decision: probabilities smoothed with this time constant (e.g. 1), and the "
                        "shown class changes only when another leads by --decision-margin (default: off)")
    p.add_argument("--decision-margin", type=float, default=None, help="lead needed to change the shown class "
                                                                      "(default 0.15)")
    p.add_argument("--no-gate", dest="gate", action="store_false", default=None,
                   help="research: predict on every frame, even outside the model's training domain or without an "
                        "image (the score and the state are still logged)")
    p.add_argument("--reconnect", type=int, nargs="?", const=10, default=None, metavar="N",
                   help="live sources: when the connection drops (or a stream starts late), reopen it with back-off, "
                        "up to N attempts in a row (default N: 10); disconnects and gaps go in the report")
    p.add_argument("--record", default=None, metavar="OUT.mp4", help="write the video with the overlay burned in")
    p.add_argument("--record-size", default=None, metavar="WxH", type=parse_size,
                   help="--record at this size (the image fitted, aspect kept; the overlay drawn at this size). "
                        "Default: the source's, upscaled 2×, 3×… when its short side is under 480 px")
    p.add_argument("--igtl-send", default=None, metavar="HOST:PORT",
                   help="send each result to an OpenIGTLink server (e.g. 3D Slicer): probabilities as a STRING, "
                        "the heat map as an IMAGE (needs the 'igtl' extra)")
    p.add_argument("--json", default=None, metavar="REPORT.json", help="write the end-of-run report")
    p.add_argument("--csv", default=None, metavar="FRAMES.csv", help="write one row per frame with every timestamp")
    p.add_argument("--max-batch", dest="max_batch", type=int, default=None, metavar="N",
                   help="several sources: at most N frames per engine call (default 0: one from every stream; 1: "
                        "one frame per call, the unbatched baseline)")
    p.add_argument("--config", default=None, help="YAML file of pipeline settings (flags override it)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def _fmt(report: dict) -> str:
    lat = report["latency_ms"]
    lines = [
        f"{report['source']['name']}: {report['frames_in']} in, {report['frames_processed']} processed, "
        f"{report['frames_dropped']} dropped ({report['mode']}, queue={report['queue']['policy']}, "
        f"cam={'on' if report['cam'] else 'off'})",
        f"fps in {report['fps_in']:.1f}, processed {report['fps_processed']:.1f}; roi {report['roi']}",
    ]
    pred = report.get("predictions")
    if pred:
        states = ", ".join(f"{k} {v}" for k, v in pred["frames_by_state"].items())
        tops = ", ".join(f"{k} {v}" for k, v in pred["frames_by_top_class"].items())
        shown = "by shown class after the video-level decision" if report.get("decision") else "by top class"
        lines.append(f"frames by state: {states}; {shown} (ok frames): {tops}")
    lines.append("latency ms      p50     p95     p99     max")
    for stage, s in lat.items():
        lines.append(f"  {stage:<18}{s['p50']:7.2f} {s['p95']:7.2f} {s['p99']:7.2f} {s['max']:7.2f}")
    return "\n".join(lines)


def cli_main(argv: list[str]) -> int:
    """``sonolens run``. Exit 0; 2 with one line for bad input or a fault (the reports are still written);
    128 + N after signal N (Ctrl-C: 130, SIGTERM: 143), after a clean shutdown that wrote the reports."""
    args = parser().parse_intermixed_args(argv)  # SOURCEs and flags in any order
    resolved = resolve_args(args, mode="run")
    for note in resolved.notes:
        print(f"sonolens: note: {note}", file=sys.stderr)
    cfg = resolved.pipeline
    args.json, args.record = resolved.outputs["json"], resolved.outputs["record"]
    if args.record_size is not None and not args.record:
        raise ConfigError("--record-size sets the size of the --record video: give --record OUT.mp4 too")
    if resolved.sources:  # several streams in one process
        from .multi_cli import run_streams

        return run_streams(args, resolved, model_file=model_file_of(cfg.model), every_s=REPORT_EVERY_S)
    # every output is checked before the first frame: a report must not fail after an hour of processing
    outputs = {"report": args.json, "per-frame CSV": cfg.csv, "recording": args.record}
    refuse_inputs_as_outputs(outputs, {"source": cfg.source, "model": model_file_of(cfg.model),
                                       "config": args.config})
    for what, path in outputs.items():
        if path:
            check_writable(path, what)

    with ShutdownSignals() as signals:
        pipe = build(cfg)
        recorder = None
        if args.record:
            from .record import Recorder, recording_style

            # live: the recorder drops (and counts) frames rather than slow the live path; offline: keeps all
            style = recording_style(pipe.warnings(), pipe.engine.meta.ood if pipe.engine is not None else None,
                                    cfg.gate)
            recorder = Recorder(args.record, fps=pipe.info.fps or 30.0, block=not cfg.realtime, style=style,
                                hud_source=lambda: {"fps": _live_fps(pipe)}, size=args.record_size)
            pipe.add_sink(recorder)
            pipe.add_closer(recorder.close)
        igtl = None
        if args.igtl_send:
            from .igtl_sink import IgtlSink

            igtl = IgtlSink(args.igtl_send)  # connects now: a wrong address fails before the first frame
            pipe.add_sink(igtl)
            pipe.add_closer(igtl.close)
        before = pipe.warnings()
        for warning in before:
            print(f"sonolens: warning: {warning}", file=sys.stderr)
        def interim() -> None:
            """The report so far, marked incomplete: after a kill -9 the JSON loses at most REPORT_EVERY_S."""
            try:
                write_text_atomic(args.json, strict_json(_with_sinks(pipe.report(), recorder, igtl, False)),
                                  "report")
            except Exception:  # noqa: BLE001 - an interim write may fail (full disk): the final one reports it
                pass

        report = run_to_end(pipe, every_s=REPORT_EVERY_S if args.json else None,
                            on_tick=interim if args.json else None)
        report = _with_sinks(report, recorder, igtl, True)
        if signals.received is not None:
            report["interrupted_by"] = signal_name(signals.received)
        errors = []
        if args.json:
            try:
                write_text_atomic(args.json, strict_json(report), "report")
            except SonolensError as exc:
                errors.append(exc)
        if not args.quiet:
            print(_fmt(report))
        for warning in (w for w in report["warnings"] if w not in before):  # the end-of-run ones
            print(f"sonolens: warning: {warning}", file=sys.stderr)
    if pipe.error is not None:
        raise pipe.error
    if errors:
        raise errors[0]
    if signals.exit_code is not None:
        return signals.exit_code
    if report["frames_in"] == 0:
        after = f" after --start {cfg.start_s:g} s (past its end?)" if cfg.start_s else ""
        raise SourceError(f"{report['source']['name']}: no frame was read{after}")
    return 0


FLAG_FIELDS = ("realtime", "frames", "queue", "loop", "start_s", "speed", "roi", "threads", "cam", "ema", "csv",
               "reconnect", "gate", "decision_s", "decision_margin", "json", "record", "max_batch")


def resolve_args(args: argparse.Namespace, mode: str, *, require_source: bool = True) -> Resolved:
    """The one configuration of ``run``, ``view`` and ``config show`` from their parsed command lines (a flag a
    command does not have counts as not given): defaults ← ``--config`` ← flags ← SOURCE, the bundled sample when
    nothing names a source (``require_source=False``: an empty source, the viewer opens without one);
    ``--model off`` (or ``none``) runs no model."""
    flags = {k: getattr(args, k, None) for k in FLAG_FIELDS}
    flags["slideshow_fps"] = dwell_to_fps(getattr(args, "dwell", None))
    flags["slideshow_hold"] = getattr(args, "hold", None)
    off = args.model is not None and args.model.lower() in NO_MODEL
    flags["model"] = None if off else args.model
    default = default_sample() or (None if require_source else "")
    given = args.source  # run: a list of SOURCEs (several: streams); view: one SOURCE or None
    several = list(given) if isinstance(given, list) and len(given) > 1 else None
    source = given[0] if isinstance(given, list) and len(given) == 1 else given if isinstance(given, str) else None
    resolved = resolve(args.config, flags, mode=mode, source=source, default_source=default, sources=several)
    if off:
        resolved.pipeline.model = None
        resolved.origin["model.path"] = "command line"
    return resolved


def model_file_of(model: str | None) -> str | None:
    """The file a model argument names (the one resolver's rule), or None (no model, or none found: loading
    reports that one in its own line)."""
    if model is None or str(model).lower() in NO_MODEL:
        return None
    try:
        return str(resolve_model_path(model))
    except SonolensError:
        return None


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``1280x720``) as (width, height); even numbers from 64 to 7680 (what H.264 and a screen take)."""
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 1280x720, got {text!r}") from None
    if not (64 <= w <= 7680 and 64 <= h <= 7680) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"width and height must be even and within 64..7680, got {text!r}")
    return w, h


def dwell_to_fps(dwell_s: float | None) -> float | None:
    """``--dwell S`` (seconds per still) as the slideshow rate; a one-line ``ConfigError`` unless positive."""
    if dwell_s is None:
        return None
    if not (math.isfinite(dwell_s) and dwell_s > 0):
        raise ConfigError(f"--dwell must be a positive number of seconds, got {dwell_s}")
    return 1.0 / dwell_s


def _live_fps(pipe) -> str:
    """The HUD's processing rate: "-" until a rate can be measured (not "0.0" on the first frame)."""
    fps = pipe.telemetry.live_fps()
    return f"{fps:.1f}" if fps > 0 else "-"


def _with_sinks(report: dict, recorder, igtl, complete: bool) -> dict:
    """``report`` with the recorder's and the OpenIGTLink sender's statistics and ``complete`` (False while the run
    goes on: the periodic refresh)."""
    if recorder is not None:
        report["recording"] = recorder.stats()
    if igtl is not None:
        report["igtl_send"] = igtl.stats()
    report["complete"] = complete
    return report
