"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit.

Anything that is *not* a ``SonolensError`` is a bug in sonolens and keeps its traceback.
"""

import difflib
from collections.abc import Iterable


class SonolensError(Exception):
    """A user-facing error: bad input, missing file, unusable model. ``str(err)`` is the one line shown."""

    exit_code = 2


class SourceError(SonolensError):
    """A source cannot be opened, decoded, or disappeared mid-stream."""


class ModelError(SonolensError):
    """A model file is missing, corrupt, or does not match the runtime's contract."""


class ConfigError(SonolensError):
    """An option or configuration value is invalid."""


class SourceDisconnected(SourceError):
    """A live source (camera, network stream, OpenIGTLink server) lost its connection or has not started yet.

    The capture thread's reconnect policy (``pipeline.reconnect``) reopens the source after a back-off when the
    user asked for it (``--reconnect``); otherwise it ends the run like any ``SourceError``.
    """


def reason(exc: BaseException, limit: int = 160) -> str:
    """An error's cause in one short line, for the one-line messages users see: the OS's or FFmpeg's own words
    (``No space left on device``, ``Invalid data found when processing input``) without errno or file name when the
    error carries them (``strerror``), else the first line of its text, else its type; at most ``limit`` chars."""
    text = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def suggest(name: str, valid: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest valid name (else the valid names), to end an unknown-name message."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f" (valid: {', '.join(valid[:12])}…)"
