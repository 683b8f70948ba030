"""The one reconnect policy every live source uses (cameras, network streams, OpenIGTLink).

A sender that restarts, a stream that starts after sonolens, a cable pulled for a second: a live source raises
``SourceDisconnected`` (from ``open()`` or while yielding frames) and, when the user asked for it (``--reconnect``),
the capture thread closes it, waits, and opens it again — with exponential back-off (``initial_s`` × ``factor``^k,
at most ``max_s``), up to ``attempts`` failures in a row. Every disconnect and every gap (seconds without frames)
is counted in the report and shown in the HUD; one line is logged per disconnect, not one per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import ConfigError, SourceDisconnected, SourceError
from .sources.base import Source, SourceInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconnectPolicy:
    """``attempts`` failed opens in a row before giving up (0: never reconnect); back-off in seconds."""

    attempts: int = 10
    initial_s: float = 0.5
    max_s: float = 5.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ConfigError("reconnect policy needs attempts >= 0, 0 < initial_s <= max_s and factor >= 1")

    def delays(self) -> Iterator[float]:
        """The waits before each attempt: ``initial_s``, ``initial_s * factor``, … capped at ``max_s``."""
        d = self.initial_s
        for _ in range(self.attempts):
            yield d
            d = min(self.max_s, d * self.factor)


NO_RECONNECT = ReconnectPolicy(attempts=0)


@dataclass
class ConnectionLog:
    """What the report says about a live source's connection (thread-safe enough: one writer, the capture)."""

    disconnects: int = 0
    reconnects: int = 0
    gaps_s: list[float] = field(default_factory=list)
    last_error: str | None = None

    def summary(self) -> dict:
        return {"disconnects": self.disconnects, "reconnects": self.reconnects,
                "gap_s_total": round(sum(self.gaps_s), 3), "gap_s_max": round(max(self.gaps_s, default=0.0), 3),
                "last_error": self.last_error}


def reopen(source: Source, policy: ReconnectPolicy, stop: threading.Event, conn: ConnectionLog,
           first_error: SourceDisconnected, clock: Callable[[], float] = time.monotonic) -> SourceInfo:
    """Close ``source`` and open it again by ``policy``; returns its new info. Raises ``SourceError`` when the
    attempts run out (the message names the first error and the number of attempts) or when ``stop`` is set."""
    conn.disconnects += 1
    conn.last_error = str(first_error)
    t_lost = clock()
    log.warning("%s; reconnecting (up to %d attempts)", first_error, policy.attempts)
    tries = 0
    for delay in policy.delays():
        if stop.wait(delay):
            raise SourceError(f"{first_error} (stopped while reconnecting)")
        tries += 1
        try:
            source.close()
        except Exception:  # noqa: BLE001 - a half-dead source may fail to close; opening again is what matters
            log.debug("closing a disconnected source failed", exc_info=True)
        try:
            info = source.open()
        except SourceDisconnected as exc:
            conn.last_error = str(exc)
            continue
        conn.reconnects += 1
        conn.gaps_s.append(clock() - t_lost)
        return info
    raise SourceError(f"{first_error}; gave up after {tries} reconnect attempt{'s' if tries != 1 else ''}")


def open_with_retry(source: Source, policy: ReconnectPolicy, conn: ConnectionLog,
                    stop: threading.Event | None = None) -> SourceInfo:
    """``source.open()``, waiting for a live source that has not started yet by the same policy."""
    try:
        return source.open()
    except SourceDisconnected as exc:
        if policy.attempts == 0:
            raise
        return reopen(source, policy, stop or threading.Event(), conn, exc)


__all__ = ["ReconnectPolicy", "NO_RECONNECT", "ConnectionLog", "reopen", "open_with_retry"]
