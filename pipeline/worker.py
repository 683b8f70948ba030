"""The inference worker thread: dequeue → preprocess → engine (logits + fused CAM) → post-processing → Result → sinks.

Sinks are called on this thread, so they must be cheap or hand work to their own thread (the recorder does;
the viewer only converts to a QImage and emits a queued signal). The Grad-CAM map comes out of the same ONNX
forward pass as the logits (see ``models/cam_fusion.py``), so a heat map on every frame costs no backward pass.
Sinks are added and removed while the thread runs (``add_sink`` / ``remove_sink``): the list is replaced, never
mutated, so the loop always iterates over a consistent snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from .engines import Engine, EngineOutput
from .errors import SonolensError
from .frame_queue import FrameQueue
from .health import InputHealth
from .messages import Frame, Result, Timings
from .postprocess import PostProcessor
from .telemetry import FrameRow, Telemetry

log = logging.getLogger(__name__)
Sink = Callable[[Result], None]
Preprocess = Callable[[np.ndarray], "tuple[np.ndarray | None, tuple[int, int, int, int]]"]


def _name(sink: Sink) -> str:
    """A readable name for a sink in an error message (``Recorder``, ``FrameBridge``, a function's name)."""
    return getattr(sink, "__name__", None) or type(sink).__name__


class InferenceWorker(threading.Thread):
    """One thread that turns queued ``Frame``s into ``Result``s.

    ``engine`` None runs no model (frames still flow to the sinks, with empty probabilities). ``cam_class``
    None shows the CAM of each frame's top class; an index pins one class (settable while running).
    Errors end the thread and are kept in ``error`` (a ``SonolensError`` with a one-line message).
    """

    def __init__(
        self,
        queue: FrameQueue,
        engine: Engine | None,
        preprocess: Preprocess,
        telemetry: Telemetry,
        postprocess: PostProcessor,
        sinks: Sequence[Sink] = (),
        *,
        cam: bool = True,
        cam_class: int | None = None,
    ) -> None:
        super().__init__(name="sonolens-inference", daemon=True)
        self.queue = queue
        self.engine = engine
        self.preprocess = preprocess
        self.telemetry = telemetry
        self.postprocess = postprocess
        self.health = InputHealth()
        self._sinks: tuple[Sink, ...] = tuple(sinks)
        self._sinks_lock = threading.Lock()
        self.cam_enabled = bool(cam and engine is not None and engine.meta.has_cam)
        self.cam_class = cam_class
        self.class_names: tuple[str, ...] = tuple(engine.meta.class_names) if engine is not None else ()
        self._stop_evt = threading.Event()
        self.error: SonolensError | None = None
        self.finished = threading.Event()

    # -- sinks (any thread) -----------------------------------------------------------------------------------
    @property
    def sinks(self) -> tuple[Sink, ...]:
        return self._sinks

    def add_sink(self, sink: Sink) -> None:
        with self._sinks_lock:
            self._sinks = (*self._sinks, sink)

    def remove_sink(self, sink: Sink) -> None:
        """Remove ``sink`` (compared by identity); a sink that is not there is ignored."""
        with self._sinks_lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    def stop(self) -> None:
        self._stop_evt.set()

    # -- one frame's stages (also driven, per stream, by the batch worker of ``pipeline.multi``) --------------
    def _process(self, frame: Frame) -> Result:
        x, roi = self.preprocess(frame.pixels)
        t_pre = time.perf_counter_ns()
        if self.engine is None or x is None:
            return self.finish(frame, roi, None, t_pre, time.perf_counter_ns())
        out = self.engine.infer(x, want_cam=self.cam_enabled)
        return self.finish(frame, roi, out, t_pre, time.perf_counter_ns(), x)

    def finish(self, frame: Frame, roi: tuple[int, int, int, int], out: EngineOutput | None, t_pre: int,
               t_inf: int, x: np.ndarray | None = None) -> Result:
        """The ``Result`` of ``frame`` from the engine's output ``out`` for its preprocessed image ``x`` [1, 3, H, W]
        (post-processing, input health, the CAM to show); ``out`` None: no model ran (the frame passes through)."""
        if out is None or self.engine is None or x is None:
            return Result(index=frame.index, frame=frame.pixels, roi=roi, timings=self._timings(frame, t_pre, t_inf),
                          file=frame.file)
        if frame.discontinuity:
            self.postprocess.reset()
            self.health.reset()
        spec = self.engine.meta
        no_image = self.health(x, spec.mean[0], spec.std[0])
        pred = self.postprocess(out.logits, ood_score=out.ood_score, no_image=no_image)
        shown = pred.decision if pred.decision >= 0 else int(np.argmax(pred.probs))
        cls = shown if self.cam_class is None else int(self.cam_class)
        cam = out.cam[cls] if out.cam is not None else None
        return Result(index=frame.index, frame=frame.pixels, roi=roi, timings=self._timings(frame, t_pre, t_inf),
                      class_names=self.class_names, probs=pred.probs, raw_probs=pred.raw_probs, cam=cam,
                      cam_class=cls, ood_score=pred.ood_score, state=pred.state, no_image=pred.no_image,
                      decision=pred.decision, file=frame.file)

    def deliver(self, result: Result) -> FrameRow:
        """Record ``result`` in the telemetry and hand it to every sink; a sink's bug becomes one line."""
        row = FrameRow.of(result)
        self.telemetry.record(row)
        for sink in self._sinks:
            try:
                sink(result)
            except SonolensError:
                raise
            except Exception as exc:  # a bug in a sink: one line for the user, the traceback in the log
                log.debug("sink %r failed", sink, exc_info=True)
                raise SonolensError(f"{_name(sink)} failed on frame {result.index}: {exc}") from None
        return row

    @staticmethod
    def _timings(frame: Frame, t_pre: int, t_inf: int) -> Timings:
        # t_delivered: the sinks receive the result now (post-processing is part of "deliver")
        return Timings(t_captured_ns=frame.t_captured_ns, t_enqueued_ns=frame.t_enqueued_ns,
                       t_dequeued_ns=frame.t_dequeued_ns, t_preprocessed_ns=t_pre, t_inferred_ns=t_inf,
                       t_delivered_ns=time.perf_counter_ns(), pts_s=frame.pts_s)

    def run(self) -> None:
        try:
            while not self._stop_evt.is_set():
                frame = self.queue.get(timeout=0.1)
                if frame is None:
                    if self.queue.closed and len(self.queue) == 0:
                        break
                    continue
                self.deliver(self._process(frame))
        except SonolensError as exc:
            self.error = exc
        except Exception as exc:
            log.debug("inference worker failed", exc_info=True)
            self.error = SonolensError(f"inference failed: {exc}")
        finally:
            self.queue.close()  # tell the capture thread nobody is listening any more
            self.finished.set()
