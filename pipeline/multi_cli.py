"""``sonolens run SRC1 SRC2 …`` (or ``sources:`` in ``--config``): several streams in one process (``pipeline.multi``).

Called by ``run_cli.cli_main`` once the configuration is resolved; the same promises as a one-source run: every output
checked before the first frame (none may be an input: the per-stream names are derived, ``multi.stream_path``, so they
are checked here, beyond what ``outputs.guard_command_line`` sees on the command line), one line and exit 2 for bad
input or a fault (the reports still written), 128 + N after signal N once everything is closed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .config import Resolved
from .errors import SonolensError, SourceError
from .igtl_sink import IgtlSink, stream_devices
from .multi import MultiPipeline, build_streams, stream_path, stream_suffix
from .outputs import check_writable, refuse_inputs_as_outputs, strict_json, write_text_atomic
from .record import DEFAULT_MAX_BYTES, Recorder, recording_style
from .shutdown import ShutdownSignals, signal_name
from .stream import PipelineConfig, run_to_end
from .telemetry import Telemetry


def stream_outputs(json_path: str | None, csv: str | None, record: str | None, n: int) -> dict[str, str | None]:
    """Every file a run of ``n`` streams writes, by what it is: the one report, and each stream's CSV and recording."""
    out: dict[str, str | None] = {"report": json_path}
    for k in range(1, n + 1):
        out[f"per-frame CSV of stream {k}"] = stream_path(csv, k)
        out[f"recording of stream {k}"] = stream_path(record, k)
    return out


def check_outputs(resolved: Resolved, record: str | None, model_file: str | None, config: str | None) -> None:
    """Before anything opens: no output (derived per stream) is an input or another output; each can be written."""
    cfg, streams = resolved.pipeline, resolved.sources
    for what, given in (("per-frame CSV", cfg.csv), ("recording", record)):
        if given:
            check_writable(given, what)  # a folder given as --csv is refused as in a one-source run
    outputs = stream_outputs(resolved.outputs["json"], cfg.csv, record, len(streams))
    inputs: dict[str, str | None] = {f"source of stream {k}": s.spec for k, s in enumerate(streams, 1)}
    refuse_inputs_as_outputs(outputs, {**inputs, "model": model_file, "config": config})
    for what, path in outputs.items():
        if path:
            check_writable(path, what)


def _live_fps(telemetry: Telemetry) -> str:
    fps = telemetry.live_fps()
    return f"{fps:.1f}" if fps > 0 else "-"


def attach_sinks(pipe: MultiPipeline, cfg: PipelineConfig, record: str | None, record_size: tuple[int, int] | None,
                 igtl_address: str | None) -> tuple[list[Recorder | None], IgtlSink | None]:
    """Each stream's recorder (``R_k.mp4``, sharing one recorder's memory budget) and one OpenIGTLink connection
    sending each stream under its own device names."""
    recorders: list[Recorder | None] = [None] * len(pipe.lanes)
    if record:
        style = recording_style(pipe.warnings(), pipe.engine.meta.ood if pipe.engine is not None else None, cfg.gate)
        for k, lane in enumerate(pipe.lanes, 1):
            rec = Recorder(stream_path(record, k) or record, fps=lane.info.fps or 30.0, block=not cfg.realtime,
                           style=style, hud_source=lambda t=lane.telemetry: {"fps": _live_fps(t)}, size=record_size,
                           max_bytes=DEFAULT_MAX_BYTES // len(pipe.lanes))
            lane.add_sink(rec)
            lane.add_closer(rec.close)
            recorders[k - 1] = rec
    igtl = None
    if igtl_address:
        igtl = IgtlSink(igtl_address, max_pending=2 * len(pipe.lanes))  # connects now: a wrong address fails here
        for k, lane in enumerate(pipe.lanes, 1):
            lane.add_sink(igtl.for_stream(stream_suffix(k)))
        pipe.add_closer(igtl.close)
    return recorders, igtl


def with_sinks(report: dict, recorders: list[Recorder | None], igtl: IgtlSink | None, complete: bool) -> dict:
    """``report`` with each stream's recording statistics and OpenIGTLink devices, the connection's statistics, and
    ``complete`` (False while the run goes on)."""
    for k, (section, rec) in enumerate(zip(report["streams"], recorders), 1):
        if rec is not None:
            section["recording"] = rec.stats()
        if igtl is not None:
            section["igtl_devices"] = list(stream_devices(stream_suffix(k)))
    if igtl is not None:
        report["igtl_send"] = igtl.stats()
    report["complete"] = complete
    return report


def summary_text(report: dict) -> str:
    """What ``sonolens run`` prints for several streams: a line per stream, the totals, the batches."""
    t, b = report["totals"], report["totals"]["batches"]
    lines = [f"{t['streams']} streams ({report['mode']}); {b['engine_calls']} engine calls, {b['mean_size']:.2f} "
             f"frames each on average (at most {b['max_size']}; limit {b['max_batch']})",
             "stream                      in  processed  dropped  fps in  fps out   capture_to_result ms p50/p95/p99"]
    rows = [(f"{s['stream']} {s['source']['name']}"[:24], s) for s in report["streams"]] + [("total", t)]
    for name, s in rows:
        lat = s["latency_ms"]["capture_to_result"]
        lines.append(f"{name:<24}{s['frames_in']:6d} {s['frames_processed']:10d} {s['frames_dropped']:8d} "
                     f"{s['fps_in']:7.1f} {s['fps_processed']:8.1f}   {lat['p50']:7.1f} {lat['p95']:7.1f} "
                     f"{lat['p99']:7.1f}")
    return "\n".join(lines)


def _execute(pipe: MultiPipeline, json_path: str | None, every_s: float,
             sinks: tuple[list[Recorder | None], IgtlSink | None],
             signals: ShutdownSignals) -> tuple[dict, list[SonolensError]]:
    """Run to the end (a signal stops it cleanly), write the report; returns it and the errors of writing it."""
    recorders, igtl = sinks

    def interim() -> None:
        if json_path is None:
            return
        try:
            write_text_atomic(json_path, strict_json(with_sinks(pipe.report(), recorders, igtl, False)), "report")
        except Exception:  # noqa: BLE001 - an interim write may fail (full disk): the final one reports it
            pass

    report = run_to_end(pipe, every_s=every_s if json_path else None, on_tick=interim if json_path else None)
    report = with_sinks(report, recorders, igtl, True)
    if signals.received is not None:
        report["interrupted_by"] = signal_name(signals.received)
    errors: list[SonolensError] = []
    if json_path:
        try:
            write_text_atomic(json_path, strict_json(report), "report")
        except SonolensError as exc:
            errors.append(exc)
    return report, errors


def run_streams(args: argparse.Namespace, resolved: Resolved, *, model_file: str | None, every_s: float) -> int:
    """The several-stream ``sonolens run``: exit 0; 2 with one line (bad input, a fault of any stream, a stream that
    read no frame); 128 + N after signal N."""
    cfg, json_path, record = resolved.pipeline, resolved.outputs["json"], resolved.outputs["record"]
    check_outputs(resolved, record, model_file, args.config)
    with ShutdownSignals() as signals:
        pipe = build_streams(cfg, resolved.sources)
        try:
            sinks = attach_sinks(pipe, cfg, record, args.record_size, args.igtl_send)
        except BaseException:
            pipe.stop()
            raise
        before = pipe.warnings()
        for warning in before:
            print(f"sonolens: warning: {warning}", file=sys.stderr)
        report, errors = _execute(pipe, json_path, every_s, sinks, signals)
        if not args.quiet:
            print(summary_text(report))
        for warning in (w for w in report["warnings"] if w not in before):
            print(f"sonolens: warning: {warning}", file=sys.stderr)
    return _exit_code(pipe, report, errors, signals)


def _exit_code(pipe: MultiPipeline, report: dict[str, Any], errors: list[SonolensError],
               signals: ShutdownSignals) -> int:
    if pipe.error is not None:
        raise pipe.error
    if errors:
        raise errors[0]
    if signals.exit_code is not None:
        return signals.exit_code
    for section in report["streams"]:
        if section["frames_in"] == 0:
            start = pipe.cfg.start_s
            after = f" after --start {start:g} s (past its end?)" if start else ""
            raise SourceError(f"stream {section['stream']}: {section['source']['name']}: no frame was read{after}")
    return 0


__all__ = ["run_streams", "stream_outputs", "check_outputs", "summary_text"]
