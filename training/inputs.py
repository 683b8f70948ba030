"""What the networks are fed, in every training mode: samples, cached datasets and the runtime's tensors.

* ``read_samples`` / ``infer_class_names``: a split's samples (split CSV or class folders) and the class order;
* ``CachedImageDataset`` (via ``maybe_cached``): decoded images kept in memory (train: grayscale uint8, shrunk
  to at most ``data.cache_max_side`` × the input size); ``IndexedDataset``: items that carry their index;
* ``runtime_resized`` + ``lut_tensor`` + ``validation_input``: validation images resized once by the runtime's
  ``pipeline.preprocess.resize_gray`` and normalised on the device through its ``normalisation_lut`` — bit for
  bit the tensors ``sonolens run`` and ``sonolens eval`` feed;
* ``model_input`` / ``normalise``: an augmented [0, 1] training batch as a model with a given spec expects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import resolve_path


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


def take_subset(samples: list, n: int | None, seed: int) -> list:
    """The first ``n`` of a seeded shuffle of ``samples``, in their original order (all when ``n`` is not set)."""
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


def maybe_cached(cfg: dict[str, Any], dataset: Any, size: Sequence[int]) -> Any:
    """``dataset`` wrapped in ``CachedImageDataset`` when ``data.cache`` is on (images shrunk to at most
    ``data.cache_max_side`` × the largest side of ``size``)."""
    if not cfg["data"]["cache"]:
        return dataset
    ms = cfg["data"]["cache_max_side"]
    return CachedImageDataset(dataset, int(round(float(ms) * max(size))) if ms else None)


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
