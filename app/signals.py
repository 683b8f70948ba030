"""Ctrl-C and SIGTERM in the viewer: the normal quit path, then exit code 128 + N.

Python runs a signal handler only between two bytecodes of the main thread, and a Qt event loop keeps the main
thread inside C++ (``QApplication.exec``) until something happens: a plain handler would run only at the next
mouse move or timer, and the default ones either raise ``KeyboardInterrupt`` inside a Qt callback (a traceback,
no report, no study log end) or, for SIGTERM, kill the process outright.

``QtShutdownSignals`` keeps the contract of ``pipeline.shutdown.ShutdownSignals`` in an event loop:

* the C-level handler writes the signal number into a socket (``signal.set_wakeup_fd``); a ``QSocketNotifier``
  on the other end wakes the event loop at once, which calls ``on_signal(signum)`` from the loop — a clean point,
  not the middle of whatever Python code was running;
* the first SIGINT/SIGTERM takes the normal quit path (the window's ``finish``: recordings, report, study log
  end record) and the exit code is 128 + N (130 after Ctrl-C, 143 after SIGTERM);
* further signals are ignored until the process has finished (one line says to wait), so a second Ctrl-C cannot
  cut the shutdown short.

Main thread only; elsewhere (or where the wakeup fd cannot be set) it does nothing.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

from PyQt6.QtCore import QObject, QSocketNotifier

HANDLED = (signal.SIGINT, signal.SIGTERM)


class QtShutdownSignals(QObject):
    """Context manager: while active, SIGINT/SIGTERM call ``on_signal(signum)`` once, from the Qt event loop.

    ``received`` is the first signal number (None until one arrives); ``exit_code`` is 128 + it."""

    def __init__(self, on_signal: Callable[[int], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.on_signal = on_signal
        self.received: int | None = None
        self._delivered = False
        self._previous: dict[int, object] = {}
        self._previous_fd: int | None = None
        self._rsock: socket.socket | None = None
        self._wsock: socket.socket | None = None
        self._notifier: QSocketNotifier | None = None

    # -- handlers --------------------------------------------------------------------------------------------------
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        """Python-level handler: remember the first signal; the notifier delivers it from the event loop."""
        if self.received is None:
            self.received = signum
        else:
            print("sonolens: finishing the study log, recordings and report; please wait", file=sys.stderr)

    def _readable(self) -> None:
        """The wakeup socket has bytes (signal numbers): deliver the first signal once, from the event loop."""
        assert self._rsock is not None
        try:
            data = self._rsock.recv(64)
        except (BlockingIOError, InterruptedError):
            data = b""
        if self.received is None and data:  # the Python handler has not run yet: the byte says which signal
            self.received = data[0]
        if self.received is not None and not self._delivered:
            self._delivered = True
            self.on_signal(self.received)

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else 128 + int(self.received)

    # -- install / remove ------------------------------------------------------------------------------------------
    def __enter__(self) -> QtShutdownSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        rsock, wsock = socket.socketpair()
        for s in (rsock, wsock):
            s.setblocking(False)
        try:
            self._previous_fd = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            rsock.close()
            wsock.close()
            return self
        self._rsock, self._wsock = rsock, wsock
        self._notifier = QSocketNotifier(rsock.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(lambda *_: self._readable())
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        """Stop listening; signals that arrive from now on are ignored (the process is finishing)."""
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)
        self._previous.clear()
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier = None
        if self._rsock is not None:
            signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
            self._rsock.close()
            assert self._wsock is not None
            self._wsock.close()
            self._rsock = self._wsock = None

    def restore(self) -> None:
        """Give the signals their previous handlers back (tests; the viewer keeps ignoring them to its end)."""
        previous = dict(self._previous)
        self.__exit__(None, None, None)
        for sig, prev in previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]


__all__ = ["QtShutdownSignals", "HANDLED"]
