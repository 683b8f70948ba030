"""The inference worker thread: dequeue → preprocess → engine (logits + fused CAM) → Result → sinks.

Sinks are called on this thread, so they must be cheap or hand work to their own thread (the recorder does;
the viewer only converts to a QImage and emits a queued signal). The Grad-CAM map comes out of the same ONNX
forward pass as the logits (see ``models/export.py``), so a heatmap on every frame costs no backward pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from .cam import normalize_cam
from .errors import SonolensError
from .frame_queue import FrameQueue
from .messages import Result, Timings
from .preprocess import Preprocessor
from .telemetry import Telemetry

log = logging.getLogger(__name__)
Sink = Callable[[Result], None]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return (e / e.sum()).astype(np.float32)


class InferenceWorker(threading.Thread):
    def __init__(
        self,
        queue: FrameQueue,
        engine,  # pipeline.engines.OnnxEngine-like (``meta``, ``run(x, want_cam)``) or None for "no model"
        preprocessor: Preprocessor,
        telemetry: Telemetry,
        sinks: Sequence[Sink] = (),
        *,
        cam: bool = True,
        cam_class: int | None = None,
        ema: float = 0.0,
    ) -> None:
        super().__init__(name="sonolens-inference", daemon=True)
        self.queue = queue
        self.engine = engine
        self.pre = preprocessor
        self.telemetry = telemetry
        self.sinks = list(sinks)
        self.cam_enabled = cam and engine is not None and engine.meta.has_cam
        self.cam_class = cam_class  # None: the top class of each frame; settable live (viewer)
        if not 0.0 <= ema < 1.0:
            raise SonolensError(f"ema factor must be in [0, 1), got {ema}")
        self.ema = ema
        self.class_names: tuple[str, ...] = tuple(engine.meta.class_names) if engine else ()
        self._smoothed: np.ndarray | None = None
        self._stop_evt = threading.Event()
        self.error: SonolensError | None = None
        self.processed = 0
        self.finished = threading.Event()

    def stop(self) -> None:
        self._stop_evt.set()

    def reset_smoothing(self) -> None:
        self._smoothed = None

    def _postprocess(self, logits: np.ndarray, cams: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """Softmax, optional EMA smoothing, and the chosen class's CAM normalised to [0, 1]."""
        raw = softmax(np.asarray(logits).reshape(-1))
        if self.ema > 0.0:
            self._smoothed = raw if self._smoothed is None else self.ema * self._smoothed + (1 - self.ema) * raw
            probs = self._smoothed
        else:
            probs = raw
        cls = int(np.argmax(probs)) if self.cam_class is None else int(self.cam_class)
        cam = normalize_cam(cams[cls]) if cams is not None else None
        return probs, raw, cam, cls

    def run(self) -> None:
        empty = np.zeros(0, dtype=np.float32)
        try:
            while not self._stop_evt.is_set():
                frame = self.queue.get(timeout=0.1)
                if frame is None:
                    if self.queue.closed and len(self.queue) == 0:
                        break
                    continue
                x, roi = self.pre(frame.pixels)
                t_pre = time.perf_counter_ns()
                if self.engine is not None:
                    logits, cams = self.engine.run(x, want_cam=self.cam_enabled)
                    t_inf = time.perf_counter_ns()
                    probs, raw, cam, cls = self._postprocess(logits, cams)
                else:
                    t_inf = time.perf_counter_ns()
                    probs, raw, cam, cls = empty, empty, None, -1
                t_dlv = time.perf_counter_ns()  # the sinks receive the result now
                timings = Timings(frame.t_captured_ns, frame.t_enqueued_ns, frame.t_dequeued_ns, t_pre, t_inf,
                                  t_dlv, frame.pts_s)
                result = Result(frame.index, frame.pixels, probs, raw, self.class_names, cam, cls, roi, timings)
                top = result.top_class if probs.size else -1
                self.telemetry.record(frame.index, timings, top, float(probs[top]) if probs.size else float("nan"))
                for sink in self.sinks:
                    sink(result)
                self.processed += 1
        except SonolensError as exc:
            self.error = exc
        except Exception as exc:
            log.exception("inference worker failed")
            self.error = SonolensError(f"inference failed: {exc}")
        finally:
            self.queue.close()  # tell the capture thread nobody is listening any more
            self.finished.set()
