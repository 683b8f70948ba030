"""The reader-study log: JSON Lines that survive a killed process and a full disk.

One file per session: ``StudyLog`` refuses a file that already holds a session (``--log`` of an earlier one), so
a log's header always describes every record in it. A writer holds an exclusive advisory lock (``flock``) on its
file from the moment it opens it until it closes, taken before anything is written: a second session started on
the same file at the same instant (in this process or another, including two both given an empty file made by
``mktemp``) is refused in one line naming the session that has it, instead of interleaving its lines with the
first one's (whose close would cut them off). After taking the lock the writer checks that the file is still the
empty one it opened. Without ``fcntl`` (Windows), or on a filesystem that cannot lock, the file is not locked.
Records, one JSON object per line, each with a ``type``:

* ``header`` (first line): participant, condition (``ai`` | ``blinded`` | ``off``), source, model metadata,
  class names and the call keys, start time (ISO 8601 and Unix seconds), sonolens version, ``t0_ns`` (the
  perf_counter origin of every ``t_s`` below), whether the frame-state gate is on (``gate``);
* ``frame``: one per frame *displayed* — index, source pts, wall time, ``t_s`` since the session start,
  probabilities and the model's top class (also when they were hidden: ``shown`` says whether the clinician saw
  them), the frame's ``state`` (``ok`` | ``out_of_domain`` | ``no_image``: only ``ok`` frames show a prediction),
  ``ood_score`` (None when the model has no gate), ``no_image`` (why there was no image), ``capture_to_result_ms``
  and ``capture_to_pixels_ms`` (the self-check measurement, when available);
* ``event``: ``call`` (the clinician's answer, ``label``/``class_index``, with the model's top class and the
  frame's state ``model_state`` at that moment), ``flag``, ``freeze``, ``unfreeze``, ``end_of_stream``,
  ``source_error`` … each with the frame index on screen and the time;
* ``end`` (last line): counts, the exit code, and ``error`` when the session ended because the log could not be
  written (``interrupted_by`` after Ctrl-C or SIGTERM).

Durability: every line is written with one ``write`` of the whole line, and a background thread calls
``os.fsync`` about once a second, so a killed process loses at most the line being written (a torn last line)
and a power loss at most ~1 s. A full disk does not tear the log: before each line the log makes sure the line
and ``RESERVE`` bytes after it are allocated on disk (``fallocate`` without changing the size), so when the disk
fills up the log stops *before* a line fails, sets ``error`` and still has room for its ``end`` record. Where the
filesystem cannot reserve space, a line that fails half-way is cut off, so the log ends at its last whole line.
``read_sessions`` splits a file at each header (logs written before one session per file was enforced) and
reports torn lines instead of failing on them; it reads LF and CRLF line endings, and skips, counting them by reason
(``StudyRecords.skipped``), lines that are not UTF-8, JSON values that are not objects (or nested too deeply) and
records of a type it does not know (a newer sonolens's; unknown fields of known records are kept). This module has
no Qt import, so the export tool can use it without a display.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import json
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (see ``_lock_log``)
    fcntl = None  # type: ignore[assignment]

from sonolens import __version__
from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import unlinked, vanished_message

CONDITIONS = ("ai", "blinded", "off")
DEFAULT_CALL_LABELS = ("normal", "benign", "malignant")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (JSON has no NaN), numpy scalars become Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _clean(value.item())
    return value


RESERVE = 4096  # bytes kept allocated past the log's end: room for the end record when the disk fills up
_NO_RESERVE_ERRNOS = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV, errno.ESPIPE}


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _libc()
_KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate [offset, offset + length) of ``fd`` without changing its size; OSError when it cannot."""
    if _FALLOCATE is None:
        raise OSError(errno.EOPNOTSUPP, "fallocate is not available")
    if _FALLOCATE(fd, _KEEP_SIZE, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def describe_session(path: str | os.PathLike) -> str:
    """"participant P07, condition ai, started 2025-…" from a log's first line, or "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = json.loads(f.readline().decode("utf-8"))
        return (f"participant {head.get('participant')}, condition {head.get('condition')}, started "
                f"{head.get('start_time')}")
    except (OSError, ValueError, AttributeError):
        return ""


def check_new_log(path: str | os.PathLike) -> None:
    """Refuse (``ConfigError``, one line) a log file that already holds a session: a log holds one session. An
    empty file is fine (e.g. made by ``mktemp``)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot write study log {p}: {exc.strerror or exc}") from None
    if not p.is_file():
        raise ConfigError(f"study log {p} is not a file")
    if size > 0:
        raise _holds_a_session(p)


def _holds_a_session(p: Path) -> ConfigError:
    who = describe_session(p)
    return ConfigError(f"study log {p} already holds a session{f' ({who})' if who else ''}: a log holds one "
                       "session; give --log a new file name (or leave it out for a dated one)")


_LOCK_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _lock_log(fd: int, path: Path) -> None:
    """Take an exclusive advisory lock (``flock``) on the log just opened as ``fd``, and make sure it is still the
    empty file at ``path``; otherwise close ``fd`` and raise a one-line ``ConfigError``.

    ``flock`` locks belong to an open file description, so a second writer is refused in another process and in
    this one alike. The lock is released when the log closes (or its process dies). Where there is no ``fcntl``
    (Windows) or the filesystem cannot lock (``ENOLCK`` on some network filesystems), the log is not locked: two
    sessions started on one file at the same instant are then not told apart.
    """
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in _LOCK_UNSUPPORTED:
                    raise
        problem = _not_ours(fd, path)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            who = describe_session(path) or "which has not written its header yet"
            raise ConfigError(f"study log {path} is being written by another session ({who}): give --log a new file "
                              "name (or leave it out for a dated one)") from None
        raise ConfigError(f"cannot write study log {path}: {exc.strerror or exc}") from None
    if problem is not None:
        os.close(fd)
        raise problem


def _not_ours(fd: int, path: Path) -> ConfigError | None:
    """After the lock: the error when another writer got to ``path`` between its open and the lock (wrote a session
    into it, or removed or replaced it), else None."""
    mine = os.fstat(fd)
    if mine.st_size > 0:
        return _holds_a_session(path)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        named = None
    if named is None or (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
        return ConfigError(f"study log {path} was removed or replaced by another session while it was opened")
    return None


class StudyLog:
    """Append-only JSONL writer of one session. Thread-safe; ``close()`` writes the ``end`` record and syncs.

    A write error (a full disk) never raises: it sets ``error`` (one line) and the log writes nothing more but its
    ``end`` record, which ``RESERVE`` keeps room for. The window checks ``error`` after writing (``StudySession``).
    """

    def __init__(self, path: str | os.PathLike, *, participant: str, condition: str, source: str,
                 model: dict | None, class_names: Sequence[str] = (), call_labels: Sequence[str] = DEFAULT_CALL_LABELS,
                 fsync_interval_s: float = 1.0, extra: dict | None = None) -> None:
        if condition not in CONDITIONS:
            raise ConfigError(f"--condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"study log folder does not exist: {self.path.parent}")
        self._fd = self._open_new()
        self.condition = condition
        self.call_labels = tuple(call_labels)
        self.t0_ns = time.perf_counter_ns()
        self._lock = threading.Lock()
        self._closed = False
        self._size = 0
        self._can_reserve = True
        self.error: str | None = None
        self.end_written = False
        self.frames = 0  # records written (a record the log could not write is not counted)
        self.events = 0
        self._dirty = False
        self._stop = threading.Event()
        now = time.time()
        try:
            self._write({
                "type": "header", "participant": participant, "condition": condition, "source": source,
                "model": model, "class_names": list(class_names), "call_keys": {str(i + 1): lab for i, lab in
                                                                                enumerate(self.call_labels)},
                "start_time": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).astimezone().isoformat(),
                "start_unix": now, "t0_ns": self.t0_ns, "sonolens_version": __version__, **(extra or {}),
            })
            self._sync_fd = os.dup(self._fd)  # the syncer's own descriptor: fsync never holds the writers' lock
        except BaseException:  # e.g. a header that is not JSON: no session, and the file is not left locked
            self._abandon()
            raise
        if self.error is not None:  # not even the header fits: no session, nothing left behind
            message = self.error
            os.close(self._sync_fd)
            self._abandon()
            raise ConfigError(message)
        self._syncer = threading.Thread(target=self._sync_loop, args=(fsync_interval_s,), name="sonolens-studylog",
                                        daemon=True)
        self._syncer.start()

    def _abandon(self) -> None:
        """No session after all: close the file (releasing its lock), and remove it when nothing was written. It is
        removed before the lock goes: a writer that locks it after finds it gone (``_not_ours``) rather than losing
        its own session to this removal."""
        with self._lock:
            self._closed = True
            if self._size == 0:
                try:
                    self.path.unlink(missing_ok=True)
                except OSError:
                    pass
            os.close(self._fd)

    def _open_new(self) -> int:
        """A new file (or an empty one), locked for this session before anything is written (``_lock_log``): a file
        that holds a session (``check_new_log``) or that another session is writing is refused."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags | os.O_EXCL, 0o644)
        except FileExistsError:
            check_new_log(self.path)  # raises unless the file is empty
            try:
                fd = os.open(self.path, flags)
            except OSError as exc:
                raise ConfigError(f"cannot write study log {self.path}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot write study log {self.path}: {exc.strerror or exc}") from None
        _lock_log(fd, self.path)  # closes fd and raises when another writer has it
        return fd

    # -- writing ------------------------------------------------------------------------------------------------
    def t_s(self, t_ns: int | None = None) -> float:
        return ((time.perf_counter_ns() if t_ns is None else t_ns) - self.t0_ns) / 1e9

    @staticmethod
    def _encode(record: dict) -> bytes:
        return (json.dumps(_clean(record), separators=(",", ":")) + "\n").encode("utf-8")

    def _write(self, record: dict) -> bool:
        data = self._encode(record)
        with self._lock:
            if self._closed or self.error is not None:
                return False
            return self._append(data, reserve=True)

    def _append(self, data: bytes, *, reserve: bool) -> bool:
        """Append one whole line (lock held). ``reserve``: first make sure the line and ``RESERVE`` bytes after
        it are allocated, so the disk filling up stops the log here rather than in the middle of a line."""
        end = self._size
        if reserve and self._can_reserve:
            try:
                _reserve(self._fd, end, len(data) + RESERVE)
            except OSError as exc:
                if exc.errno in _NO_RESERVE_ERRNOS:
                    self._can_reserve = False  # this filesystem cannot: rely on cutting off a torn line
                else:
                    self._fail(exc)
                    return False
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            if written:  # a torn line: cut it off, so the log ends at its last whole line
                try:
                    os.ftruncate(self._fd, end)
                except OSError:
                    pass
            self._fail(exc)
            return False
        self._size = end + len(data)
        self._dirty = True
        return True

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = f"cannot write study log {self.path}: {exc.strerror or exc}"

    def frame(self, index: int, *, pts_s: float | None, probs: Sequence[float] | None, top_class: int | None,
              shown: bool, capture_to_result_ms: float | None, capture_to_pixels_ms: float | None = None,
              t_ns: int | None = None, state: str | None = None, ood_score: float | None = None,
              no_image: str | None = None, file: str | None = None, case: str | None = None) -> None:
        """One displayed frame. ``case``: the worklist case on screen (``sonolens study run``), else None."""
        self.frames += self._write({"type": "frame", "index": int(index), "pts_s": pts_s, "file": file,
                                    "case": case, "wall_time": time.time(),
                     "t_s": self.t_s(t_ns), "probs": None if probs is None else [float(p) for p in probs],
                     "top_class": top_class, "shown": bool(shown), "state": state, "ood_score": ood_score,
                     "no_image": no_image, "capture_to_result_ms": capture_to_result_ms,
                     "capture_to_pixels_ms": capture_to_pixels_ms})

    def event(self, kind: str, frame_index: int | None, **fields: Any) -> None:
        self.events += self._write({"type": "event", "kind": kind, "frame_index": frame_index,
                                    "wall_time": time.time(), "t_s": self.t_s(), **fields})

    def call(self, key: int, frame_index: int | None, *, model_top: int | None, model_probs=None,
             class_names: Sequence[str] = (), model_state: str | None = None, file: str | None = None,
             **answer: Any) -> str:
        """Record the clinician's call for key ``key`` (1-based); returns the label. ``model_state``: the state of
        the frame on screen (a call on a frame without a prediction does not count towards agreement). ``answer``:
        what else the reader gave with the call (a worklist's ``case`` and ``confidence``)."""
        label = self.call_labels[key - 1]
        model_label = class_names[model_top] if model_top is not None and 0 <= model_top < len(class_names) else None
        self.event("call", frame_index, key=key, label=label, class_index=key - 1, model_top=model_top,
                   model_label=model_label, model_state=model_state, file=file,
                   model_probs=None if model_probs is None else [float(p) for p in model_probs], **answer)
        return label

    # -- durability -----------------------------------------------------------------------------------------------
    def _sync_loop(self, interval: float) -> None:
        try:
            while not self._stop.wait(interval):
                self.sync()
        finally:
            os.close(self._sync_fd)

    def sync(self) -> None:
        """Every ``fsync_interval_s``: the log still has a link (its folder was not removed: else the session stops
        now, not at its end), and what was written since the last sync reaches the disk."""
        with self._lock:
            if self._closed:
                return
            dirty, self._dirty = self._dirty, False
        if unlinked(self._sync_fd):
            with self._lock:
                self.error = self.error or self._vanished()
            return
        if not dirty:
            return
        try:
            os.fsync(self._sync_fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS):  # not a file that can be synced: nothing to lose
                with self._lock:
                    self._fail(exc)

    def _vanished(self) -> str:
        return vanished_message("study log", self.path, f"its {self.frames} frame records are lost")

    def close(self, **summary: Any) -> None:
        """Write the ``end`` record (with ``error`` when writing failed; into the reserved room) and close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            record = {"type": "end", "wall_time": time.time(), "t_s": self.t_s(), "frames": self.frames,
                      "events": self.events, **summary}
            if self.error is not None:
                record["error"] = self.error
            self.end_written = self._append(self._encode(record), reserve=False)
            try:
                os.ftruncate(self._fd, self._size)  # give the reserve past the end back
            except OSError:
                pass
            if unlinked(self._fd):
                self.end_written = False
                self.error = self.error or self._vanished()
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            _unlock(self._fd)  # now, not when the syncer closes its duplicate of the descriptor
            os.close(self._fd)
        self._stop.set()


def _unlock(fd: int) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass


# -- reading ----------------------------------------------------------------------------------------------------
# Why a whole line was skipped (``StudyRecords.skipped``); torn lines are listed in ``torn_lines`` instead.
SKIP_NOT_UTF8 = "not UTF-8"  # bytes that are not UTF-8, or a \uXXXX escape of half a surrogate pair
SKIP_NOT_OBJECT = "not a JSON object"  # a JSON value that is not an object: [1, 2], "x", 3
SKIP_UNKNOWN_TYPE = "unknown record type"  # a record from a newer sonolens (or without a type)
SKIP_TOO_DEEP = "nested too deeply"  # JSON nested deeper than Python's parser goes (no writer of ours makes one)
SKIP_BEFORE_HEADER = "before the first header"


@dataclass
class StudyRecords:
    """One session of a log file: its header and the records after it, up to the next header."""

    path: Path
    header: dict
    frames: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    end: dict | None = None
    torn_last_line: bool = False  # its last line was cut short: the process was killed mid-write (or still writes)
    bad_lines: int = 0  # unreadable lines elsewhere in the session (torn, not UTF-8, no object, too deep)
    torn_lines: list[int] = field(default_factory=list)  # 1-based line numbers in the file of torn lines
    session: int = 1  # which session of the file (1-based)
    sessions_in_file: int = 1
    skipped: Counter[str] = field(default_factory=Counter)  # whole lines skipped, by reason (``SKIP_*``), torn aside

    @property
    def complete(self) -> bool:
        """True when the session ended normally (an ``end`` record was written)."""
        return self.end is not None


_RECORD_START = re.compile(rb'\{\s*"type"\s*:')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse(raw: bytes) -> dict | str | None:
    """A line's record; or why the line holds no record although it is no torn one (``SKIP_NOT_UTF8``,
    ``SKIP_NOT_OBJECT``, ``SKIP_TOO_DEEP``); or None when the line is no whole JSON value (torn)."""
    try:
        text, why = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        text, why = raw.decode("utf-8", errors="replace"), SKIP_NOT_UTF8
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    except RecursionError:
        return SKIP_TOO_DEEP
    if why is not None:
        return why if isinstance(rec, dict) else None  # a torn line may end in the middle of a character
    if not isinstance(rec, dict):
        return SKIP_NOT_OBJECT
    if _SURROGATE_ESCAPE.search(raw):  # half a surrogate pair decodes, but cannot be written out again as UTF-8
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return SKIP_NOT_UTF8
    return rec


class _Splitter:
    """``read_sessions``' state: the sessions so far, and what came before the first header."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sessions: list[StudyRecords] = []
        self.orphans = 0  # unreadable lines before the first header
        self.orphan_skips: Counter[str] = Counter()

    def add(self, rec: dict) -> None:
        kind = rec.get("type")
        if kind == "header":
            self.sessions.append(StudyRecords(self.path, rec, session=len(self.sessions) + 1))
            return
        if not self.sessions:
            self.orphan_skips[SKIP_BEFORE_HEADER] += 1
            return
        cur = self.sessions[-1]
        if kind == "frame":
            cur.frames.append(rec)
        elif kind == "event":
            cur.events.append(rec)
        elif kind == "end":
            cur.end = rec
        else:
            cur.skipped[SKIP_UNKNOWN_TYPE] += 1

    def skip(self, why: str) -> None:
        if not self.sessions:
            self.orphans += 1
            self.orphan_skips[why] += 1
            return
        self.sessions[-1].bad_lines += 1
        self.sessions[-1].skipped[why] += 1

    def torn(self, lineno: int, last: bool) -> None:
        if not self.sessions:
            self.orphans += 1
            return
        cur = self.sessions[-1]
        cur.torn_lines.append(lineno)
        if last:
            cur.torn_last_line = True
        else:
            cur.bad_lines += 1

    def line(self, raw: bytes, lineno: int, is_last: bool) -> None:
        rec = _parse(raw)
        if isinstance(rec, dict):  # a whole record (on the last line, the newline may be all that is missing)
            self.add(rec)
            return
        if isinstance(rec, str):
            self.skip(rec)
            return
        # torn: the part before a record that starts later on the same line is what a killed writer left
        starts = [m.start() for m in _RECORD_START.finditer(raw) if m.start() > 0]
        recovered = next((r for r in (_parse(raw[s:]) for s in starts) if isinstance(r, dict)), None)
        if recovered is None:
            self.torn(lineno, is_last)
            return
        self.torn(lineno, last=recovered.get("type") == "header")  # before a header: that session's last line
        self.add(recovered)


def read_sessions(path: str | os.PathLike) -> list[StudyRecords]:
    """Every session in a study log, split at each ``header`` record (a file written by an older sonolens that
    appended a second session to an earlier log holds more than one). Torn lines — a killed session's last line,
    and the start of the next session's header glued to it — are skipped and listed in ``torn_lines``; a record
    that follows the torn part on the same line is recovered. Lines end in LF or CRLF. Other lines that hold no
    record are skipped and counted in ``skipped`` by reason: bytes that are not UTF-8, a JSON value that is not an
    object, a record of a type this sonolens does not know (a newer one's: its known records are read, unknown
    fields kept). Raises ConfigError when the file cannot be read or has no header at all."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such study log: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read study log {p}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    last_complete = data.endswith(b"\n")
    split = _Splitter(p)
    for i, raw in enumerate(lines):
        raw = raw.removesuffix(b"\r")
        if raw.strip():
            split.line(raw, i + 1, is_last=i == len(lines) - 1 and not last_complete)
    sessions = split.sessions
    if not sessions:
        raise ConfigError(f"{p}: not a sonolens study log (no header record)")
    sessions[0].bad_lines += split.orphans
    sessions[0].skipped.update(split.orphan_skips)
    for s in sessions:
        s.sessions_in_file = len(sessions)
    return sessions


def read_log(path: str | os.PathLike) -> StudyRecords:
    """The one session of a study log (``read_sessions`` for files that hold several: this raises ConfigError),
    tolerating a torn last line (killed process). Raises ConfigError if it has no header."""
    sessions = read_sessions(path)
    if len(sessions) > 1:
        raise ConfigError(f"{path}: holds {len(sessions)} sessions; read it with read_sessions "
                          "('sonolens study export' reports each)")
    return sessions[0]


__all__ = ["StudyLog", "StudyRecords", "read_log", "read_sessions", "check_new_log", "describe_session",
           "CONDITIONS", "DEFAULT_CALL_LABELS", "RESERVE", "SKIP_NOT_UTF8", "SKIP_NOT_OBJECT",
           "SKIP_UNKNOWN_TYPE", "SKIP_TOO_DEEP", "SKIP_BEFORE_HEADER"]
