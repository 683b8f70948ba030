"""The phantom's randomness: one independent generator per purpose, and smooth random fields.

Every random draw of the simulator comes from ``rng_for(seed, stream, *index)``, so a frame depends only on
the seed and its own index, never on which frames were rendered before it. The ``SEED_*`` constants name
the streams; changing one changes every clip.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SEED_TISSUE", "SEED_LESION", "SEED_SPECKLE", "SEED_NOISE", "rng_for", "smooth_noise_volume",
           "random_waves", "eval_waves"]

# streams of the seed's SeedSequence
SEED_TISSUE, SEED_LESION, SEED_SPECKLE, SEED_NOISE = 0x7155, 0x1E51, 0x59EC, 0x0015E


def rng_for(seed: int, stream: int, *index: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, index): frames can be rendered in any order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream, *[int(i) for i in index]])


def smooth_noise_volume(rng: np.random.Generator, shape: tuple[int, int, int],
                        sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """White noise low-passed by an (anisotropic) Gaussian via FFT: periodic, zero mean, unit std, float32."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    spec = np.fft.rfftn(noise)
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    gauss = 1.0
    for axis, (f, s) in enumerate(zip(freqs, sigma_vox)):
        shp = [1, 1, 1]
        shp[axis] = f.size
        gauss = gauss * np.exp(-2.0 * (math.pi * f * s) ** 2).reshape(shp)
    vol = np.fft.irfftn(spec * gauss, s=shape, axes=(0, 1, 2)).astype(np.float32)
    vol -= vol.mean()
    vol /= vol.std() + 1e-12
    return vol


def random_waves(rng: np.random.Generator, n: int, lx: tuple[float, float], ly: tuple[float, float]) -> np.ndarray:
    """Random plane-wave parameters (amp-weights, kx, ky, phase) for a smooth boundary z(x, y)."""
    kx = 2 * math.pi / rng.uniform(*lx, n) * rng.choice([-1, 1], n)
    ky = 2 * math.pi / rng.uniform(*ly, n) * rng.choice([-1, 1], n)
    amp = rng.uniform(0.5, 1.0, n)
    amp /= np.sqrt((amp ** 2).sum() / 2)  # unit std
    return np.stack([amp, kx, ky, rng.uniform(0, 2 * math.pi, n)], axis=1).astype(np.float64)


def eval_waves(w: np.ndarray, x: np.ndarray, y: float) -> np.ndarray:
    """Height of the boundary ``w`` (from ``random_waves``) at columns ``x`` (mm) and elevation ``y`` (mm)."""
    return (w[:, 0, None] * np.sin(w[:, 1, None] * x[None, :] + w[:, 2, None] * y + w[:, 3, None])).sum(0)
