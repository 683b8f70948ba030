"""A bounded frame queue with an explicit overflow policy.

Why not ``queue.Queue``: live use needs "keep only the newest frame, drop and count the oldest" without the
producer ever blocking, which ``queue.Queue`` cannot do atomically. Lag that grows (an unbounded queue) and frames
lost without a count are the two complaints this class exists to prevent.

* ``latest`` (live default): at most ``capacity`` frames wait (default 1); a new frame evicts the oldest, which is
  counted in ``dropped``. The capture thread never waits on inference.
* ``block`` (offline analysis, recording): every frame is processed; the producer waits while the queue is full.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from .errors import ConfigError
from .messages import Frame

Policy = Literal["latest", "block"]
POLICIES = ("latest", "block")


class FrameQueue:
    def __init__(self, policy: Policy = "latest", capacity: int | None = None,
                 on_drop: Callable[[Frame], None] | None = None) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"unknown queue policy {policy!r}; use one of {', '.join(POLICIES)}")
        cap = capacity if capacity is not None else (1 if policy == "latest" else 8)
        if cap < 1:
            raise ConfigError(f"queue capacity must be >= 1, got {cap}")
        self.policy: Policy = policy
        self.capacity = cap
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.dropped_indices: list[int] = []  # which frames were dropped (bounded: see _MAX_DROP_LOG)
        self.max_depth = 0
        self._on_drop = on_drop  # called (under the lock, keep it cheap) with each evicted frame
        # called (outside the lock) after each put and at close: a consumer of several queues waits on one event
        # (``pipeline.multi``) instead of polling each queue
        self.on_ready: Callable[[], None] | None = None

    _MAX_DROP_LOG = 100_000

    def put(self, frame: Frame) -> bool:
        """Enqueue ``frame``; returns False if the queue was closed (the consumer has gone)."""
        with self._cond:
            if self.policy == "block":
                while len(self._items) >= self.capacity and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            if self.policy == "latest":
                while len(self._items) >= self.capacity:
                    old = self._items.popleft()
                    self.dropped += 1
                    if len(self.dropped_indices) < self._MAX_DROP_LOG:
                        self.dropped_indices.append(old.index)
                    if self._on_drop is not None:
                        self._on_drop(old)
            self._items.append(replace(frame, t_enqueued_ns=time.perf_counter_ns()))
            self.max_depth = max(self.max_depth, len(self._items))
            self._cond.notify_all()
        if self.on_ready is not None:
            self.on_ready()
        return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """Take the oldest waiting frame; ``None`` when closed and drained, or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            frame = replace(self._items.popleft(), t_dequeued_ns=time.perf_counter_ns())
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        """No more frames will come (producer side) or none will be taken (consumer side). Wakes all waiters."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.on_ready is not None:
            self.on_ready()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
