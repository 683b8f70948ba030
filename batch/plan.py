"""Everything ``sonolens batch`` decides before a cluster starts, each mistake a one-line ``ConfigError``: ROOT and
OUT, the pipeline settings, the model (checked, and read for the workers), the recordings, their labels, and which
recordings already have a complete result (resume)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable
from sonolens.pipeline.stream import PipelineConfig

from .discover import Recording, discover
from .labels import FOLDERS, csv_labels, folder_labels, positive_class
from .store import FRAMES_DIR, RESULTS_DIR, Store, settings_hash
from .task import EnginePlugin, Job


@dataclass
class Model:
    path: Path
    data: bytes
    sha256: str
    class_names: tuple[str, ...]
    warnings: list[str]


@dataclass
class Plan:
    root: Path
    out: Path
    model: Model
    job: Job
    store: Store
    recordings: list[Recording]
    todo: list[Recording]
    labels: dict[str, str] | None
    scheduler: str | None
    workers: int
    quiet: bool = False
    labels_from: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def plugin(self) -> EnginePlugin:
        return EnginePlugin(self.model.data, self.model.sha256, threads=self.job.config.threads,
                            local=self.scheduler is None)


def load_model(model: str) -> Model:
    """The model file, checked here (a broken file fails before any cluster starts), with its bytes for the
    workers."""
    from sonolens.pipeline.engines import OnnxEngine, resolve_model_path

    path = resolve_model_path(model)
    meta = OnnxEngine(path, threads=1).meta
    data = path.read_bytes()
    warnings = [] if meta.trained else ["the model is untrained (random weights): its scores mean nothing"]
    if not meta.ood:
        warnings.append("the model file has no out-of-domain gate: every frame is scored")
    return Model(path, data, hashlib.sha256(data).hexdigest(), tuple(meta.class_names), warnings)


def pipeline_config(args: argparse.Namespace, root: Path) -> PipelineConfig:
    """The run configuration (defaults ← --config ← flags) made a batch's: max rate, blocking queue, no loop, no
    per-run outputs; ONNX Runtime threads 1 and no Grad-CAM unless the configuration asks for them."""
    from sonolens.pipeline.config import resolve
    from sonolens.pipeline.engines import NO_MODEL

    if args.model is not None and args.model.lower() in NO_MODEL:
        raise ConfigError("--model: 'batch' scores recordings with a model; 'off' is for 'sonolens run'")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    flags = {"model": args.model, "gate": args.gate, "threads": args.threads}
    resolved = resolve(args.config, flags, mode="run", source=str(root))
    cfg = resolved.pipeline
    given = [k for k, v in (("outputs.json", resolved.outputs["json"]), ("outputs.record", resolved.outputs["record"]),
                            ("outputs.csv", cfg.csv)) if v]
    if given:
        raise ConfigError(f"{args.config}: {', '.join(given)}: 'batch' writes its own outputs under --out "
                          "(--frames for per-frame CSVs)")
    if cfg.model is None:
        raise ConfigError(f"{args.config}: model.path is none: 'batch' scores recordings with a model")

    def default(key: str) -> bool:
        return resolved.origin.get(key, "default").startswith("default")

    threads = 1 if default("model.threads") else cfg.threads or 1
    cam = False if default("model.cam") else cfg.cam
    return dataclasses.replace(cfg, realtime=False, queue="block", loop=False, threads=threads, cam=cam, csv=None,
                               reconnect=0)


def check_paths(root_arg: str, out_arg: str) -> tuple[Path, Path]:
    """ROOT (an existing folder) and OUT (a folder, or one to create) as absolute paths; a one-line ``ConfigError``
    when OUT is ROOT, a file, or would put the batch's files over ROOT."""
    root, out = Path(os.path.abspath(root_arg)), Path(os.path.abspath(out_arg))
    if not root.exists():
        raise ConfigError(f"ROOT {root_arg} not found")
    if not root.is_dir():
        raise ConfigError(f"ROOT {root_arg} is not a folder (for one recording use 'sonolens run')")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out_arg} is a file: give a folder")
    real_root, real_out = root.resolve(), out.resolve()
    if real_out == real_root:
        raise ConfigError(f"--out {out_arg} is ROOT: the batch's files would mix with the recordings (choose another "
                          "folder, e.g. beside ROOT)")
    for sub in (RESULTS_DIR, FRAMES_DIR):
        if real_root == real_out / sub or real_root.is_relative_to(real_out / sub):
            raise ConfigError(f"--out {out_arg}: its '{sub}' folder would be ROOT or hold it: refusing to write over "
                              "the recordings")
    return root, out


def check_out_not_in_recording(out: Path, recordings: list[Recording]) -> None:
    """OUT may lie under ROOT (the walk leaves it out) but not inside a folder-of-images recording, whose slideshow
    would take the batch's plots as frames."""
    real_out = out.resolve()
    for rec in recordings:
        if rec.kind == "images" and real_out.is_relative_to(Path(rec.path).resolve()):
            raise ConfigError(f"--out {out} lies inside {rec.rel}, a folder of images this batch reads as one "
                              "recording: choose an --out outside it")


def labels_of(spec: str | None, root: Path, recordings: list[Recording], notes: list[str]) -> dict[str, str] | None:
    if spec is None:
        return None
    if spec == FOLDERS:
        return folder_labels(recordings)
    labels, unmatched = csv_labels(spec, root, recordings)
    if unmatched:
        notes.append(f"--labels: {unmatched} row(s) of {spec} name no recording of this batch")
    if not labels:
        raise ConfigError(f"--labels: no row of {spec} names a recording under {root} (paths relative to ROOT)")
    return labels


def workers_of(args: argparse.Namespace, todo: int) -> int:
    if args.scheduler is not None and args.workers is not None:
        raise ConfigError("--workers sizes the local cluster; with --scheduler the cluster has the workers it has")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    wanted = args.workers if args.workers is not None else (os.cpu_count() or 1)
    return max(1, min(wanted, todo))


def prepare(args: argparse.Namespace) -> Plan:
    """Check the command line and find the work; no cluster is started here."""
    root, out = check_paths(args.root, args.out)
    cfg = pipeline_config(args, root)
    found = discover(root, skip=out if out.exists() else None)
    if not found.recordings:
        raise ConfigError(f"no recordings under {args.root} (video files, DICOM files, folders of images)")
    check_out_not_in_recording(out, found.recordings)
    notes = [f"{found.ignored} other file(s) under ROOT are not recordings and were left out"] if found.ignored else []
    labels = labels_of(args.labels, root, found.recordings, notes)
    model = load_model(str(cfg.model))
    cfg = dataclasses.replace(cfg, model=str(model.path))
    store = Store(out, settings_hash(cfg, model.sha256), frames=args.frames, retry_errors=args.retry_errors)
    store.make_dirs()
    check_writable(out / "results.csv", "results table")
    todo = [r for r in found.recordings if store.complete(r) is None]
    job = Job(cfg, model.class_names, positive_class(model.class_names),
              str(store.frames_dir) if store.frames_dir else None)
    return Plan(root, out, model, job, store, found.recordings, todo, labels, args.scheduler,
                workers_of(args, len(todo)), quiet=args.quiet, labels_from=args.labels, notes=notes + model.warnings)


def say(plan: Plan, text: str, stream: Any = None) -> None:
    if not plan.quiet:
        print(f"sonolens: batch: {text}", file=stream or sys.stderr, flush=True)


__all__ = ["Plan", "Model", "prepare", "check_paths", "pipeline_config", "load_model", "say"]
