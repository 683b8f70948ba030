"""Train and eval transforms for ultrasound, both ending in a normalised float tensor ``[3, H, W]``.

Input to both: the ``torch.uint8`` tensor ``[3, H, W]`` (grayscale replicated) that ``data.ImageDataset`` yields.

Eval is *the* runtime preprocessing: ``EvalTransform`` calls ``pipeline.preprocess.preprocess_gray`` (grayscale →
``cv2.resize(INTER_AREA)`` → three channels → ``(x/255 - mean)/std`` by lookup table), so validation and test
numbers describe the model as the runtime will feed it.

Train adds what varies between scans and scanners, mildly (the lesion must stay in the picture and keep its
shape, since shape and margin carry the diagnosis):

* random resized crop, scale 0.7–1, near-square aspect (probe position, zoom);
* horizontal flip (left/right breast, probe orientation); no vertical flip — depth has a direction;
* small rotation, ±10° (probe tilt), black fill like the scan's background;
* brightness (overall gain), contrast and gamma jitter (scanner presets, dynamic range);
* a smooth depth-dependent gain ramp (time-gain compensation set differently);
* speckle-like multiplicative noise: Gamma(L, 1/L) with mean 1 (the intensity statistics of L-look speckle),
  drawn at half resolution and upsampled so grains span a few pixels, as real speckle does.

Geometry uses torchvision transforms v2 (antialiased bilinear resampling; close to INTER_AREA when shrinking —
the remaining difference is far below the augmentation's own variation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

Size = int | Sequence[int]


def _hw(input_size: Size) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def _to_gray(image) -> np.ndarray:
    """H×W uint8 from a uint8 tensor/array [3,H,W] (replicated gray: channel 0), [1,H,W] or [H,W]."""
    arr = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"eval_transform expects uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3:
        if arr.shape[0] in (1, 3):
            return np.ascontiguousarray(arr[0])
        raise ValueError(f"expected a [3,H,W] or [H,W] image, got shape {arr.shape}")
    return arr


class EvalTransform:
    """Callable eval transform: uint8 image ([3, H0, W0] tensor or [H0, W0] array) → ``torch.float32 [3, H, W]``
    by ``pipeline.preprocess.preprocess_gray`` — the runtime's own function, not a copy of it."""

    def __init__(self, input_size: Size, mean: Sequence[float], std: Sequence[float]):
        from sonolens.pipeline.preprocess import normalisation_lut

        self.input_size = _hw(input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.lut = normalisation_lut(self.mean, self.std)

    def __call__(self, image) -> torch.Tensor:
        from sonolens.pipeline.preprocess import preprocess_gray

        return torch.from_numpy(preprocess_gray(_to_gray(image), self.input_size, self.lut)[0])

    def __repr__(self) -> str:
        return f"EvalTransform(input_size={self.input_size}, cv2.INTER_AREA, mean={self.mean}, std={self.std})"


def eval_transform(input_size: Size, mean: Sequence[float], std: Sequence[float]) -> EvalTransform:
    return EvalTransform(input_size, mean, std)


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each train-time augmentation (the defaults are deliberately mild)."""

    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_ratio: tuple[float, float] = (0.85, 1.0 / 0.85)
    hflip_p: float = 0.5
    rotate_deg: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    depth_gain: float = 0.3  # gain ramp from top to bottom: 1 ± depth_gain/2
    depth_gain_p: float = 0.5
    speckle_looks: tuple[float, float] = (10.0, 50.0)  # noise std = 1/sqrt(L): 0.14–0.32
    speckle_p: float = 0.5


class RandomGamma(nn.Module):
    """``x ** g`` on a [0, 1] image, g log-uniform in ``gamma_range`` (gamma is symmetric in log space)."""

    def __init__(self, gamma_range: tuple[float, float]):
        super().__init__()
        self.log_lo, self.log_hi = float(np.log(gamma_range[0])), float(np.log(gamma_range[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.empty(()).uniform_(self.log_lo, self.log_hi).exp()
        return x.clamp(0, 1) ** g


class DepthGain(nn.Module):
    """Multiply rows by a linear ramp ``1 + s·(y/(H-1) - ½)``, s uniform in ±``strength``: a mis-set TGC."""

    def __init__(self, strength: float, p: float):
        super().__init__()
        self.strength, self.p = strength, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        s = torch.empty(()).uniform_(-self.strength, self.strength)
        ramp = 1 + s * (torch.linspace(0, 1, x.shape[-2]) - 0.5)
        return x * ramp.view(-1, 1)


class SpeckleNoise(nn.Module):
    """Multiplicative Gamma(L, 1/L) noise (mean 1, std 1/√L), the same field on all channels, grain ≈ 2 px."""

    def __init__(self, looks: tuple[float, float], p: float, grain: int = 2):
        super().__init__()
        self.looks, self.p, self.grain = looks, p, grain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        h, w = x.shape[-2:]
        looks = torch.empty(()).uniform_(*self.looks)
        small = (max(1, h // self.grain), max(1, w // self.grain))
        noise = torch.distributions.Gamma(looks, looks).sample(small)
        noise = nn.functional.interpolate(noise[None, None], size=(h, w), mode="bilinear", align_corners=False)[0]
        return x * noise


class Clamp01(nn.Module):
    """Back into [0, 1] after gain and noise (a module, not a lambda, so DataLoader workers can pickle it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 1)


def train_transform(input_size: Size, mean: Sequence[float], std: Sequence[float],
                    cfg: AugmentConfig | None = None) -> v2.Compose:
    """Random geometry on uint8, intensity and noise on float in [0, 1], then normalisation."""
    cfg = cfg or AugmentConfig()
    return v2.Compose([
        v2.RandomRotation(cfg.rotate_deg, interpolation=v2.InterpolationMode.BILINEAR, fill=0),
        v2.RandomResizedCrop(_hw(input_size), scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(cfg.hflip_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast),
        RandomGamma(cfg.gamma),
        DepthGain(cfg.depth_gain, cfg.depth_gain_p),
        SpeckleNoise(cfg.speckle_looks, cfg.speckle_p),
        Clamp01(),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])
