"""The capture thread: reads a source, numbers and timestamps frames, paces them, feeds the queue.

Pacing lives here, not in the sources, so every source behaves alike: ``realtime`` plays a file at its own
timestamps (a recorded scan behaves like a live probe), ``realtime=False`` reads as fast as the queue accepts.
Live sources (cameras, phantoms) are never paced: they deliver in real time by themselves.

The thread also implements pause / step / speed for the viewer; a paused capture thread holds no frame, so a
frozen picture keeps the result it was shown with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from .errors import SonolensError, SourceDisconnected, SourceError
from .frame_queue import FrameQueue
from .messages import Frame
from .reconnect import NO_RECONNECT, ConnectionLog, ReconnectPolicy, reopen
from .sources.base import Source, SourceInfo

log = logging.getLogger(__name__)

CaptureHook = Callable[[np.ndarray, int], np.ndarray]
"""``hook(pixels, t_captured_ns) -> pixels``: called on every frame at its capture instant (after pacing); what it
returns is what the pipeline carries on (e.g. ``pipeline.stamp.StampHook`` adds the latency self-check band)."""


class CaptureThread(threading.Thread):
    def __init__(
        self,
        source: Source,
        queue: FrameQueue,
        *,
        realtime: bool = True,
        loop: bool = False,
        start_s: float = 0.0,
        max_frames: int | None = None,
        speed: float = 1.0,
        on_capture: Callable[[int], None] | None = None,
        capture_hook: CaptureHook | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        wait: Callable[[float], bool] | None = None,
        reconnect: ReconnectPolicy = NO_RECONNECT,
    ) -> None:
        super().__init__(name="sonolens-capture", daemon=True)
        self.source = source
        self.queue = queue
        self.realtime = realtime
        self.loop = loop
        self.start_s = start_s
        self.max_frames = max_frames
        self._speed = speed
        self.on_capture = on_capture  # gets each frame's t_captured_ns (live input FPS counts dropped frames too)
        self.capture_hook = capture_hook
        self.reconnect = reconnect  # what to do when a live source disconnects (default: end the run)
        self.connection = ConnectionLog()
        self.max_late_s = 0.0  # how far the paced reading fell behind the source's timestamps (s)
        self._warned_late = False
        # clock() -> ns and wait(seconds) -> True when stopping: injectable so pacing is testable with a fake clock
        self._clock = clock
        self.frames_in = 0
        self.error: SonolensError | None = None
        self.t_first_ns: int | None = None
        self.t_last_ns: int | None = None
        self._stop_evt = threading.Event()
        self._wait = wait if wait is not None else self._stop_evt.wait
        self._run_evt = threading.Event()
        self._run_evt.set()
        self._step_pending = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._rebase = True
        self.finished = threading.Event()

    # -- controls (thread-safe) -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop_evt.set()
        self._run_evt.set()

    def pause(self) -> None:
        self._run_evt.clear()

    def resume(self) -> None:
        with self._lock:
            self._rebase = True
        self._run_evt.set()

    def step(self) -> None:
        """While paused, let exactly one more frame through."""
        self._step_pending.release()

    @property
    def paused(self) -> bool:
        return not self._run_evt.is_set()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        with self._lock:
            self._speed = max(0.05, float(value))
            self._rebase = True

    # -- thread body ------------------------------------------------------------------------------------------
    def _wait_turn(self) -> bool:
        """Block while paused (unless a step was requested). Returns False when stopping."""
        while not self._run_evt.is_set():
            if self._stop_evt.is_set():
                return False
            if self._step_pending.acquire(timeout=0.05):
                with self._lock:
                    self._rebase = True
                return True
        return not self._stop_evt.is_set()

    LATE_WARN_S = 1.0

    def _note_lateness(self, late_s: float, info: SourceInfo) -> None:
        """Track how far behind its own timestamps the source is read (decoding slower than real time, e.g. 4K
        on a small CPU); warn once, in one line, when it passes ``LATE_WARN_S``."""
        if late_s > self.max_late_s:
            self.max_late_s = late_s
        if late_s > self.LATE_WARN_S and not self._warned_late:
            self._warned_late = True
            log.warning("%s is read slower than real time (%.1f s behind its timestamps): the input rate is below "
                        "the source's", info.name, late_s)

    def _one_pass(self, info: SourceInfo) -> tuple[bool, int]:
        """Read the source once from ``start_s``; returns (go on?, frames produced). Raises the source's errors."""
        paced = self.realtime and not info.live
        fallback_dt = 1.0 / info.fps if info.fps else 1.0 / 30.0
        produced = 0
        t0_ns = pts0 = None
        last_pts = None
        for raw in self.source.frames(self.start_s):
            if not self._wait_turn():
                return False, produced
            pts = raw.pts_s
            if pts is None:
                pts = (last_pts + fallback_dt) if last_pts is not None else 0.0
            last_pts = pts
            if paced:
                with self._lock:
                    if self._rebase or t0_ns is None:
                        t0_ns, pts0, self._rebase = self._clock(), pts, False
                    speed = self._speed
                assert pts0 is not None
                due_ns = t0_ns + int((pts - pts0) / speed * 1e9)
                delay = (due_ns - self._clock()) / 1e9
                if delay > 0 and self._wait(delay):
                    return False, produced
                self._note_lateness(-delay, info)
            t = self._clock()
            pixels = raw.pixels if self.capture_hook is None else self.capture_hook(raw.pixels, t)
            frame = Frame(index=self.frames_in, pixels=pixels, pts_s=raw.pts_s, t_captured_ns=t, file=raw.file,
                          discontinuity=produced == 0)
            if self.t_first_ns is None:
                self.t_first_ns = t
            self.t_last_ns = t
            if self.on_capture is not None:
                self.on_capture(t)
            self.frames_in += 1
            produced += 1
            if not self.queue.put(frame):
                return False, produced
            if self.max_frames is not None and self.frames_in >= self.max_frames:
                return False, produced
        return True, produced

    def run(self) -> None:
        info = self.source.info
        try:
            while not self._stop_evt.is_set():
                try:
                    go_on, produced = self._one_pass(info)
                except SourceDisconnected as exc:
                    if self.reconnect.attempts == 0:
                        raise
                    info = reopen(self.source, self.reconnect, self._stop_evt, self.connection, exc)
                    continue  # the next pass starts with a discontinuity
                if not go_on or not self.loop or self._stop_evt.is_set():
                    return
                if produced == 0:
                    raise SourceError(f"{info.name}: no frames to loop over")
        except SonolensError as exc:
            self.error = exc
        except Exception as exc:  # a decoder or driver failure we did not anticipate: report, don't hang
            log.debug("capture failed", exc_info=True)
            self.error = SourceError(f"{info.name}: capture failed: {exc}")
        finally:
            self.queue.close()
            self.finished.set()
