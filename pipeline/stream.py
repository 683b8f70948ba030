"""``build(config)``: wire source → queue → worker → sinks in one place (a HoloHub-style ``compose()``).

The headless CLI, the viewer and the benchmarks all call this, so they measure the same pipeline. Parameters
live in one ``PipelineConfig`` that can come from a YAML file (``load_config``) with command-line overrides.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from .capture import CaptureHook, CaptureThread
from .engines import Engine, bundled_name_of
from .errors import ConfigError, SonolensError
from .frame_queue import FrameQueue, Policy
from .messages import Frame
from .postprocess import standard_postprocessor
from .preprocess import Preprocessor
from .reconnect import NO_RECONNECT, ConnectionLog, ReconnectPolicy, open_with_retry
from .redact import redact_credentials
from .roi import Roi, parse_roi
from .sources import open_source
from .sources.base import Source, SourceInfo
from .sources.sizecap import SizeCappedSource, scale_box
from .telemetry import Telemetry
from .worker import InferenceWorker, Preprocess, Sink

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    source: str
    model: str | None = "busi"  # path, bundled name (busi, busi-mnv3, busi-uclm, chest-xray), or None for "no model"
    realtime: bool = True  # pace files at their timestamps; False = as fast as possible
    loop: bool = False
    start_s: float = 0.0
    frames: int | None = None  # stop after this many captured frames
    queue: str | None = None  # latest | block; None = latest when realtime, block otherwise
    queue_capacity: int | None = None
    roi: str | Roi | None = None  # "x,y,w,h" or None for automatic
    roi_frames: int = 8
    threads: int = 0  # ONNX Runtime intra-op threads (0 = ORT default)
    cam: bool = True
    cam_class: int | None = None
    ema: float = 0.0  # probability smoothing factor in [0, 1): 0 = off
    decision_s: float = 0.0  # video-level decision (postprocess.ClassDecision): time constant in seconds; 0 = off
    decision_margin: float = 0.15  # ... and the lead another class needs before the shown class changes
    speed: float = 1.0
    slideshow_fps: float = 1.0  # stills/folders: seconds per image = 1/slideshow_fps
    slideshow_hold: bool = False  # a folder: each image held until the viewer advances (FolderSource.advance)
    csv: str | None = None
    telemetry_window: int = 120
    gate: bool = True  # the frame-state gate (out-of-domain score and input health); False: predict on every frame
    reconnect: int = 0  # live sources: reopen up to N times in a row after a disconnect or a late start (0 = never)
    source_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # source.options: transport, device…
    max_batch: int = 0  # several sources (pipeline.multi): frames per engine call; 0 = one from every stream

    def __post_init__(self) -> None:
        """Reject values that cannot mean what was asked, in one line each (the CLI exits 2)."""
        import math

        if not (isinstance(self.speed, (int, float)) and math.isfinite(self.speed) and self.speed > 0):
            raise ConfigError(f"--speed must be a positive number (1 = real time), got {self.speed}")
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {self.frames}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ConfigError(f"--start must be a time in seconds >= 0, got {self.start_s}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"--ema must be in [0, 1), got {self.ema}")
        if not (math.isfinite(self.decision_s) and self.decision_s >= 0):
            raise ConfigError(f"--decision must be a time constant in seconds >= 0, got {self.decision_s}")
        if not 0.0 <= self.decision_margin < 1.0:
            raise ConfigError(f"--decision-margin must be in [0, 1), got {self.decision_margin}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be >= 0 (0 = ONNX Runtime's default), got {self.threads}")
        if self.queue_capacity is not None and self.queue_capacity < 1:
            raise ConfigError(f"queue capacity must be >= 1, got {self.queue_capacity}")
        if self.reconnect < 0:
            raise ConfigError(f"--reconnect must be >= 0 attempts, got {self.reconnect}")
        if self.roi_frames < 1:
            raise ConfigError(f"roi_frames must be >= 1, got {self.roi_frames}")
        if not (math.isfinite(self.slideshow_fps) and self.slideshow_fps > 0):
            raise ConfigError(f"slideshow fps must be positive, got {self.slideshow_fps}")
        if self.max_batch < 0:
            raise ConfigError(f"--max-batch must be >= 0 (0 = one frame from every stream), got {self.max_batch}")

    @property
    def reconnect_policy(self) -> ReconnectPolicy:
        return ReconnectPolicy(attempts=self.reconnect) if self.reconnect else NO_RECONNECT

    @property
    def queue_policy(self) -> Policy:
        policy = self.queue or ("latest" if self.realtime else "block")
        return cast(Policy, policy)  # build() rejects anything else with one line


def load_config(path: str | Path, **overrides: Any) -> PipelineConfig:
    """Read a YAML file of ``PipelineConfig`` fields; ``overrides`` (non-None) win."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown setting(s) {', '.join(unknown)}")
    return PipelineConfig(**data)


class Pipeline:
    """A running (or ready) pipeline. Start it, then ``wait()``; ``stop()`` shuts every thread down cleanly.

    Extension points: ``add_sink`` / ``remove_sink`` (any time, from any thread), ``add_closer`` (run after the
    threads stop), and the arguments of ``build`` (a capture hook, a preprocessing wrapper). The
    post-processing chain (``postprocess``) is reset by the worker at each discontinuity of the frame sequence.
    """

    def __init__(self, cfg: PipelineConfig, source: Source, info: SourceInfo, engine: Engine | None,
                 sinks: list[Sink], *, capture_hook: CaptureHook | None = None,
                 wrap_preprocessor: Callable[[Preprocessor], Preprocess] | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.info = info
        self.engine = engine
        spec = engine.meta if engine is not None else None
        self.telemetry = Telemetry(window=cfg.telemetry_window, csv_path=cfg.csv,
                                   class_names=spec.class_names if spec else ())
        self.queue = FrameQueue(cfg.queue_policy, cfg.queue_capacity, on_drop=self._on_drop)
        roi = parse_roi(cfg.roi) if isinstance(cfg.roi, str) else cfg.roi
        roi = scale_box(roi, getattr(source, "scale", 1.0))  # given in the source's pixels; frames may be capped
        self.preprocessor = Preprocessor(engine.meta if engine else None, roi=roi, roi_frames=cfg.roi_frames,
                                         roi_hint=getattr(info, "roi_hint", None))
        self.postprocess = standard_postprocessor(
            cfg.ema, temperature=spec.temperature if spec else 1.0,
            ood_threshold=float(spec.ood["threshold"]) if spec and spec.ood else None, gate=cfg.gate,
            decision_s=cfg.decision_s, fps=float(getattr(info, "fps", None) or 30.0),
            decision_margin=cfg.decision_margin)
        self.capture = CaptureThread(source, self.queue, realtime=cfg.realtime, loop=cfg.loop, start_s=cfg.start_s,
                                     max_frames=cfg.frames, speed=cfg.speed, on_capture=self.telemetry.note_capture,
                                     capture_hook=capture_hook, reconnect=cfg.reconnect_policy)
        preprocess: Preprocess = self.preprocessor if wrap_preprocessor is None else wrap_preprocessor(
            self.preprocessor)
        self.worker = InferenceWorker(self.queue, engine, preprocess, self.telemetry, self.postprocess, sinks,
                                      cam=cfg.cam, cam_class=cfg.cam_class)
        self._closers: list[Callable[[], None]] = []
        self.close_errors: list[SonolensError] = []
        self._stopped = False
        self.t_start: float | None = None
        self.t_end: float | None = None

    def _on_drop(self, frame: Frame) -> None:
        self.telemetry.record_drop(frame.index, frame.pts_s, frame.t_captured_ns, frame.t_enqueued_ns, frame.file)

    def add_sink(self, sink: Sink) -> None:
        """Deliver every later result to ``sink`` too (called on the worker thread; keep it cheap)."""
        self.worker.add_sink(sink)

    def remove_sink(self, sink: Sink) -> None:
        """Stop delivering to ``sink``; the result being delivered right now may still reach it."""
        self.worker.remove_sink(sink)

    def add_closer(self, fn: Callable[[], None]) -> None:
        """Something to close after the threads stop (recorder, log files)."""
        self._closers.append(fn)

    def start(self) -> Pipeline:
        self.t_start = time.perf_counter()
        self.worker.start()
        self.capture.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ends (or fails) and every captured frame is processed. True when finished.

        A source error does not cut the wait short: the capture thread closes the queue, and the worker drains
        what was already captured, so frames read before a camera vanished still reach the report and the sinks.
        """
        return wait_finished(self.worker.finished, timeout)

    @property
    def error(self) -> SonolensError | None:
        """The first error of the run: the source's, the worker's (a sink's included), or one met while closing."""
        return self.capture.error or self.worker.error or (self.close_errors[0] if self.close_errors else None)

    def stop(self) -> None:
        """Stop capture and inference, join threads, release the source, close sinks. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.capture.stop()
        self.source.interrupt()  # a held still waits for the viewer: let the capture thread go
        self.worker.stop()
        self.queue.close()
        for t in (self.capture, self.worker):
            if t.is_alive():
                t.join(timeout=5.0)
                if t.is_alive():
                    log.warning("%s did not stop within 5 s", t.name)
        self.t_end = time.perf_counter()
        for fn in (self.source.close, *self._closers, self.telemetry.close):
            try:  # one failing closer must not keep the others (recording, study log, CSV) from closing
                fn()
            except SonolensError as exc:
                self.close_errors.append(exc)
            except Exception as exc:
                log.debug("closing failed", exc_info=True)
                self.close_errors.append(SonolensError(f"closing failed: {exc}"))

    def _source_report(self) -> dict:
        """What the source is and, for live sources, how many frames it received and overwrote before the pipeline
        took them (``frames_received = frames_in + frames_skipped``, counted by the source itself)."""
        info = self.info
        out = {"spec": _safe_spec(self.cfg.source, info.name), "name": info.name, "kind": info.kind,
               "width": info.width, "height": info.height, "fps": info.fps, "frame_count": info.frame_count,
               "roi_hint": list(info.roi_hint) if info.roi_hint else None}
        for counter in ("frames_received", "frames_skipped"):
            value = getattr(self.source, counter, None)
            if isinstance(value, int):
                out[counter] = value
        if self.source.notes:
            out["notes"] = list(self.source.notes)
        return out

    def warnings(self) -> list[str]:
        """What a user must know about this run's predictions (printed once, in the report, the HUD, the video)."""
        meta = self.engine.meta if self.engine else None
        out = []
        if meta is not None and not meta.trained:
            out.append("the model is untrained (random weights): its predictions mean nothing")
        if meta is not None and not meta.ood:
            out.append("the model file has no out-of-domain gate: every frame gets a prediction")
        elif meta is not None and not self.cfg.gate:
            out.append("the out-of-domain gate is off (--no-gate): every frame gets a prediction")
        return out

    def _message_counts(self) -> dict:
        """A message source's skipped messages (OpenIGTLink: other types/devices, IMAGE messages it could not
        read), so none vanishes without a count; nothing for other sources."""
        unreadable = getattr(self.source, "unreadable_images", None)
        if unreadable is None:
            return {}
        return {"messages_skipped": {"other": int(getattr(self.source, "ignored_messages", 0)),
                                     "unreadable_images": int(unreadable),
                                     "unreadable_reason": getattr(self.source, "unreadable_reason", None)}}

    @staticmethod
    def _hidden_warning(predictions: dict | None, gate: dict | None) -> list[str]:
        """An end-of-run line when most processed frames got no prediction from the gate (the run looks empty)."""
        states = (predictions or {}).get("frames_by_state") or {}
        n, hidden = sum(states.values()), states.get("out_of_domain", 0)
        if not gate or not gate.get("enabled") or n == 0 or hidden * 2 < n:
            return []
        return [f"{hidden} of {n} frames were outside the model's training domain (out-of-domain score above the "
                f"file's threshold {gate['threshold']:.4g}): no prediction was shown for them; --no-gate shows the "
                "model's output anyway (research only)"]

    def _gate_report(self, frames: int) -> dict | None:
        gate = self.postprocess.gate
        meta = self.engine.meta if self.engine else None
        if gate is None or meta is None:
            return None
        span_s = ((self.capture.t_last_ns or 0) - (self.capture.t_first_ns or 0)) / 1e9
        return {"enabled": self.cfg.gate, "method": meta.ood.get("method") if meta.ood else None,
                "threshold": gate.threshold, "hold_frames": gate.hold, "state_changes": gate.changes,
                "state_changes_per_s": gate.changes / span_s if span_s > 0 else 0.0}

    def report(self) -> dict:
        """The end-of-run report (the JSON of ``sonolens run --json``)."""
        s = self.telemetry.summary()
        t0, t1 = self.capture.t_first_ns, self.capture.t_last_ns
        fps_in = (self.capture.frames_in - 1) / ((t1 - t0) / 1e9) if t0 and t1 and t1 > t0 else 0.0
        meta = self.engine.meta if self.engine else None
        gate = self._gate_report(s["frames_processed"])
        model_path = getattr(self.engine, "path", None)  # only its name goes in: reports carry no machine paths
        return {
            "source": self._source_report(),
            "model": None if meta is None else {"file": Path(model_path).name if model_path else None,
                                                "bundled_as": bundled_name_of(model_path),
                                                "arch": meta.arch, "classes": list(meta.class_names),
                                                "input_size": list(meta.input_size), "trained": meta.trained,
                                                "version": meta.version, "temperature": meta.temperature},
            "decision": {"time_constant_s": self.cfg.decision_s, "margin": self.cfg.decision_margin}
            if self.cfg.decision_s > 0 else None,
            "gate": gate,
            "warnings": self.warnings() + self._hidden_warning(s["predictions"], gate),
            "mode": "realtime" if self.cfg.realtime else "max-rate",
            "queue": {"policy": self.queue.policy, "capacity": self.queue.capacity, "max_depth": self.queue.max_depth},
            "cam": self.worker.cam_enabled,
            "roi": list(self.preprocessor.roi) if self.preprocessor.roi else None,
            "frames_in": self.capture.frames_in,
            "frames_processed": s["frames_processed"],
            "frames_dropped": self.queue.dropped,
            "frames_unprocessed_at_stop": max(0, self.capture.frames_in - s["frames_processed"] - self.queue.dropped),
            "fps_in": fps_in,
            "capture_behind_s_max": round(self.capture.max_late_s, 3) if self.cfg.realtime else None,
            "fps_processed": s["fps_processed"],
            "wall_s": (self.t_end or time.perf_counter()) - (self.t_start or time.perf_counter()),
            "latency_ms": s["latency_ms"],
            "predictions": s["predictions"],
            "connection": self.capture.connection.summary() if self.info.live else None,
            "error": str(self.error) if self.error else None,
            **self._message_counts(),
        }


def wait_finished(finished: threading.Event, timeout: float | None) -> bool:
    """Wait for ``finished`` in short slices (a Ctrl-C is handled between them), at most ``timeout`` seconds (None:
    no limit). True when it was set."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not finished.is_set():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        finished.wait(0.05 if remaining is None else min(0.05, remaining))
    return True


def _safe_spec(spec: str, name: str) -> str:
    """The source as the user gave it, without credentials of a stream URL (``rtsp://user:pw@host`` → host)."""
    return redact_credentials(spec)


def open_engine(model: str | None, threads: int = 0) -> Engine | None:
    from .engines import NO_MODEL, load_engine

    if model is None or str(model).lower() in NO_MODEL:
        return None

    return load_engine(model, threads=threads)


def open_configured_source(cfg: PipelineConfig) -> tuple[Source, SourceInfo, ConnectionLog]:
    """Open ``cfg``'s source as every run does (errors surface here, in one line): frames over 4096 px on the long
    side downscaled as they arrive (sizecap: memory stays bounded), a live stream that starts late waited for."""
    if cfg.queue_policy not in ("latest", "block"):
        raise ConfigError(f"--queue must be latest or block, got {cfg.queue_policy!r}")
    source = SizeCappedSource(open_source(cfg.source, fps=cfg.slideshow_fps, options=cfg.source_options or None,
                                          hold=cfg.slideshow_hold))
    conn = ConnectionLog()
    info = open_with_retry(source, cfg.reconnect_policy, conn)
    return source, info, conn


def build(cfg: PipelineConfig, sinks: list[Sink] | tuple[Sink, ...] = (), engine: Engine | None = None, *,
          capture_hook: CaptureHook | None = None,
          wrap_preprocessor: Callable[[Preprocessor], Preprocess] | None = None) -> Pipeline:
    """Open the source and the model (errors surface here, before any thread starts) and wire the pipeline.

    ``capture_hook`` is called by the capture thread on every frame at its capture instant
    (``pipeline.capture.CaptureHook``); ``wrap_preprocessor`` puts a stage around the standard preprocessing.
    The viewer's latency self-check uses both: ``StampHook`` adds the stamp band, ``ImageAreaPreprocessor``
    hides it from the model.
    """
    source, info, conn = open_configured_source(cfg)
    try:
        if engine is None:
            engine = open_engine(cfg.model, cfg.threads)
        pipe = Pipeline(cfg, source, info, engine, list(sinks), capture_hook=capture_hook,
                        wrap_preprocessor=wrap_preprocessor)
        pipe.capture.connection = conn
        return pipe
    except BaseException:
        source.close()
        raise


class Runnable(Protocol):
    """What ``run_to_end`` drives: a ``Pipeline``, or several streams in one process (``multi.MultiPipeline``)."""

    def start(self) -> Any: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def stop(self) -> None: ...

    def report(self) -> dict: ...


def run_to_end(pipe: Runnable, on_result_timeout: float | None = None, *, every_s: float | None = None,
               on_tick: Callable[[], None] | None = None) -> dict:
    """Start, wait for the end (Ctrl-C stops cleanly), stop, and return the report. Raises the pipeline's error
    *after* everything is closed and the report is complete, so no recorded data is lost. ``on_tick`` (with
    ``every_s``) is called every ``every_s`` seconds while the run goes on (``sonolens run`` refreshes its JSON)."""
    pipe.start()
    try:
        if on_tick is not None and every_s:
            while not pipe.wait(every_s):
                on_tick()
        else:
            pipe.wait(on_result_timeout)
    except KeyboardInterrupt:
        log.info("interrupted: stopping")
    finally:
        pipe.stop()
    return pipe.report()


__all__ = ["PipelineConfig", "Pipeline", "Runnable", "build", "load_config", "open_configured_source", "run_to_end"]
