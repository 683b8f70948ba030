"""The training process: device, threads, the DDP process group (under ``torchrun``), seeding and mixed precision.

``setup_process`` → ``(device, Dist)``: the process group is initialised when ``WORLD_SIZE`` is set (gloo on CPU,
nccl on GPU); ``seed_everything(seed, epoch)`` makes each epoch's randomness depend on those two only, so a run
resumed from ``last.pt`` replays the epochs of an uninterrupted one; ``autocast_dtype``: bf16 on CUDA or off.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError


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


def _dist_from_env() -> Dist:
    return Dist(rank=int(os.environ.get("RANK", 0)), world=int(os.environ.get("WORLD_SIZE", 1)),
                local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                local_world=int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1))))


def _device(cfg: dict[str, Any], d: Dist):
    import torch

    want = str(cfg["train"]["device"])
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if not want.startswith("cuda"):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but CUDA is not available (use train.device=auto or cpu)")
    device = torch.device(f"cuda:{d.local_rank}" if want == "cuda" else want)
    torch.cuda.set_device(device)
    return device


def _set_threads(cfg: dict[str, Any], device, d: Dist) -> None:
    import torch

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


def setup_process(cfg: dict[str, Any]):
    """Device, threads and (under torchrun) the process group."""
    import torch.distributed as dist

    d = _dist_from_env()
    device = _device(cfg, d)
    _set_threads(cfg, device, d)
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


def autocast_dtype(cfg: dict[str, Any], device):
    import torch

    amp = cfg["train"]["amp"]
    if amp == "auto":
        amp = device.type == "cuda"
    if not amp:
        return None
    return torch.bfloat16
