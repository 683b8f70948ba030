"""The hand-off between a live source's reader thread and ``frames()``: the newest frame only, every other one counted.

A live source (camera, network stream, OpenIGTLink) is read by its own thread, so a device or a server that stalls
never blocks the pipeline. The reader ``put``s every frame it receives; ``frames()`` ``take``s the newest one. A frame
overwritten before it was taken is *skipped* and counted, so for every source ``frames handed out + frames_skipped =
frames received`` holds at any time (``frames_received`` / ``frames_handed`` / ``frames_skipped``). What the
pipeline gets is never stale, and nothing is dropped silently.

The reader ends the hand-off with ``fail(error)`` (a ``SourceError``/``SourceDisconnected``, raised in ``frames()``
once the frames already received are taken) or ``finish()`` (a stream that ended on its own, e.g. a file served
over HTTP: ``frames()`` returns).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import SourceDisconnected, SourceError

__all__ = ["LatestFrame", "start_reader"]


def start_reader(target: Callable[..., None], args: tuple, name: str, slot: LatestFrame, timeout_s: float,
                 close: Callable[[], None], no_frame: str | Callable[[], str]
                 ) -> tuple[threading.Thread, tuple[np.ndarray, float | None]]:
    """Start a live source's reader thread and wait up to ``timeout_s`` for its first frame (``open()`` learns the
    frame size from it). On the reader's error or when no frame came, ``close()`` the source and raise
    (``SourceDisconnected(no_frame)`` for silence, so the reconnect policy can wait for a late start)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    try:
        first = slot.peek(timeout_s)
    except SourceError:
        close()
        raise
    if first is None:
        close()
        raise SourceDisconnected(no_frame() if callable(no_frame) else no_frame)
    return thread, first


class LatestFrame:
    """Thread-safe newest-frame slot with counters (one writer: the reader thread; one reader: ``frames()``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pixels: np.ndarray | None = None
        self._pts: float | None = None
        self._received = 0  # frames put
        self._handed = 0  # frames taken
        self._taken_seq = 0  # the frame number last taken
        self._error: SourceError | None = None
        self._finished = False
        self._closed = False

    # ------------------------------------------------------------------ reader thread
    def put(self, pixels: np.ndarray, pts: float | None) -> None:
        with self._cond:
            self._pixels, self._pts = pixels, pts
            self._received += 1
            self._cond.notify_all()

    def fail(self, error: SourceError) -> None:
        with self._cond:
            if self._error is None and not self._finished:
                self._error = error
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            if self._error is None:
                self._finished = True
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiter; ``take`` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ consumer
    def take(self, timeout_s: float) -> tuple[np.ndarray, float | None] | None:
        """The newest frame not taken yet, waiting up to ``timeout_s``. Returns None on timeout, after ``close()``,
        or when the stream has finished and every frame was taken (check ``ended``); raises the reader's error once
        the frame that was waiting (if any) has been taken."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._received <= self._taken_seq and self._error is None and not self._finished \
                    and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._closed:
                return None
            if self._received > self._taken_seq:
                self._taken_seq = self._received
                self._handed += 1
                assert self._pixels is not None
                return self._pixels, self._pts
            if self._error is not None:
                raise self._error
            return None  # finished

    def peek(self, timeout_s: float) -> tuple[np.ndarray, float | None] | None:
        """The newest frame, waiting up to ``timeout_s`` for the first one, *without* taking it (``open()`` uses it
        to learn the frame size); raises the reader's error when it failed before delivering anything."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._received == 0 and self._error is None and not self._finished and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._received > 0 and self._pixels is not None:
                return self._pixels, self._pts
            if self._error is not None:
                raise self._error
            return None

    @property
    def ended(self) -> bool:
        """The stream finished by itself and its last frame has been taken."""
        with self._cond:
            return self._finished and self._received <= self._taken_seq

    @property
    def error(self) -> SourceError | None:
        return self._error

    # ------------------------------------------------------------------ counters
    @property
    def frames_received(self) -> int:
        return self._received

    @property
    def frames_handed(self) -> int:
        return self._handed

    @property
    def frames_skipped(self) -> int:
        """Frames received but never handed out: overwritten by a newer one (or left when the stream stopped)."""
        with self._cond:
            return self._received - self._handed
