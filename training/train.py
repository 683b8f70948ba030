"""``sonolens train teacher|distill|baseline|feature --config FILE [key=value ...]``: one loop for all modes.

The modes differ by config only:

* ``teacher``  — supervised training of a teacher (``hybrid_offline``, ``hybrid_paper``…), cross-entropy;
* ``baseline`` — the student with the same data, budget and recipe as ``distill`` but no teacher (cross-entropy);
* ``feature``  — stage 1 of the cross-hospital recipe (``training.feature_distill``): the student's pooled features
  matched to a frozen ImageNet EfficientNet-Lite's, no labels;
* ``distill``  — the student with ``KDLoss``: a frozen teacher (eval mode, ``torch.no_grad``) sees the SAME
  augmented batch as the student (``kd.teacher_view: same``); the augmentation produces un-normalised [0, 1]
  images and each model gets its own normalisation (and input size), so teacher and student need not share
  mean/std. ``kd.teacher_view: clean`` instead computes the teacher's logits once, on every training image as the
  runtime would feed it (``runtime_resized``, no augmentation), and each step's KD term reads those per-image
  soft targets (``SupervisedNets.clean_targets``): the loop then costs what ``baseline`` costs, at the price of targets
  that ignore the view the student sees (Beyer et al. 2022, "Knowledge distillation: a good teacher is patient
  and consistent", find consistent views better — a choice for a 2-core CPU, not for a GPU).

Where things are: this module holds the CLI (``cli_main``), ``run`` (which hands ``feature`` to
``feature_distill.run_feature``) and the supervised modes' steps (``SupervisedSteps``: the cross-entropy/KD
step, validation by ``evaluate_cached``). What every mode shares is below it, and never imports it:
``training.inputs`` (samples, cached datasets, the runtime's tensors), ``training.process`` (device, process
group, seeding, AMP), ``training.trainer`` (model, AdamW, schedule, the training loader and the epoch loop
``fit``) and ``training.run_dir`` (the run folder: resume, checkpoints, ``metrics.csv``, ``summary.json``,
``env.json``, ``config.yaml``). The names this module held before the split stay importable from it.

Scaling: the same config runs on one CPU, one GPU or several processes under ``torchrun`` (PyTorch DDP:
the process group is initialised when ``WORLD_SIZE`` is set, gloo on CPU / nccl on GPU, ``DistributedSampler``,
``train.batch_size`` is the global batch). Validation runs on every rank over the whole (small) validation set,
so every rank takes the same best/early-stop decisions; only rank 0 writes.

Reproducibility: the run directory gets the resolved config, seed, package versions and git commit; every epoch
reseeds torch/numpy/random from ``(seed, epoch)``, so a run resumed from ``last.pt`` replays the same epochs as
an uninterrupted one. Outputs: ``metrics.csv`` (one row per epoch), ``best.pt`` (best validation accuracy, ties
→ lower validation loss) and ``last.pt`` in ``models.checkpoint``'s format, ``summary.json``, and
TensorBoard events when ``torch.utils.tensorboard`` imports.

CPU time: decoded images are cached in memory (train: grayscale uint8, shrunk to at most ``cache_max_side`` ×
the input size; validation: already resized by the runtime's ``pipeline.preprocess.resize_gray``, so an epoch's
validation is one pass of the network over a ready tensor, normalised on the device through the runtime's own
``normalisation_lut`` — bit for bit the tensors ``sonolens run`` and ``sonolens eval`` would feed).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .config import MODES, dump_config, load_config, output_dir, resolve_path
from .feature_distill import run_feature
from .inputs import (
    CachedImageDataset,
    IndexedDataset,
    infer_class_names,
    lut_tensor,
    maybe_cached,
    model_input,
    normalise,
    read_samples,
    runtime_resized,
    validation_input,
)
from .process import Dist, autocast_dtype, seed_everything, setup_process
from .run_dir import (
    EpochRecord,
    Progress,
    RunFolder,
    RunInputs,
    RunResult,
    TrainState,
    csv_value,
    data_provenance,
    environment,
    open_run_dir,
    open_tensorboard,
    prepare_run,
    read_resume,
    run_provenance,
    write_history,
    write_summary,
)
from .trainer import (
    FitPlan,
    Optimisation,
    Timing,
    TrainLoader,
    build_model,
    build_optimizer,
    build_scheduler,
    fit,
    optimisation,
    progress_bar,
    train_loader,
)

__all__ = [
    # this module: the CLI, the run, the supervised modes
    "METRIC_FIELDS", "EpochStats", "SupervisedNets", "SupervisedSteps", "ValidationSet", "build_supervised_nets",
    "cli_main", "evaluate_cached", "load_teacher", "predict_cached", "run",
    # defined in the shared modules, importable from here as before the split
    "CachedImageDataset", "Dist", "IndexedDataset", "RunInputs", "RunResult", "autocast_dtype", "build_model",
    "build_optimizer", "build_scheduler", "csv_value", "data_provenance", "environment", "infer_class_names",
    "lut_tensor", "maybe_cached", "model_input", "normalise", "output_dir", "prepare_run", "read_samples",
    "run_feature", "runtime_resized", "seed_everything", "setup_process", "validation_input",
]

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_hard", "train_kd", "train_acc", "val_loss", "val_acc",
                 "val_macro_f1", "val_auc_malignant", "train_s", "val_s", "best"]


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    write_history(path, rows, METRIC_FIELDS)


# --------------------------------------------------------------------------------------------------------
# Validation on the runtime's tensors
# --------------------------------------------------------------------------------------------------------
def predict_cached(model, images_u8, spec, device, batch_size: int, amp_dtype=None):
    """float32 CPU logits [N, C] of ``model`` (put in eval mode) on uint8 images [N, 1, H, W] already resized to
    ``spec.input_size`` (``runtime_resized``), normalised as the runtime does (``validation_input``);
    ``ValueError`` on a size mismatch."""
    import torch

    if tuple(images_u8.shape[-2:]) != tuple(spec.input_size):
        raise ValueError(f"validation images are {tuple(images_u8.shape[-2:])}, the model expects "
                         f"{tuple(spec.input_size)}: resize them with runtime_resized")
    model.eval()
    lut = lut_tensor(spec, device)
    logits = []
    with torch.no_grad():
        for i in range(0, len(images_u8), batch_size):
            x = validation_input(images_u8[i:i + batch_size].to(device, non_blocking=True), lut)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits.append(model(x).float().cpu())
    return torch.cat(logits)


def evaluate_cached(model, images_u8, targets, spec, device, batch_size: int,
                    class_names: Sequence[str], amp_dtype=None) -> dict[str, Any]:
    """Loss/accuracy/macro-F1/AUC of ``model`` on uint8 images [N, 1, H, W] (``predict_cached``)."""
    import torch
    import torch.nn.functional as F

    from .evaluate import evaluate_predictions

    logits_t = predict_cached(model, images_u8, spec, device, batch_size, amp_dtype)
    y = torch.as_tensor(targets)
    loss = float(F.cross_entropy(logits_t, y))
    probs = torch.softmax(logits_t, dim=1).numpy()
    m = evaluate_predictions(y.numpy(), probs, class_names, n_boot=0)
    m["loss"] = loss
    return m


@dataclass(frozen=True)
class ValidationSet:
    """The validation images resized once by the runtime to the student's input size (uint8 [N, 1, H, W]) and
    their class indices."""

    images: Any
    targets: list[int]


def _supervised_data(cfg: dict[str, Any], ri: RunInputs) -> tuple[IndexedDataset, ValidationSet]:
    """The augmented training images (un-normalised [0, 1]: each model normalises with its own mean/std on the
    device), indexed for ``kd.teacher_view: clean``, and the validation set."""
    from .augment import train_transform
    from .data import ImageDataset

    transform = train_transform(ri.input_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), cfg=ri.aug)
    train_ds = IndexedDataset(maybe_cached(cfg, ImageDataset(ri.train_samples, ri.class_names, transform),
                                           ri.input_size))
    targets = ImageDataset(ri.val_samples, ri.class_names).targets
    return train_ds, ValidationSet(runtime_resized(ri.val_samples, ri.input_size), targets)


# --------------------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------------------
def load_teacher(cfg: dict[str, Any], class_names: Sequence[str], device):
    from sonolens.models.checkpoint import load_checkpoint

    path = cfg["teacher"]["checkpoint"]
    if not path:
        raise ConfigError("distill needs teacher.checkpoint=PATH (a teacher's best.pt from 'sonolens train teacher')")
    teacher = load_checkpoint(resolve_path(path))
    t_classes = tuple(teacher.sonolens_spec.class_names)
    if t_classes != tuple(class_names):
        raise ConfigError(f"teacher classes {t_classes} differ from the student's {tuple(class_names)}")
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


@dataclass(frozen=True)
class SupervisedNets:
    """What a supervised run trains: ``model`` (DDP-wrapped under torchrun) around ``core`` (what is saved,
    validated and clipped; ``spec`` its ``sonolens_spec``), the frozen ``teacher`` (distill, else ``None``), the
    teacher's logits on the clean training images (``kd.teacher_view: clean``, [N_train, C] on the CPU, else
    ``None``) and the loss (``KDLoss``; no KD term outside distill)."""

    model: Any
    core: Any
    spec: Any
    teacher: Any
    clean_targets: Any
    loss_fn: Any


def _teacher_and_targets(mode: str, cfg: dict[str, Any], ri: RunInputs, device) -> tuple[Any, Any]:
    if mode != "distill":
        return None, None
    teacher = load_teacher(cfg, ri.class_names, device)
    if cfg["kd"]["teacher_view"] != "clean":
        return teacher, None
    t_spec = teacher.sonolens_spec
    return teacher, predict_cached(teacher, runtime_resized(ri.train_samples, t_spec.input_size), t_spec, device,
                                   int(cfg["train"]["batch_size"]), autocast_dtype(cfg, device))


def build_supervised_nets(mode: str, cfg: dict[str, Any], ri: RunInputs, device, d: Dist) -> SupervisedNets:
    """The student (seeded init), then the teacher (distill), on ``device``; SyncBatchNorm (``train.sync_bn``) and
    DDP under torchrun."""
    import torch

    from .losses import KDLoss

    seed_everything(ri.seed)
    model = build_model(cfg, ri.class_names)
    spec = model.sonolens_spec
    teacher, clean_targets = _teacher_and_targets(mode, cfg, ri, device)
    model.to(device)
    if cfg["train"]["sync_bn"] and d.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    core = model
    if d.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    kd, smoothing = cfg["kd"], cfg["train"]["label_smoothing"]
    loss_fn = (KDLoss(kd["w_hard"], kd["w_kd"], kd["temperature"], smoothing)
               if mode == "distill" else KDLoss(1.0, 0.0, 1.0, smoothing))
    return SupervisedNets(model, core, spec, teacher, clean_targets, loss_fn)


# --------------------------------------------------------------------------------------------------------
# One epoch
# --------------------------------------------------------------------------------------------------------
@dataclass
class EpochStats:
    loss: float = 0.0
    hard: float = 0.0
    kd: float = 0.0
    correct: int = 0
    n: int = 0

    def as_tensor(self, device):
        import torch

        return torch.tensor([self.loss, self.hard, self.kd, float(self.correct), float(self.n)],
                            dtype=torch.float64, device=device)

    def add(self, parts, logits, y) -> None:
        """One batch: the loss parts (``KDLoss``), the student's logits and the labels."""
        b = int(y.shape[0])
        self.loss += float(parts.total.detach()) * b
        self.hard += float(parts.hard.detach()) * b
        self.kd += float(parts.kd.detach()) * b
        self.correct += int((logits.argmax(1) == y).sum())
        self.n += b

    def all_reduced(self, device) -> EpochStats:
        """The sums over every process (DDP)."""
        import torch.distributed as dist

        t = self.as_tensor(device)
        dist.all_reduce(t)
        return EpochStats(float(t[0]), float(t[1]), float(t[2]), int(t[3]), int(t[4]))


@dataclass(frozen=True)
class SupervisedSteps:
    """``trainer.fit``'s steps for teacher / distill / baseline: cross-entropy (+ KD) on the augmented batch,
    validation on the runtime's tensors; ``best.pt`` = the best validation accuracy, ties → lower loss."""

    cfg: dict[str, Any]
    nets: SupervisedNets
    loader: TrainLoader
    opt: Optimisation
    val: ValidationSet
    class_names: tuple[str, ...]
    device: Any
    d: Dist
    amp_dtype: Any

    def _teacher_logits(self, x01, idx):
        import torch

        if self.nets.clean_targets is not None:
            return self.nets.clean_targets[idx].to(self.device, non_blocking=True)
        if self.nets.teacher is None:
            return None
        with torch.no_grad():
            return self.nets.teacher(model_input(x01, self.nets.teacher.sonolens_spec)).float()

    def _step(self, x01, y, idx, stats: EpochStats) -> None:
        import torch

        x01 = x01.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            t_logits = self._teacher_logits(x01, idx)
            s_logits = self.nets.model(model_input(x01, self.nets.spec)).float()
        parts = self.nets.loss_fn(s_logits, y, t_logits)
        self.opt.step(parts.total)
        stats.add(parts, s_logits, y)

    def train_epoch(self, epoch: int) -> EpochStats:
        loader = self.loader.epoch(epoch)
        self.nets.model.train()
        if self.nets.teacher is not None:
            self.nets.teacher.eval()
        stats = EpochStats()
        bar = progress_bar(loader, self.cfg, epoch, bool(self.cfg["train"]["progress"]) and self.d.main)
        for x01, y, idx in bar:
            self._step(x01, y, idx, stats)
            bar.set_postfix(loss=f"{stats.loss / stats.n:.3f}", acc=f"{stats.correct / stats.n:.3f}")
        bar.close()
        return stats.all_reduced(self.device) if self.d.enabled else stats

    def validate(self) -> dict[str, Any]:
        return evaluate_cached(self.nets.core, self.val.images, self.val.targets, self.nets.spec, self.device,
                               int(self.cfg["train"]["batch_size"]), self.class_names, self.amp_dtype)

    def record(self, epoch: int, train: EpochStats, val: dict[str, Any], timing: Timing,
               best: dict[str, Any]) -> EpochRecord:
        vm = val
        improved = (vm["accuracy"] > best["val_acc"]
                    or (vm["accuracy"] == best["val_acc"] and vm["loss"] < best["val_loss"]))
        if improved:
            best = {"epoch": epoch, "val_acc": vm["accuracy"], "val_loss": vm["loss"],
                    "val_macro_f1": vm["macro_f1"], "val_auc_malignant": vm.get("auc_malignant")}
        n = max(1, train.n)
        row = {"epoch": epoch, "lr": self.opt.lr, "train_loss": train.loss / n, "train_hard": train.hard / n,
               "train_kd": train.kd / n, "train_acc": train.correct / n, "val_loss": vm["loss"],
               "val_acc": vm["accuracy"], "val_macro_f1": vm["macro_f1"], "val_auc_malignant": vm.get("auc_malignant"),
               "train_s": timing.train_s, "val_s": timing.val_s, "best": int(improved)}
        log = (f"[{self.cfg['name']}] epoch {epoch + 1}/{int(self.cfg['train']['epochs'])} loss "
               f"{row['train_loss']:.4f} acc {row['train_acc']:.3f} | val loss {vm['loss']:.4f} acc "
               f"{vm['accuracy']:.3f} F1 {vm['macro_f1']:.3f}{' *' if improved else ''} | "
               f"{timing.train_s + timing.val_s:.1f}s")
        return EpochRecord(epoch, row, improved, best,
                           {"val_accuracy": vm["accuracy"], "val_macro_f1": vm["macro_f1"]}, log)


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------
def _checked_mode(mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if cfg.get("mode") not in (None, mode):
        raise ConfigError(f"this config is for 'sonolens train {cfg['mode']}', not '{mode}'")
    return {**cfg, "mode": mode}


def _check_supervised(mode: str, cfg: dict[str, Any]) -> None:
    """Config errors found before any data is read."""
    if mode == "distill":
        tp = resolve_path(cfg["teacher"]["checkpoint"]) if cfg["teacher"]["checkpoint"] else None
        if tp is None or not Path(tp).is_file():
            raise ConfigError(f"distill needs teacher.checkpoint=PATH to a teacher's best.pt "
                              f"('sonolens train teacher' first); got {cfg['teacher']['checkpoint']!r}")
    if cfg["kd"]["teacher_view"] not in ("same", "clean"):
        raise ConfigError(f"kd.teacher_view must be 'same' or 'clean', not {cfg['kd']['teacher_view']!r}")


def run(mode: str, cfg: dict[str, Any], resume: str | Path | None = None) -> RunResult:
    """Train according to ``cfg`` (see ``training.config.DEFAULTS``); returns where the results are."""
    cfg = _checked_mode(mode, cfg)
    if mode == "feature":  # feature distillation from a frozen ImageNet EfficientNet-Lite: its own steps
        return run_feature(cfg, resume=resume)
    _check_supervised(mode, cfg)
    return _run_supervised(mode, cfg, resume)


def _provenance(mode: str, cfg: dict[str, Any], ri: RunInputs, env: dict[str, Any],
                nets: SupervisedNets) -> dict[str, Any]:
    provenance = run_provenance(cfg, mode, ri, env)
    if nets.teacher is not None:
        provenance["teacher"] = {"checkpoint": str(cfg["teacher"]["checkpoint"]),
                                 "arch": nets.teacher.sonolens_spec.arch,
                                 "kd": {k: (v if isinstance(v, str) else float(v)) for k, v in cfg["kd"].items()}}
    return provenance


def _progress(state: TrainState, resume: str | Path | None, ri: RunInputs) -> Progress:
    if not resume:
        return Progress(0, {"epoch": -1, "val_acc": -1.0, "val_loss": math.inf})
    return state.restore(read_resume(resume, "optimizer", "has no optimizer state; resume from a run's last.pt"),
                         ri.csv_path)


def _report_teacher(steps: SupervisedSteps, ri: RunInputs) -> None:
    """The frozen teacher's validation accuracy, logged once before training."""
    teacher = steps.nets.teacher
    t_spec = teacher.sonolens_spec
    t_images = (steps.val.images if tuple(t_spec.input_size) == tuple(ri.input_size)
                else runtime_resized(ri.val_samples, t_spec.input_size))
    tm = evaluate_cached(teacher, t_images, steps.val.targets, t_spec, steps.device,
                         int(steps.cfg["train"]["batch_size"]), ri.class_names, steps.amp_dtype)
    del t_images
    print(f"[{steps.cfg['name']}] teacher {t_spec.arch}: val acc {tm['accuracy']:.3f} "
          f"macro-F1 {tm['macro_f1']:.3f}", file=sys.stderr)


def _open_run(mode: str, steps: SupervisedSteps, ri: RunInputs, env: dict[str, Any],
              resume: str | Path | None) -> Any:
    """Rank 0: the run folder's ``config.yaml`` and ``env.json``, the TensorBoard writer (or ``None``) and the
    teacher's score."""
    cfg = steps.cfg
    open_run_dir(cfg, ri, env, mode, resume, {"batch_per_process": steps.loader.batch,
                                              "num_workers": steps.loader.workers, "amp": str(steps.amp_dtype)})
    writer = open_tensorboard(ri.out) if cfg["train"]["tensorboard"] else None
    if steps.nets.teacher is not None:
        _report_teacher(steps, ri)
    return writer


def _run_supervised(mode: str, cfg: dict[str, Any], resume: str | Path | None) -> RunResult:
    import torch.distributed as dist

    owns_group = not (dist.is_available() and dist.is_initialized())
    device, d = setup_process(cfg)
    owns_group = owns_group and d.enabled
    ri = prepare_run(cfg)
    train_ds, val = _supervised_data(cfg, ri)
    loader = train_loader(train_ds, cfg, ri.seed, device, d)
    nets = build_supervised_nets(mode, cfg, ri, device, d)
    opt = optimisation(nets.core, cfg, loader.steps_per_epoch)
    steps = SupervisedSteps(cfg, nets, loader, opt, val, ri.class_names, device, d, autocast_dtype(cfg, device))
    env = environment(device, d)
    state = TrainState(nets.core, opt.optimizer, opt.scheduler, cfg)
    progress = _progress(state, resume, ri)
    writer = _open_run(mode, steps, ri, env, resume) if d.main else None
    fitted = fit(steps, RunFolder(ri.out, state, _provenance(mode, cfg, ri, env, nets), _write_history, writer),
                 progress, FitPlan(cfg["name"], int(cfg["train"]["epochs"]), cfg["train"]["early_stop_patience"],
                                   d.main))
    result = RunResult(ri.out, ri.best_path, ri.last_path, fitted.best, fitted.epochs_run, fitted.seconds_per_epoch)
    if d.main:
        write_summary(cfg, mode, result, device, {"world_size": d.world, "best_checkpoint": str(ri.best_path)})
        if writer is not None:
            writer.close()
    if d.enabled:
        dist.barrier()
        if owns_group:
            dist.destroy_process_group()
    return result


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens train",
        description="Train a teacher, a distilled student, the no-teacher baseline or the feature-distillation stage "
                    "(feature) from a YAML config. "
                    "Extra key=value arguments override the config (dotted keys, YAML values), e.g. "
                    "optim.lr=3e-4 train.epochs=5 data.split_csv=training/splits/busi_paper.csv. "
                    "Several processes: torchrun --nproc_per_node=N -m sonolens train ...",
    )
    p.add_argument("mode", choices=MODES)
    p.add_argument("--config", required=True,
                   help="YAML file, or a bundled config name (e.g. busi_distill_offline)")
    p.add_argument("--pretrained-file", default=None,
                   help="local pretrained weights for the model's backbone(s) (= model.pretrained_file=PATH)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides; resume=PATH continues from a run's last.pt")
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)  # options and key=value overrides in any order
    overrides = list(args.overrides)
    resume = None
    rest = []
    for o in overrides:
        if o.startswith("resume="):
            resume = o.split("=", 1)[1] or None
        else:
            rest.append(o)
    if args.pretrained_file:
        rest.append(f"model.pretrained_file={args.pretrained_file}")
    cfg = load_config(args.config, rest)
    if args.print_config:
        print(dump_config({**cfg, "mode": args.mode}), end="")
        return 0
    result = run(args.mode, cfg, resume=resume)
    score = (f"val acc {result.best['val_acc']:.3f}" if "val_acc" in result.best
             else f"val feature loss {result.best.get('val_loss', float('nan')):.4f}")  # mode feature
    print(f"best checkpoint: {result.best_path} (epoch {int(result.best['epoch']) + 1}, "
          f"{score}); {result.seconds_per_epoch:.1f} s/epoch; run dir {result.out_dir}")
    return 0
