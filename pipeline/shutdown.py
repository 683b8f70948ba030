"""Signals: SIGINT and SIGTERM take the same clean-shutdown path, and a second signal does not cut it short.

Python turns the first Ctrl-C into ``KeyboardInterrupt``; SIGTERM (what ``kill``, systemd and Docker send) kills the
process outright by default, losing the report and the end of a recording. ``ShutdownSignals`` makes both raise
``KeyboardInterrupt`` once — the pipeline's ``run_to_end`` catches it, stops the threads, finishes the recording and
writes the reports — and then ignores further signals until the process has finished (a second Ctrl-C during
shutdown prints one line instead of killing the recorder half-way). The exit status then follows the shell
convention: 128 + the signal number (130 after Ctrl-C, 143 after SIGTERM).

A signal can arrive while Python runs code that cannot pass an exception on — a garbage-collector callback
(Dask's ``distributed`` installs one), a ``__del__``, a weakref callback. The ``KeyboardInterrupt`` raised there is
"ignored": Python prints a traceback and the run goes on as if nothing had happened. While active, the context also
takes ``sys.unraisablehook``: such a swallowed interrupt prints nothing and is delivered to the main thread again
(``_thread.interrupt_main`` from a timer thread, ``REDELIVER_S`` later), outside the code that swallowed it.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)
REDELIVER_S = 0.01  # how soon a swallowed interrupt is delivered again


class ShutdownSignals:
    """Context manager (main thread only; a no-op elsewhere). ``received`` is the first signal number or None."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._previous_hook: Callable[[Any], object] | None = None
        self._redeliver = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None or self._redeliver:
            self.received = self.received or signum
            self._redeliver = False
            raise KeyboardInterrupt
        print("sonolens: finishing the recording and reports; please wait", file=sys.stderr)

    def _unraisable(self, unraisable: Any) -> None:
        """A ``KeyboardInterrupt`` of ours that landed where it could not propagate: delivered again, silently."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.received is not None:
            self._redeliver = True
            # not from here: the hook still runs inside the code that swallowed it. A moment later, from another
            # thread, the main thread gets the signal again (and if it lands in such code again, so does this).
            timer = threading.Timer(REDELIVER_S, _thread.interrupt_main, args=(self.received,))
            timer.daemon = True
            timer.start()
            return
        if self._previous_hook is not None:
            self._previous_hook(unraisable)

    def __enter__(self) -> ShutdownSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handler)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self._previous.clear()
        if self._previous_hook is not None:
            sys.unraisablehook, self._previous_hook = self._previous_hook, None

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
