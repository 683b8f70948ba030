"""What a Dask worker does: load the model once (``EnginePlugin``), then one recording per task
(``process_recording``) through the pipeline of ``sonolens run --max-rate`` — ``pipeline.stream.build`` and
``run_to_end`` with the worker's engine, a blocking queue (no frame dropped) and no pacing.

The plugin carries the model file's bytes, so every worker runs exactly the file the client checked (its SHA-256 is
part of each result's fingerprint), whichever machine it is on; it writes them to the worker's local folder and opens
one ONNX Runtime session there (``threads`` intra-op threads: 1 by default, one single-threaded worker per core).
A task never raises for a bad recording: any error becomes the row's one-line ``error``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from sonolens.pipeline.errors import SonolensError, SourceError, reason
from sonolens.pipeline.stream import PipelineConfig, build, run_to_end

from .discover import Recording

PLUGIN_NAME = "sonolens-engine"
STATES = ("ok", "out_of_domain", "no_image")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Settings every task shares: the pipeline configuration (its ``source`` replaced per recording), the folder
    for per-frame CSVs (None: none written), the model's class names and positive class."""

    config: PipelineConfig
    class_names: tuple[str, ...]
    positive: str
    frames_dir: str | None = None


class EnginePlugin(WorkerPlugin):
    """A Dask worker plugin: the ONNX model, loaded once when the worker starts (or joins the cluster later).
    ``process_recording`` outside a worker with the plugin (in-process) loads the engine itself."""

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, model: bytes, sha256: str, threads: int = 1, *, local: bool = False) -> None:
        self.model, self.sha256, self.threads, self.local = model, sha256, threads, local
        self.engine: Any = None

    def setup(self, worker: Any = None) -> None:
        tune_worker(self.local)
        folder = Path(getattr(worker, "local_directory", None) or os.environ.get("TMPDIR", "/tmp"))
        path = folder / f"sonolens-model-{self.sha256[:16]}.onnx"
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(self.model)
            os.replace(tmp, path)
        from sonolens.pipeline.engines import OnnxEngine

        self.engine = OnnxEngine(path, threads=self.threads)

    def teardown(self, worker: Any = None) -> None:
        self.engine = None


def tune_worker(local: bool = False) -> None:
    """Process settings for a worker that runs one recording at a time on one core: OpenCV single-threaded, glibc
    keeping freed frame buffers mapped (``pipeline.malloc.keep_frame_buffers_mapped``: ~2× decode
    throughput), sonolens's own warnings kept out of the client's console (each recording's row carries its error);
    ``local`` (a worker of the embedded cluster, restarted after a crash): SIGINT ignored, as for the first ones."""
    import cv2

    if local:
        try:  # Ctrl-C is for the client, which closes the cluster
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread of the worker process
            pass
    cv2.setNumThreads(1)
    logging.getLogger("sonolens").setLevel(logging.ERROR)
    from sonolens.pipeline.malloc import keep_frame_buffers_mapped

    keep_frame_buffers_mapped()


def _worker_engine(job: Job) -> tuple[Any, str]:
    """The engine of this worker's plugin and the worker's address ("local" outside Dask)."""
    try:
        worker = get_worker()
    except ValueError:  # not on a Dask worker
        worker = None
    plugin = worker.plugins.get(PLUGIN_NAME) if worker is not None else None
    engine = getattr(plugin, "engine", None)
    if worker is not None and engine is not None:
        return engine, str(worker.address)
    from sonolens.pipeline.engines import load_engine

    return load_engine(str(job.config.model), threads=job.config.threads or 1), "local"


def process_recording(rec: Recording, job: Job) -> dict[str, Any]:
    """One recording through the pipeline: the result record ``{"row": …, "frames_csv": …, "worker": …}``."""
    t0 = time.perf_counter()
    csv_part = csv_final = None
    if job.frames_dir:
        csv_final = Path(job.frames_dir) / f"{rec.id}.csv"
        csv_part = csv_final.with_name(f".{csv_final.name}.part")
    cfg = dataclasses.replace(job.config, source=rec.path, csv=str(csv_part) if csv_part else None)
    report: dict[str, Any] | None = None
    worker = "?"
    try:
        engine, worker = _worker_engine(job)
        pipe = build(cfg, engine=engine)
        report = run_to_end(pipe)
        error = pipe.error or (SourceError("no frame was read") if report["frames_in"] == 0 else None)
        error_text = reason(error, 300) if error else None
    except SonolensError as exc:
        error_text = reason(exc, 300)
    except Exception as exc:  # a bug, or a library failing in a way sonolens does not know: still one row
        log.debug("recording %s failed", rec.path, exc_info=True)
        error_text = f"internal error: {type(exc).__name__}: {reason(exc, 240)}"
    frames_csv = _keep_csv(csv_part, csv_final, report)
    row = summarise(rec, report, job, error_text, time.perf_counter() - t0)
    return {"row": row, "frames_csv": frames_csv, "worker": worker}


def _keep_csv(part: Path | None, final: Path | None, report: dict | None) -> str | None:
    """Rename the finished per-frame CSV into place (the name of a CSV exists only for a finished recording)."""
    if part is None or final is None or not part.exists():
        return None
    if not report or not report.get("frames_processed"):
        part.unlink(missing_ok=True)
        return None
    os.replace(part, final)
    return final.name


def summarise(rec: Recording, report: dict | None, job: Job, error: str | None, wall_s: float) -> dict[str, Any]:
    """A table row from ``Pipeline.report()``: frames, rates, share of frames per state, the mean probability of
    each class over the frames the gate let through (state ok), the top class and the score (the positive class's
    mean probability); None where there is nothing to average."""
    report = report or {}
    pred = report.get("predictions") or {}
    states = pred.get("frames_by_state") or {}
    n = int(report.get("frames_processed") or 0)
    means = pred.get("mean_prob") or {}
    known: dict[str, float] = {c: float(means[c]) for c in job.class_names if means.get(c) is not None}
    row: dict[str, Any] = {
        "path": rec.rel, "kind": rec.kind, "folder": rec.folder, "frames": n,
        "frames_dropped": int(report.get("frames_dropped") or 0),
        "source_fps": (report.get("source") or {}).get("fps"), "fps": report.get("fps_processed") if n else None,
        "wall_s": round(wall_s, 3),
    }
    row.update({f"share_{s}": (states.get(s, 0) / n if n else None) for s in STATES})
    row.update({f"mean_p_{c}": means.get(c) for c in job.class_names})
    row["top_class"] = max(known, key=lambda c: known[c]) if known else None
    row["score"] = means.get(job.positive)
    row["error"] = error
    return row


__all__ = ["Job", "EnginePlugin", "PLUGIN_NAME", "process_recording", "summarise", "tune_worker"]
