"""The batch's progress on stderr: recordings done of the total, failures, rate and time left.

On a terminal: a ``tqdm`` bar (the ``batch`` extra installs it); in a log (stderr not a terminal) or without tqdm:
one plain line every ``every_s`` seconds and one at the end, so a log file is not filled with carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """``update(failed)`` once per finished recording; ``close()`` at the end (or on interruption)."""

    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None, every_s: float = 30.0) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stderr
        self.quiet, self.every_s = quiet, every_s
        self.t0 = self._last = time.monotonic()
        self._bar: Any = None
        if not quiet and total and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="rec", desc="batch", file=self.stream, dynamic_ncols=True,
                                 smoothing=0.1)
            except ImportError:
                self._bar = None

    def update(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        if self._bar is not None:
            self._bar.set_postfix_str(f"failed {self.failed}", refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if not self.quiet and (now - self._last >= self.every_s or self.done == self.total):
            self._last = now
            print(f"sonolens: batch: {self.line(now)}", file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.t0
        text = f"{self.done}/{self.total} recordings, {self.failed} failed, {_eta(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", about {_eta(elapsed / self.done * (self.total - self.done))} left"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = ["Progress"]
