"""One result file per recording under ``OUT/recordings/``, written atomically: what makes a batch resumable.

A result is complete — and a later run skips its recording — when its file parses and its fingerprint matches: the
recording's (size and modification time), the model file's SHA-256 and every pipeline setting that changes a number
(gate, ROI, smoothing, start, frame limit…). With ``--frames`` its per-frame CSV must exist too. A recording that
failed has a complete result as well (its error does not go away by itself); ``--retry-errors`` runs those again.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from sonolens.pipeline.outputs import strict_json, write_text_atomic
from sonolens.pipeline.stream import PipelineConfig

from .discover import Recording

FORMAT = "sonolens-batch/1"
RESULTS_DIR = "recordings"
FRAMES_DIR = "frames"
# settings that change no number of a result: where it is written, how fast, the model's path (its hash counts)
_NEUTRAL = {"source", "model", "csv", "threads", "telemetry_window", "queue", "queue_capacity", "realtime", "speed",
            "loop", "reconnect", "slideshow_hold", "max_batch"}


def settings_hash(cfg: PipelineConfig, model_sha256: str) -> str:
    """SHA-256 of the model and of the pipeline settings that shape a result."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _NEUTRAL}
    text = json.dumps({"model": model_sha256, "settings": values}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Store:
    """The result files of one output folder, for one model and one set of settings (``settings_hash``)."""

    def __init__(self, out: str | Path, settings: str, *, frames: bool = False, retry_errors: bool = False) -> None:
        self.out = Path(out)
        self.results = self.out / RESULTS_DIR
        self.frames_dir = self.out / FRAMES_DIR if frames else None
        self.settings = settings
        self.retry_errors = retry_errors

    def make_dirs(self) -> None:
        for d in (self.results, self.frames_dir):
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)

    def path_of(self, rec: Recording) -> Path:
        return self.results / f"{rec.id}.json"

    def fingerprint(self, rec: Recording) -> dict[str, Any]:
        return {"format": FORMAT, "kind": rec.kind, "input": rec.stamp, "settings": self.settings}

    def read(self, rec: Recording) -> dict[str, Any] | None:
        """The stored result of ``rec`` (any fingerprint), or None when there is none or it cannot be read."""
        try:
            data = json.loads(self.path_of(rec).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("row"), dict) else None

    def complete(self, rec: Recording, *, retry_errors: bool | None = None) -> dict[str, Any] | None:
        """The stored result when it is complete for this run, else None (the recording is processed again).
        ``retry_errors`` (default: the store's) counts a failed recording's result as not complete."""
        data = self.read(rec)
        if data is None or data.get("fingerprint") != self.fingerprint(rec) or data["row"].get("path") != rec.rel:
            return None
        retry = self.retry_errors if retry_errors is None else retry_errors
        if retry and data["row"].get("error"):
            return None
        if self.frames_dir is not None and data["row"].get("frames"):
            name = data.get("frames_csv")
            if not name or not (self.frames_dir / name).is_file():
                return None
        return data

    def save(self, rec: Recording, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (``task.process_recording``'s answer) with its fingerprint, atomically; return it."""
        data = {"format": FORMAT, "path": rec.rel, "fingerprint": self.fingerprint(rec),
                "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **record}
        write_text_atomic(self.path_of(rec), strict_json(data), "result of " + rec.rel)
        return data


__all__ = ["Store", "settings_hash", "FORMAT", "RESULTS_DIR", "FRAMES_DIR"]
