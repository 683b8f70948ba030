"""Lesions: 3-D bodies the phantom probe sweeps across, and how one is painted into the tissue maps.

A lesion is an ellipsoid whose cross-section grows, peaks and vanishes as the probe's elevation ``y`` passes
through it, with a kind-specific margin and echo pattern (BI-RADS lexicon):
``cyst`` anechoic, circumscribed, thin bright wall, posterior enhancement, thin edge shadows;
``benign`` (fibroadenoma-like) oval, parallel (wider than tall), circumscribed, hypoechoic, thin capsule;
``malignant`` irregular and spiculated, not parallel (taller than wide), very hypoechoic and heterogeneous,
echogenic halo, punctate microcalcifications, posterior shadowing.

Units are millimetres, as in ``tissue``. numpy only; deterministic from (seed, lesion number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .noise import SEED_LESION, rng_for
from .tissue import Tissue

__all__ = ["Lesion", "make_lesion", "paint_lesion"]


@dataclass(frozen=True)
class Lesion:
    """A 3-D lesion centred at (x, z, y) mm with semi-axes (ax, az, ay), rotated ``tilt`` rad in-plane.

    The margin in the imaging plane is ``rho = R(theta)`` in ellipse-normalised polar coordinates, with
    ``R = 1 + Σ a_n cos(n θ + φ_n + drift_n · dy) + spicules``; ``dy`` is the offset from the lesion's centre in
    elevation, so the outline changes as the probe sweeps through it.
    """

    kind: str
    x: float
    z: float
    y: float
    ax: float
    az: float
    ay: float
    tilt: float
    harm: np.ndarray = field(repr=False)       # (n, 4): order, amplitude, phase, drift per mm
    spicules: np.ndarray = field(repr=False)   # (k, 3): angle, length (× radius), angular width
    calcs: np.ndarray = field(repr=False)      # (m, 3): microcalcifications at (u, v, y) in units of (ax, az, ay)

    def scale_at(self, y_mm: float) -> float:
        """Cross-section scale at elevation ``y_mm``: 0 outside the lesion, 1 through its centre."""
        d = (y_mm - self.y) / self.ay
        return math.sqrt(1.0 - d * d) if abs(d) < 1.0 else 0.0

    def extent_mm(self, y_mm: float) -> float:
        """Half-size of a square that holds the cross-section with its halo and spicules."""
        s = self.scale_at(y_mm)
        spic = float(self.spicules[:, 1].max()) if len(self.spicules) else 0.0
        halo = 2.0 if self.kind == "malignant" else 0.6
        return max(self.ax, self.az) * s * (1.0 + float(np.abs(self.harm[:, 1]).sum()) + spic) + halo


def make_lesion(kind: str, seed: int, index: int, y_mm: float) -> Lesion:
    """Draw a lesion of ``kind`` (deterministic from seed and index) centred at elevation ``y_mm``."""
    rng = rng_for(seed, SEED_LESION, index)
    x = rng.uniform(-5.0, 5.0)
    empty = np.zeros((0, 3))
    if kind == "cyst":
        ax = rng.uniform(4.2, 5.2)
        az, ay, z = ax * rng.uniform(0.68, 0.82), rng.uniform(4.0, 5.0), rng.uniform(14.0, 16.0)
        tilt = rng.uniform(-0.15, 0.15)
        harm = np.array([[2, rng.uniform(0.0, 0.03), rng.uniform(0, 6.3), 0.0]])
        return Lesion(kind, x, z, y_mm, ax, az, ay, tilt, harm, empty, empty)
    if kind == "benign":
        ax = rng.uniform(6.0, 7.5)
        az, ay, z = ax * rng.uniform(0.5, 0.62), rng.uniform(5.0, 6.5), rng.uniform(14.5, 16.0)
        tilt = rng.uniform(-0.15, 0.15)
        # gently lobulated: 2–3 broad lobes
        harm = np.array([[n, rng.uniform(0.02, 0.05), rng.uniform(0, 6.3), rng.uniform(-0.05, 0.05)]
                         for n in (2, 3)])
        return Lesion(kind, x, z, y_mm, ax, az, ay, tilt, harm, empty, empty)
    if kind == "malignant":
        ax = rng.uniform(4.4, 5.3)
        az, ay, z = ax * rng.uniform(1.12, 1.3), rng.uniform(4.5, 5.5), rng.uniform(14.5, 16.0)
        tilt = rng.uniform(-0.35, 0.35)
        harm = np.array([[n, rng.uniform(0.05, 0.10) / math.sqrt(n / 3), rng.uniform(0, 6.3),
                          rng.uniform(-0.25, 0.25)] for n in range(3, 9)])
        k = int(rng.integers(7, 11))
        angles = (np.arange(k) + rng.uniform(-0.3, 0.3, k)) * (2 * math.pi / k) + rng.uniform(0, 2 * math.pi)
        spic = np.stack([angles, rng.uniform(0.35, 0.8, k), rng.uniform(0.09, 0.15, k)], axis=1)
        m = int(rng.integers(6, 12))
        r = np.sqrt(rng.uniform(0, 0.55, m))
        a = rng.uniform(0, 2 * math.pi, m)
        calcs = np.stack([r * np.cos(a), r * np.sin(a), rng.uniform(-0.7, 0.7, m)], axis=1)
        return Lesion(kind, x, z, y_mm, ax, az, ay, tilt, harm, spic, calcs)
    raise ValueError(f"not a lesion kind: {kind!r}")


def paint_lesion(echo: np.ndarray, alpha: np.ndarray, lesion: Lesion, y_mm: float, tissue: Tissue,
                 tex: np.ndarray) -> tuple[int, int, int, int] | None:
    """Paint the lesion's cross-section at ``y_mm`` into the maps (in place); return its grid bbox (x, y, w, h)."""
    s = lesion.scale_at(y_mm)
    if s <= 0.02:
        return None
    px_x = tissue.width_mm / tissue.grid_w
    px_z = tissue.depth_mm / tissue.grid_h
    ext = lesion.extent_mm(y_mm)
    c0 = max(0, int((lesion.x - ext + tissue.width_mm / 2) / px_x))
    c1 = min(tissue.grid_w, int((lesion.x + ext + tissue.width_mm / 2) / px_x) + 2)
    r0 = max(0, int((lesion.z - ext) / px_z))
    r1 = min(tissue.grid_h, int((lesion.z + ext) / px_z) + 2)
    if c1 <= c0 or r1 <= r0:
        return None
    dx = tissue.x_mm[None, c0:c1] - lesion.x
    dz = tissue.z_mm[r0:r1, None] - lesion.z
    ct, st = math.cos(lesion.tilt), math.sin(lesion.tilt)
    u = dx * ct + dz * st
    v = -dx * st + dz * ct
    a, b = lesion.ax * s, lesion.az * s
    un, vn = u / a, v / b
    rho = np.sqrt(un * un + vn * vn)
    theta = np.arctan2(vn, un)
    dy = y_mm - lesion.y
    radius = np.ones_like(rho)
    for n, amp, phase, drift in lesion.harm:
        radius += np.float32(amp) * np.cos(np.float32(n) * theta + np.float32(phase + drift * dy))
    if len(lesion.spicules):
        cos_t, sin_t = un / (rho + 1e-6), vn / (rho + 1e-6)
        for ang, length, width in lesion.spicules:
            # exp(2(cos d − 1)/w²) ≈ exp(−d²/w²) for the angular distance d, without wrapping angles
            cos_d = cos_t * np.float32(math.cos(ang)) + sin_t * np.float32(math.sin(ang))
            radius += np.float32(length) * np.exp((cos_d - 1.0) * np.float32(2.0 / (width * width)))
    mean_r = 0.5 * (a + b)
    dist_mm = (rho - radius) * mean_r          # signed distance to the margin, >0 outside
    E, A = echo[r0:r1, c0:c1], alpha[r0:r1, c0:c1]
    t = tex[r0:r1, c0:c1]
    if lesion.kind == "cyst":
        inside = np.clip(0.5 - dist_mm / 0.15, 0, 1)
        wall = np.exp(-np.square(dist_mm / 0.18)) * (1.0 + 0.6 * (v > 0))  # back wall brighter
        E += (-60.0 - E) * inside + 6.0 * wall
        A += (0.05 - A) * inside
        # refraction at the curved lateral margins: narrow edge shadows starting at the widest point
        edge = np.exp(-np.square((np.abs(u) - a * 0.97) / 0.22)) * ((v > 0) & (v < 0.45 * b))
        A += 6.0 * edge
    elif lesion.kind == "benign":
        inside = np.clip(0.5 - dist_mm / 0.3, 0, 1)
        capsule = np.exp(-np.square(dist_mm / 0.22))
        E += (-17.0 + 2.0 * t - E) * inside + 7.0 * capsule
        A += (0.85 - A) * inside
    else:  # malignant
        inside = np.clip(0.5 - dist_mm / 0.6, 0, 1)
        outside = np.clip(dist_mm, 0, None)
        halo = np.exp(-np.square(outside / 1.4)) * np.clip(dist_mm / 0.4 + 1.0, 0, 1)
        E += (-13.0 + 5.0 * t - E) * inside + (12.0 - 0.5 * E) * halo * (1 - inside)
        A += (2.1 - A) * inside
        for cu, cv, cy in lesion.calcs:   # punctate bright foci, visible when the plane passes through them
            w = math.exp(-((dy - cy * lesion.ay) / 0.35) ** 2)
            if w < 0.05:
                continue
            pu, pv = cu * a, cv * b
            col = int((lesion.x + pu * ct - pv * st + tissue.width_mm / 2) / px_x) - c0
            row = int((lesion.z + pu * st + pv * ct) / px_z) - r0
            sr, sc = slice(max(0, row - 3), max(0, row + 4)), slice(max(0, col - 3), max(0, col + 4))
            E[sr, sc] += 22.0 * w * np.exp(-(np.square(u[sr, sc] - pu) + np.square(v[sr, sc] - pv)) * (1 / 0.05))
    return c0, r0, c1 - c0, r1 - r0
