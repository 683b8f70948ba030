"""The reader-study log: JSON Lines that survive a killed process.

One file per session. Records, one JSON object per line, each with a ``type``:

* ``header`` (first line): participant, condition (``ai`` | ``blinded`` | ``off``), source, model metadata,
  class names and the call keys, start time (ISO 8601 and Unix seconds), sonolens version, ``t0_ns`` (the
  perf_counter origin of every ``t_s`` below);
* ``frame``: one per frame *displayed* — index, source pts, wall time, ``t_s`` since the session start,
  probabilities and the model's top class (also when they were hidden: ``shown`` says whether the clinician saw
  them), ``capture_to_result_ms`` and ``capture_to_pixels_ms`` (the self-check measurement, when available);
* ``event``: ``call`` (the clinician's answer, ``label``/``class_index``, with the model's top class at that
  moment), ``flag``, ``freeze``, ``unfreeze``, ``end_of_stream``, ``source_error`` … each with the frame index on
  screen and the time;
* ``end`` (last line after a normal exit): counts.

Durability: every line is written with one ``write`` and flushed at once, and a background thread calls
``os.fsync`` about once a second, so a killed process loses at most the line being written (a torn last line)
and a power loss at most ~1 s. ``read_log`` tolerates a torn last line. This module has no Qt import, so the
export tool can use it without a display.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonolens import __version__
from sonolens.pipeline.errors import ConfigError

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


class StudyLog:
    """Append-only JSONL writer. Thread-safe; ``close()`` writes the ``end`` record and syncs."""

    def __init__(self, path: str | os.PathLike, *, participant: str, condition: str, source: str,
                 model: dict | None, class_names: Sequence[str] = (), call_labels: Sequence[str] = DEFAULT_CALL_LABELS,
                 fsync_interval_s: float = 1.0, extra: dict | None = None) -> None:
        if condition not in CONDITIONS:
            raise ConfigError(f"--condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"study log folder does not exist: {self.path.parent}")
        try:
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write study log {self.path}: {exc.strerror or exc}") from None
        self.condition = condition
        self.call_labels = tuple(call_labels)
        self.t0_ns = time.perf_counter_ns()
        self._lock = threading.Lock()
        self._closed = False
        self.frames = 0
        self.events = 0
        self._dirty = False
        self._stop = threading.Event()
        now = time.time()
        self._write({
            "type": "header", "participant": participant, "condition": condition, "source": source,
            "model": model, "class_names": list(class_names), "call_keys": {str(i + 1): lab for i, lab in
                                                                            enumerate(self.call_labels)},
            "start_time": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).astimezone().isoformat(),
            "start_unix": now, "t0_ns": self.t0_ns, "sonolens_version": __version__, **(extra or {}),
        })
        self._syncer = threading.Thread(target=self._sync_loop, args=(fsync_interval_s,), name="sonolens-studylog",
                                        daemon=True)
        self._syncer.start()

    # -- writing ------------------------------------------------------------------------------------------------
    def t_s(self, t_ns: int | None = None) -> float:
        return ((time.perf_counter_ns() if t_ns is None else t_ns) - self.t0_ns) / 1e9

    def _write(self, record: dict) -> None:
        line = json.dumps(_clean(record), separators=(",", ":")) + "\n"
        with self._lock:
            if self._closed:
                return
            self._f.write(line)  # one write per line: a kill can tear only this line
            self._f.flush()
            self._dirty = True

    def frame(self, index: int, *, pts_s: float | None, probs: Sequence[float] | None, top_class: int | None,
              shown: bool, capture_to_result_ms: float | None, capture_to_pixels_ms: float | None = None,
              t_ns: int | None = None) -> None:
        self.frames += 1
        self._write({"type": "frame", "index": int(index), "pts_s": pts_s, "wall_time": time.time(),
                     "t_s": self.t_s(t_ns), "probs": None if probs is None else [float(p) for p in probs],
                     "top_class": top_class, "shown": bool(shown), "capture_to_result_ms": capture_to_result_ms,
                     "capture_to_pixels_ms": capture_to_pixels_ms})

    def event(self, kind: str, frame_index: int | None, **fields: Any) -> None:
        self.events += 1
        self._write({"type": "event", "kind": kind, "frame_index": frame_index, "wall_time": time.time(),
                     "t_s": self.t_s(), **fields})

    def call(self, key: int, frame_index: int | None, *, model_top: int | None, model_probs=None,
             class_names: Sequence[str] = ()) -> str:
        """Record the clinician's call for key ``key`` (1-based); returns the label."""
        label = self.call_labels[key - 1]
        model_label = class_names[model_top] if model_top is not None and 0 <= model_top < len(class_names) else None
        self.event("call", frame_index, key=key, label=label, class_index=key - 1, model_top=model_top,
                   model_label=model_label,
                   model_probs=None if model_probs is None else [float(p) for p in model_probs])
        return label

    # -- durability -----------------------------------------------------------------------------------------------
    def _sync_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sync()

    def sync(self) -> None:
        with self._lock:
            if self._closed or not self._dirty:
                return
            fd = self._f.fileno()
            self._dirty = False
        try:
            os.fsync(fd)
        except OSError:
            pass

    def close(self, **summary: Any) -> None:
        if self._closed:
            return
        self._write({"type": "end", "wall_time": time.time(), "t_s": self.t_s(), "frames": self.frames,
                     "events": self.events, **summary})
        self._stop.set()
        with self._lock:
            self._closed = True
            self._f.flush()
            try:
                os.fsync(self._f.fileno())
            except OSError:
                pass
            self._f.close()


# -- reading ----------------------------------------------------------------------------------------------------
@dataclass
class StudyRecords:
    path: Path
    header: dict
    frames: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    end: dict | None = None
    torn_last_line: bool = False  # the process was killed mid-write (or the file is still being written)
    bad_lines: int = 0  # unreadable lines elsewhere (should be 0)

    @property
    def complete(self) -> bool:
        """True when the session ended normally (an ``end`` record was written)."""
        return self.end is not None


def read_log(path: str | os.PathLike) -> StudyRecords:
    """Read a study log, tolerating a torn last line (killed process). Raises ConfigError if it has no header."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such study log: {p}")
    data = p.read_bytes()
    lines = data.split(b"\n")
    # a file that ends with "\n" leaves one empty string at the end; a torn line leaves a non-empty one
    last_complete = data.endswith(b"\n")
    header: dict | None = None
    recs = StudyRecords(p, {})
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        is_last = i == len(lines) - 1 and not last_complete
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            if is_last:
                recs.torn_last_line = True
            else:
                recs.bad_lines += 1
            continue
        if is_last:  # parsed, but the newline never made it: still a complete record
            recs.torn_last_line = False
        kind = rec.get("type")
        if kind == "header" and header is None:
            header = rec
        elif kind == "frame":
            recs.frames.append(rec)
        elif kind == "event":
            recs.events.append(rec)
        elif kind == "end":
            recs.end = rec
    if header is None:
        raise ConfigError(f"{p}: not a sonolens study log (no header record)")
    recs.header = header
    return recs


__all__ = ["StudyLog", "StudyRecords", "read_log", "CONDITIONS", "DEFAULT_CALL_LABELS"]
