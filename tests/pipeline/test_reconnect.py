"""The one reconnect policy: a live source that drops or starts late is reopened with back-off, and counted."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sonolens.pipeline.capture import CaptureThread
from sonolens.pipeline.errors import ConfigError, SourceDisconnected, SourceError
from sonolens.pipeline.frame_queue import FrameQueue
from sonolens.pipeline.messages import RawFrame
from sonolens.pipeline.reconnect import ConnectionLog, ReconnectPolicy, open_with_retry
from sonolens.pipeline.sources.base import Source, SourceInfo

FAST = ReconnectPolicy(attempts=3, initial_s=0.001, max_s=0.002)


class FlakyLiveSource(Source):
    """Session k (1-based) yields ``frames[k-1]`` frames, then drops (``SourceDisconnected``) unless it is the
    last session, which ends normally. ``fail_opens`` opens fail before one succeeds."""

    def __init__(self, frames=(5, 5), fail_opens: int = 0) -> None:
        self.frames_per_session = list(frames)
        self.fail_opens = fail_opens
        self.opens = self.sessions = 0

    def open(self) -> SourceInfo:
        self.opens += 1
        if self.fail_opens > 0:
            self.fail_opens -= 1
            raise SourceDisconnected("igtl://127.0.0.1:1: connection refused")
        self.sessions += 1
        self.info = SourceInfo("flaky", "stream", 8, 8, 30.0, None, True)
        return self.info

    def frames(self, start_s: float = 0.0):
        k = self.sessions
        for i in range(self.frames_per_session[k - 1]):
            yield RawFrame(np.full((8, 8), i, np.uint8), None)
        if k < len(self.frames_per_session):
            raise SourceDisconnected("igtl://127.0.0.1:1: connection lost")

    def close(self) -> None:
        pass


def _capture(src: Source, policy: ReconnectPolicy) -> tuple[CaptureThread, list]:
    src.open()
    q = FrameQueue("block", capacity=100)
    cap = CaptureThread(src, q, realtime=True, reconnect=policy)
    cap.run()  # on this thread
    frames = []
    while (f := q.get(0)) is not None:
        frames.append(f)
    return cap, frames


def test_disconnect_is_reopened_counted_and_marked_as_a_discontinuity():
    cap, frames = _capture(FlakyLiveSource(frames=(5, 3, 4)), FAST)
    assert cap.error is None and len(frames) == 12
    assert [f.index for f in frames if f.discontinuity] == [0, 5, 8]
    s = cap.connection.summary()
    assert s["disconnects"] == 2 and s["reconnects"] == 2 and "connection lost" in s["last_error"]


def test_without_a_policy_a_disconnect_ends_the_run():
    cap, frames = _capture(FlakyLiveSource(frames=(5, 5)), ReconnectPolicy(attempts=0))
    assert isinstance(cap.error, SourceDisconnected) and len(frames) == 5


def test_gives_up_after_the_attempts_in_one_line():
    class Dead(FlakyLiveSource):
        def open(self):
            if self.opens >= 1:
                self.opens += 1
                raise SourceDisconnected("igtl://127.0.0.1:1: connection refused")
            return super().open()

    cap, frames = _capture(Dead(frames=(2, 2)), FAST)
    assert isinstance(cap.error, SourceError) and "gave up after 3 reconnect attempts" in str(cap.error)
    assert "\n" not in str(cap.error) and len(frames) == 2


def test_a_late_start_is_waited_for_by_the_same_policy():
    src, conn = FlakyLiveSource(fail_opens=2), ConnectionLog()
    info = open_with_retry(src, FAST, conn)
    assert info.live and src.opens == 3 and conn.reconnects == 1
    with pytest.raises(SourceDisconnected):
        open_with_retry(FlakyLiveSource(fail_opens=1), ReconnectPolicy(attempts=0), ConnectionLog())


def test_backoff_doubles_up_to_the_cap_and_stop_interrupts():
    assert list(ReconnectPolicy(attempts=5, initial_s=0.5, max_s=2.0).delays()) == [0.5, 1.0, 2.0, 2.0, 2.0]
    with pytest.raises(ConfigError):
        ReconnectPolicy(attempts=-1)
    from sonolens.pipeline.reconnect import reopen

    stop = threading.Event()
    stop.set()
    with pytest.raises(SourceError, match="stopped while reconnecting"):
        reopen(FlakyLiveSource(), ReconnectPolicy(attempts=3, initial_s=5.0, max_s=5.0), stop, ConnectionLog(),
               SourceDisconnected("gone"))
