"""Signals: SIGINT and SIGTERM take the same clean-shutdown path, and a second signal does not cut it short.

Python turns the first Ctrl-C into ``KeyboardInterrupt``; SIGTERM (what ``kill``, systemd and Docker send) kills the
process outright by default, losing the report and the end of a recording. ``ShutdownSignals`` makes both raise
``KeyboardInterrupt`` once — the pipeline's ``run_to_end`` catches it, stops the threads, finishes the recording and
writes the reports — and then ignores further signals until the process has finished (a second Ctrl-C during
shutdown prints one line instead of killing the recorder half-way). The exit status then follows the shell
convention: 128 + the signal number (130 after Ctrl-C, 143 after SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """Context manager (main thread only; a no-op elsewhere). ``received`` is the first signal number or None."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            raise KeyboardInterrupt
        print("sonolens: finishing the recording and reports; please wait", file=sys.stderr)

    def __enter__(self) -> ShutdownSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def exit_code(self) -> int | None:
        """128 + the signal number, or None when no signal arrived."""
        return None if self.received is None else 128 + int(self.received)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15: how a report names the signal that ended a run."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


__all__ = ["ShutdownSignals", "HANDLED", "signal_name"]
