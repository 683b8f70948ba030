"""Output files of a run (report JSON, per-frame CSV, recording): checked before the run, written safely after it.

A report that can only fail after an hour of processing is a report lost: ``check_writable`` opens every output
path before the first frame (a missing folder, a folder given as a file name, a read-only or full disk all fail
there, in one line), and ``write_text_atomic`` writes the JSON to a temporary file in the same folder and renames it,
so a crash or a full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError, SonolensError, reason


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Raise a one-line ``ConfigError`` unless ``path`` can be created or overwritten; return it as a Path.

    Creates missing parent folders (``--record out/overlay.mp4`` makes ``out/``) and the file itself if it does
    not exist (an empty file is left until the run writes it).
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"cannot write the {what} to {p}: it is a folder")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cannot write the {what} to {p}: {parent} is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} to {p}: cannot create folder {parent} ({reason(exc)})") from None
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} to {p}: {reason(exc)}") from None
    return p


def write_text_atomic(path: str | os.PathLike, text: str, what: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename; one-line ``SonolensError`` on failure."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise SonolensError(f"writing the {what} to {p} failed: {reason(exc)}") from None


__all__ = ["check_writable", "write_text_atomic"]
