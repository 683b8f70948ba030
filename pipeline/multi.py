"""Several sources in one process: a capture thread and a bounded queue per stream, ONE inference worker that runs
the waiting frames of all the streams as one batch through the engine, and each result routed back to its stream.

Threads and queues: every stream is a ``stream.Pipeline`` of its own (its source, ``CaptureThread``, ``FrameQueue``
with its policy, capacity and drop counts, preprocessing with its own ROI, post-processing, input health, sinks,
telemetry and per-frame CSV), except that its ``InferenceWorker`` thread is never started: the ``BatchWorker`` drives
each stream's stages instead (``InferenceWorker.finish`` / ``deliver``), so a stream's results are exactly what a
one-source run would make of the same frames.

The batching rule: the worker sleeps until any queue has a frame (each queue rings one shared event on a put or a
close), then takes at most one frame from every stream that has one waiting — the head of its queue, i.e. the newest
frame with the live default (``latest``, capacity 1) — up to ``max_batch`` frames (0: no limit; the stream after the
last one served goes first next time, so none starves), preprocesses them one by one, runs them through the engine
in ONE call (``engines.infer_batch``: the model file's batch axis is dynamic), and delivers each result to its
stream. It never waits for a stream: a stream that stalls, reconnects or has ended contributes no frame, and the
others go on. What arrived while a batch ran makes the next batch, so batches grow with the load by themselves. The
run ends when every stream has ended (its queue closed and drained), or when stopped.

Timings of a batched frame: ``preprocess`` runs until the whole batch is preprocessed, ``inference`` is the batch's
one engine call, ``deliver`` includes the post-processing and sinks of the frames before it in the batch.

Per-stream outputs are named by the stream's number (1, 2…, in the order given): ``stream_path`` (``f.csv`` →
``f_1.csv``), ``stream_suffix`` (``_1``: OpenIGTLink devices ``SonolensResult_1``…).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .capture import CaptureHook
from .engines import Engine, EngineOutput, infer_batch
from .errors import ConfigError, SonolensError
from .messages import Frame
from .preprocess import Preprocessor
from .reconnect import ConnectionLog
from .sources.base import Source, SourceInfo
from .stream import Pipeline, PipelineConfig, open_configured_source, open_engine, wait_finished
from .telemetry import Telemetry
from .worker import Preprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSpec:
    """One stream: its source spec and ``options`` (as ``source.options``; None: the shared ``source.options``)."""

    spec: str
    options: dict[str, Any] | None = None


def stream_suffix(k: int) -> str:
    """What names the outputs of stream ``k`` (1-based, the order the sources were given): ``_k``."""
    return f"_{k}"


def stream_path(path: str | None, k: int) -> str | None:
    """The output file of stream ``k`` for the path a user gave: the suffix before the extension (``f.csv`` →
    ``f_1.csv``, ``out/rec.mp4`` → ``out/rec_1.mp4``, ``log`` → ``log_1``); None stays None."""
    if not path:
        return None
    p = Path(path)
    return str(p.parent / f"{p.stem}{stream_suffix(k)}{p.suffix}")


def tagged(exc: SonolensError, k: int) -> SonolensError:
    """``exc`` of the same kind, its line naming stream ``k`` (``stream 2: …``)."""
    message = f"stream {k}: {exc}"
    try:
        return type(exc)(message)
    except TypeError:  # an error class with another signature: the generic kind, same line
        return SonolensError(message)


class BatchWorker(threading.Thread):
    """The one inference thread of several streams (the module's docstring has the rule). Errors (the engine's, a
    sink's, named with its stream) end the thread and are kept in ``error``; every queue is then closed."""

    def __init__(self, lanes: Sequence[Pipeline], engine: Engine | None, total: Telemetry, *,
                 max_batch: int = 0) -> None:
        super().__init__(name="sonolens-batch-inference", daemon=True)
        self.lanes = tuple(lanes)
        self.engine = engine
        self.total = total  # every stream's results: the run's totals
        self.max_batch = max_batch or len(self.lanes)
        self.want_cam = any(lane.worker.cam_enabled for lane in self.lanes)
        self.bell = threading.Event()
        for lane in self.lanes:
            lane.queue.on_ready = self.bell.set
        self.batch_sizes: dict[int, int] = {}  # frames per engine call → calls
        self._next = 0
        self._stop_evt = threading.Event()
        self.error: SonolensError | None = None
        self.finished = threading.Event()

    def stop(self) -> None:
        self._stop_evt.set()
        self.bell.set()

    def _gather(self) -> list[tuple[int, Frame]]:
        """At most one waiting frame per stream (lane index, frame), up to ``max_batch``, round robin."""
        n, batch = len(self.lanes), []
        for j in range(n):
            k = (self._next + j) % n
            frame = self.lanes[k].queue.get(timeout=0)
            if frame is not None:
                batch.append((k, frame))
                if len(batch) >= self.max_batch:
                    break
        if batch:
            self._next = (batch[-1][0] + 1) % n
        return batch

    def _ended(self) -> bool:
        return all(lane.queue.closed and len(lane.queue) == 0 for lane in self.lanes)

    def _run_batch(self, batch: list[tuple[int, Frame]]) -> None:
        prepared: list[tuple[int, Frame, np.ndarray | None, tuple[int, int, int, int]]] = []
        for k, frame in batch:
            try:
                x, roi = self.lanes[k].worker.preprocess(frame.pixels)
            except SonolensError as exc:
                raise tagged(exc, k + 1) from None
            prepared.append((k, frame, x, roi))
        t_pre = time.perf_counter_ns()
        images = [x for _, _, x, _ in prepared if x is not None]
        outs: Iterator[EngineOutput] = iter(())
        if self.engine is not None and images:
            outs = iter(infer_batch(self.engine, np.concatenate(images), want_cam=self.want_cam))
        t_inf = time.perf_counter_ns()
        size = len(images) if self.engine is not None else len(prepared)
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
        for k, frame, x, roi in prepared:
            worker = self.lanes[k].worker
            out = next(outs) if x is not None and self.engine is not None else None
            try:
                row = worker.deliver(worker.finish(frame, roi, out, t_pre, t_inf, x))
            except SonolensError as exc:
                raise tagged(exc, k + 1) from None
            self.total.record(row)

    def run(self) -> None:
        try:
            while not self._stop_evt.is_set():
                self.bell.clear()  # cleared before looking: a frame put after the look rings it again
                batch = self._gather()
                if batch:
                    self._run_batch(batch)
                elif self._ended():
                    break
                else:
                    self.bell.wait(0.1)
        except SonolensError as exc:
            self.error = exc
        except Exception as exc:
            log.debug("batch inference worker failed", exc_info=True)
            self.error = SonolensError(f"inference failed: {exc}")
        finally:
            for lane in self.lanes:
                lane.queue.close()  # tell every capture thread nobody is listening any more
            self.finished.set()

    def batch_stats(self) -> dict:
        """For the report: engine calls, frames per call (mean, max, and calls per batch size)."""
        calls = sum(self.batch_sizes.values())
        frames = sum(size * n for size, n in self.batch_sizes.items())
        return {"max_batch": self.max_batch, "engine_calls": calls,
                "mean_size": frames / calls if calls else 0.0, "max_size": max(self.batch_sizes, default=0),
                "calls_by_size": {str(size): self.batch_sizes[size] for size in sorted(self.batch_sizes)}}


class MultiPipeline:
    """Several streams in one process, ready or running: ``start``, ``wait``, ``stop``, ``report`` as a ``Pipeline``
    (``stream.run_to_end`` drives either). ``lanes[k]`` is stream k+1's ``Pipeline``: add its sinks and closers
    there (``lanes[k].add_sink``); ``add_closer`` here is for what the streams share (an OpenIGTLink connection)."""

    def __init__(self, cfg: PipelineConfig, lanes: Sequence[Pipeline], engine: Engine | None) -> None:
        if not lanes:
            raise ConfigError("several streams need at least one source")
        self.cfg = cfg
        self.lanes = tuple(lanes)
        self.engine = engine
        meta = engine.meta if engine is not None else None
        self.telemetry = Telemetry(window=cfg.telemetry_window, class_names=meta.class_names if meta else ())
        self.worker = BatchWorker(self.lanes, engine, self.telemetry, max_batch=cfg.max_batch)
        for k, lane in enumerate(self.lanes, 1):
            lane.capture.name = f"sonolens-capture-{k}"
        self._closers: list[Callable[[], None]] = []
        self.close_errors: list[SonolensError] = []
        self._stopped = False
        self.t_start: float | None = None
        self.t_end: float | None = None

    def add_closer(self, fn: Callable[[], None]) -> None:
        self._closers.append(fn)

    def start(self) -> MultiPipeline:
        self.t_start = time.perf_counter()
        for lane in self.lanes:
            lane.t_start = self.t_start
        self.worker.start()
        for lane in self.lanes:
            lane.capture.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every stream has ended and its frames are processed (or the worker failed). True when so."""
        return wait_finished(self.worker.finished, timeout)

    def stop(self) -> None:
        """Stop every capture thread and the worker, then close each stream (source, sinks, CSV) and what the streams
        share. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for lane in self.lanes:
            lane.capture.stop()
            lane.source.interrupt()
        self.worker.stop()
        for lane in self.lanes:
            lane.queue.close()
        if self.worker.is_alive():
            self.worker.join(timeout=5.0)
            if self.worker.is_alive():
                log.warning("%s did not stop within 5 s", self.worker.name)
        for lane in self.lanes:
            lane.stop()  # joins its capture thread, closes its source, its recorder, its CSV
        self.t_end = time.perf_counter()
        for fn in (*self._closers, self.telemetry.close):
            try:
                fn()
            except SonolensError as exc:
                self.close_errors.append(exc)
            except Exception as exc:
                log.debug("closing failed", exc_info=True)
                self.close_errors.append(SonolensError(f"closing failed: {exc}"))

    @property
    def error(self) -> SonolensError | None:
        """The first error of the run: the worker's (engine, sinks), a stream's (named), or one met while closing."""
        if self.worker.error is not None:
            return self.worker.error
        for k, lane in enumerate(self.lanes, 1):
            if lane.error is not None:
                return tagged(lane.error, k)
        return self.close_errors[0] if self.close_errors else None

    def warnings(self) -> list[str]:
        return self.lanes[0].warnings()

    def report(self) -> dict:
        """The end-of-run report: a section per stream (each as a one-source run reports it) and the totals."""
        streams = [{"stream": k, **lane.report(), "csv": lane.cfg.csv} for k, lane in enumerate(self.lanes, 1)]
        hidden = [f"stream {r['stream']}: {w}" for r in streams for w in r["warnings"] if w not in self.warnings()]
        error = self.error
        return {
            "streams": streams,
            "totals": self._totals(streams),
            "model": streams[0]["model"],
            "warnings": self.warnings() + hidden,
            "mode": "realtime" if self.cfg.realtime else "max-rate",
            "wall_s": (self.t_end or time.perf_counter()) - (self.t_start or time.perf_counter()),
            "error": str(error) if error else None,
        }

    def _totals(self, streams: list[dict]) -> dict:
        s = self.telemetry.summary()

        def total(key: str) -> int:
            return sum(int(r[key]) for r in streams)

        return {"streams": len(streams), "frames_in": total("frames_in"), "frames_processed": s["frames_processed"],
                "frames_dropped": total("frames_dropped"),
                "frames_unprocessed_at_stop": total("frames_unprocessed_at_stop"),
                "fps_in": sum(float(r["fps_in"]) for r in streams), "fps_processed": s["fps_processed"],
                "latency_ms": s["latency_ms"], "predictions": s["predictions"],
                "batches": self.worker.batch_stats()}


def warm_up(engine: Engine | None, batch: int) -> None:
    """One engine call on a batch of ``batch`` blank images, before the first frame: ONNX Runtime allocates for a new
    input shape on its first run, which would otherwise land on the first full batch's latency."""
    if engine is None or batch < 2 or getattr(engine, "infer_batch", None) is None:
        return
    h, w = engine.meta.input_size
    infer_batch(engine, np.zeros((batch, 3, int(h), int(w)), np.float32))


def build_streams(cfg: PipelineConfig, streams: Sequence[StreamSpec], engine: Engine | None = None, *,
                  capture_hook: CaptureHook | None = None,
                  wrap_preprocessor: Callable[[Preprocessor], Preprocess] | None = None) -> MultiPipeline:
    """Open every stream's source (in order; a failure is one line naming the stream, and closes those opened),
    then the model once, and wire one ``Pipeline`` per stream around one ``BatchWorker``. Every setting of ``cfg``
    applies to each stream, except the source (``streams``) and the per-frame CSV (``stream_path`` of ``cfg.csv``)."""
    opened: list[tuple[PipelineConfig, Source, SourceInfo, ConnectionLog]] = []
    lanes: list[Pipeline] = []
    try:
        for k, s in enumerate(streams, 1):
            options = dict(s.options) if s.options is not None else dict(cfg.source_options)
            lane_cfg = replace(cfg, source=s.spec, source_options=options, csv=stream_path(cfg.csv, k))
            try:
                opened.append((lane_cfg, *open_configured_source(lane_cfg)))
            except SonolensError as exc:
                raise tagged(exc, k) from None
        if engine is None:
            engine = open_engine(cfg.model, cfg.threads)
            warm_up(engine, min(len(streams), cfg.max_batch or len(streams)))
        for lane_cfg, source, info, conn in opened:
            lane = Pipeline(lane_cfg, source, info, engine, [], capture_hook=capture_hook,
                            wrap_preprocessor=wrap_preprocessor)
            lane.capture.connection = conn
            lanes.append(lane)
        return MultiPipeline(cfg, lanes, engine)
    except BaseException:
        for lane in lanes:
            try:
                lane.telemetry.close()
            except SonolensError:
                pass
        for _, source, _, _ in opened:
            source.close()
        raise


__all__ = ["StreamSpec", "BatchWorker", "MultiPipeline", "build_streams", "stream_path", "stream_suffix", "tagged",
           "warm_up"]
