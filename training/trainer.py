"""The epoch loop every training mode shares, and its building blocks.

A mode (``train.SupervisedSteps`` for teacher / distill / baseline, ``feature_distill.FeatureSteps``) supplies
its ``EpochSteps``: one epoch of training, a validation pass, and the ``EpochRecord`` of the epoch (metrics row,
best so far, log line). ``fit`` does the rest: runs the epochs from a ``Progress`` (epoch 0, or after a resumed
``last.pt``), times them, records each in the ``RunFolder`` and logs it (rank 0 only), stops early when asked.

Building blocks: ``build_model`` (``models.create_model`` from the config), ``build_optimizer`` (AdamW, no weight
decay on biases and norms), ``build_scheduler`` (per-step warmup then cosine), ``TrainLoader`` (the training
``DataLoader`` of each epoch, reseeded from ``(seed, epoch)``; ``DistributedSampler`` under torchrun),
``Optimisation`` (one optimiser step with gradient clipping) and ``progress_bar``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .config import resolve_path
from .process import Dist, seed_everything
from .run_dir import EpochRecord, Progress, RunFolder, csv_value


# --------------------------------------------------------------------------------------------------------
# Model, optimiser, schedule
# --------------------------------------------------------------------------------------------------------
def build_model(cfg: dict[str, Any], class_names: Sequence[str]):
    from sonolens.models import create_model

    m = cfg["model"]
    kwargs = dict(m["kwargs"] or {})
    kwargs["class_names"] = tuple(class_names)
    kwargs["input_size"] = tuple(int(v) for v in m["input_size"])
    if m["pretrained"]:
        kwargs["pretrained"] = True
    if m["pretrained_file"]:
        kwargs["pretrained_file"] = str(resolve_path(m["pretrained_file"]))
    try:
        return create_model(m["name"], **kwargs)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    except TypeError as exc:
        raise ConfigError(f"model {m['name']}: {exc}") from exc


def build_optimizer(model, cfg: dict[str, Any]):
    import torch

    o = cfg["optim"]
    if str(o["name"]).lower() != "adamw":
        raise ConfigError(f"optim.name {o['name']!r} is not supported (adamw)")
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # No weight decay on biases, norm parameters, position embeddings and tokens (the usual ViT/CNN recipe).
        (no_decay if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) else decay).append(p)
    groups = [{"params": decay, "weight_decay": float(o["weight_decay"])},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(o["lr"]), betas=tuple(float(b) for b in o["betas"]))


def build_scheduler(optimizer, cfg: dict[str, Any], steps_per_epoch: int):
    """Per-step linear warmup then cosine decay to ``min_lr_ratio`` × lr (or constant)."""
    import torch

    s = cfg["sched"]
    total = max(1, int(cfg["train"]["epochs"]) * steps_per_epoch)
    warm = int(round(float(s["warmup_epochs"]) * steps_per_epoch))
    floor = float(s["min_lr_ratio"])
    name = str(s["name"]).lower()
    if name not in ("cosine", "constant"):
        raise ConfigError(f"sched.name {s['name']!r} is not supported (cosine, constant)")

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if name == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class Optimisation:
    """The optimizer, its per-step schedule, the module whose gradient norm is clipped and the clip
    (``train.grad_clip``; 0 or ``None``: off)."""

    optimizer: Any
    scheduler: Any
    module: Any
    grad_clip: float | None

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, loss) -> None:
        """Back-propagate ``loss`` from cleared gradients, clip, step the optimizer and the schedule."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), float(self.grad_clip))
        self.optimizer.step()
        self.scheduler.step()


def optimisation(module, cfg: dict[str, Any], steps_per_epoch: int) -> Optimisation:
    """AdamW over ``module``'s parameters with the config's schedule and gradient clip."""
    optimizer = build_optimizer(module, cfg)
    return Optimisation(optimizer, build_scheduler(optimizer, cfg, steps_per_epoch), module,
                        cfg["train"]["grad_clip"])


# --------------------------------------------------------------------------------------------------------
# Training batches
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainLoader:
    """The training ``DataLoader`` of each epoch: ``batch`` per process, shuffled from ``(seed, epoch)``
    (``DistributedSampler`` under torchrun, else a ``RandomSampler`` on ``generator``)."""

    dataset: Any
    batch: int
    drop_last: bool
    workers: int
    seed: int
    world: int
    pin_memory: bool
    generator: Any
    sampler: Any = None

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.dataset)
        return (n // self.world) // self.batch if self.drop_last else math.ceil(n / self.world / self.batch)

    def epoch(self, epoch: int):
        """The loader of ``epoch``; reseeds python/numpy/torch (``seed_everything``) first."""
        from torch.utils.data import DataLoader, RandomSampler

        self.generator.manual_seed(seed_everything(self.seed, epoch))
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        return DataLoader(self.dataset, batch_size=self.batch,
                          sampler=self.sampler or RandomSampler(self.dataset, generator=self.generator),
                          drop_last=self.drop_last, num_workers=self.workers, generator=self.generator,
                          pin_memory=self.pin_memory, persistent_workers=False)


def _num_workers(cfg: dict[str, Any], d: Dist) -> int:
    workers = cfg["data"]["num_workers"]
    if workers is None:
        cores = (os.cpu_count() or 1) // d.local_world
        workers = 0 if cores <= 4 else min(8, cores - 1)
    return workers


def train_loader(dataset, cfg: dict[str, Any], seed: int, device, d: Dist) -> TrainLoader:
    """``train.batch_size`` is the global batch, split across the ``d.world`` processes (``ConfigError`` when it
    does not divide); the last short batch is dropped when there is more than one batch of data (no 1-sample
    batch for BatchNorm)."""
    import torch
    from torch.utils.data import DistributedSampler

    world_batch = int(cfg["train"]["batch_size"])
    if world_batch % d.world:
        raise ConfigError(f"train.batch_size {world_batch} is not divisible by {d.world} processes")
    batch = world_batch // d.world
    drop_last = len(dataset) // d.world > batch
    sampler: Any = (DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed,
                                       drop_last=drop_last) if d.enabled else None)
    return TrainLoader(dataset, batch, drop_last, _num_workers(cfg, d), seed, d.world,
                       pin_memory=device.type == "cuda", generator=torch.Generator(), sampler=sampler)


def progress_bar(loader, cfg: dict[str, Any], epoch: int, show: bool):
    """A tqdm bar over ``loader`` for ``epoch`` on stderr (disabled unless ``show``)."""
    from tqdm.auto import tqdm

    return tqdm(loader, desc=f"{cfg['name']} {epoch + 1}/{int(cfg['train']['epochs'])}", leave=False,
                disable=not show, file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------------------
# The epoch loop
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    train_s: float
    val_s: float


class EpochSteps(Protocol):
    """A training mode's part of each epoch; ``fit`` calls them in this order."""

    def train_epoch(self, epoch: int) -> Any:
        """Train one epoch; returns its running statistics, for ``record``."""
        ...

    def validate(self) -> Any:
        """The validation pass; returns its metrics, for ``record``."""
        ...

    def record(self, epoch: int, train: Any, val: Any, timing: Timing, best: dict[str, Any]) -> EpochRecord:
        """The epoch as the run folder keeps it; ``best`` is the best so far before this epoch."""
        ...


@dataclass(frozen=True)
class FitPlan:
    """How many epochs, the early-stop patience (epochs without a better validation; ``None``: off) and
    whether this process writes and logs (rank 0)."""

    name: str
    epochs: int
    patience: float | None = None
    main: bool = True


@dataclass(frozen=True)
class Fitted:
    best: dict[str, Any]
    epochs_run: int
    seconds_per_epoch: float


def _one_epoch(steps: EpochSteps, epoch: int, best: dict[str, Any]) -> tuple[EpochRecord, float]:
    t0 = time.perf_counter()
    train = steps.train_epoch(epoch)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    val = steps.validate()
    timing = Timing(train_s, time.perf_counter() - t1)
    return steps.record(epoch, train, val, timing, best), timing.train_s + timing.val_s


def _stops_early(plan: FitPlan, epoch: int, best: dict[str, Any]) -> bool:
    if not (plan.patience and epoch - int(best["epoch"]) >= int(plan.patience)):
        return False
    if plan.main:
        print(f"[{plan.name}] early stop: no better validation for {plan.patience} epochs", file=sys.stderr)
    return True


def fit(steps: EpochSteps, folder: RunFolder, progress: Progress, plan: FitPlan) -> Fitted:
    """Train epochs ``progress.start_epoch`` … ``plan.epochs - 1``; each epoch's checkpoints, ``metrics.csv`` row
    and log line go out as soon as it ends (rank 0), so a crash loses at most the epoch under way."""
    best, history, epoch_times = progress.best, list(progress.history), []
    epoch = progress.start_epoch - 1
    for epoch in range(progress.start_epoch, plan.epochs):
        rec, seconds = _one_epoch(steps, epoch, best)
        epoch_times.append(seconds)
        best = rec.best
        history.append({k: csv_value(v) for k, v in rec.row.items()})
        if plan.main:
            folder.record(rec, history)
            print(rec.log, file=sys.stderr)
        if _stops_early(plan, epoch, best):
            break
    return Fitted(best, epoch + 1, float(np.mean(epoch_times)) if epoch_times else 0.0)
