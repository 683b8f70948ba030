"""Breast tissue as the phantom probe sees it: echogenicity and attenuation maps at any probe elevation.

The scene is described in millimetres: ``x`` across the probe face (0 at its centre), ``z`` depth below the
skin, ``y`` the elevational position of the probe, which advances with time as the probe slides over the
breast. For every probe position ``Tissue.maps`` paints two maps on a coarse grid (the renderer's
half-resolution grid, ~0.2 mm pixels):

* ``echo_db`` — backscatter strength of the tissue in dB relative to glandular tissue (it scales the speckle);
* ``alpha`` — round-trip attenuation in dB/mm; the renderer integrates it along depth, so a cyst (little
  attenuation) brightens what lies below it and a scirrhous carcinoma or a rib darkens it. Posterior
  enhancement and shadowing therefore fall out of the physics instead of being painted on.

Anatomy from skin down: skin line, subcutaneous fat (dark lobules separated by bright septa / Cooper's
ligaments), fibroglandular tissue (bright, heterogeneous, with fat islands), retromammary fat, pectoral fascia
and muscle (striated), ribs (bright anterior cortex, complete acoustic shadow) and the pleural line between
them. The smooth random textures come from 3-D noise volumes (periodic in ``y``) sampled at the probe's
position, so structures morph smoothly as the probe moves instead of cross-fading.

numpy + OpenCV only. Everything is deterministic from the seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .noise import SEED_TISSUE, eval_waves, random_waves, rng_for, smooth_noise_volume

__all__ = ["ECHO_DB", "ALPHA", "Tissue"]


# Echogenicity (dB re glandular tissue) and round-trip attenuation (dB/mm) of each tissue. Only the
# differences matter: the renderer's time-gain compensation removes the average attenuation.
ECHO_DB = {"skin": 4.0, "skin_line": 12.0, "fat": -16.0, "septum": 14.0, "gland": 0.0, "fascia": 9.0,
           "muscle": -13.0, "fibre": 11.0, "rib_cortex": 16.0, "rib": -8.0, "pleura": 14.0, "lung": -6.0}
ALPHA = {"skin": 1.0, "fat": 0.9, "gland": 1.15, "muscle": 1.2, "rib": 14.0, "lung": 2.5}


class Tissue:
    """Layered breast tissue; ``maps(y)`` paints echo (dB) and attenuation (dB/mm) on the grid.

    ``z_mm`` (grid_h,) and ``x_mm`` (grid_w,) are the grid's pixel centres in millimetres.
    """

    VOXEL_X_MM = 0.5      # texture volume spacing across,
    VOXEL_Z_MM = 0.25     # ... in depth (finer: tissue is layered, its streaks are thin)
    VOXEL_Y_MM = 0.75     # ... and in elevation
    PERIOD_Y_MM = 96.0    # textures repeat after this much probe travel (24 s at 4 mm/s)

    def __init__(self, seed: int, width_mm: float, depth_mm: float, grid_h: int, grid_w: int) -> None:
        self.width_mm, self.depth_mm = width_mm, depth_mm
        self.grid_h, self.grid_w = grid_h, grid_w
        self.z_mm = ((np.arange(grid_h) + 0.5) * depth_mm / grid_h).astype(np.float32)
        self.x_mm = ((np.arange(grid_w) + 0.5) * width_mm / grid_w - width_mm / 2).astype(np.float32)
        self.zz = self.z_mm[:, None]
        rng = rng_for(seed, SEED_TISSUE)
        ny = int(round(self.PERIOD_Y_MM / self.VOXEL_Y_MM))
        nz = int(math.ceil(depth_mm / self.VOXEL_Z_MM)) + 1
        nx = int(math.ceil(width_mm / self.VOXEL_X_MM)) + 1
        vx, vz, vy = self.VOXEL_X_MM, self.VOXEL_Z_MM, self.VOXEL_Y_MM
        # lobules: flattened blobs ~3-6 mm; gland: fine horizontal streaks; islands: larger fat islands
        self.vol_lobule = smooth_noise_volume(rng, (ny, nz, nx), (2.5 / vy, 0.9 / vz, 1.6 / vx))
        self.vol_texture = smooth_noise_volume(rng, (ny, nz, nx), (1.2 / vy, 0.15 / vz, 0.8 / vx))
        self.vol_island = smooth_noise_volume(rng, (ny, nz, nx), (2.5 / vy, 1.1 / vz, 1.8 / vx))
        # layer depths: base + amplitude × smooth waves in (x, y)
        self.skin_mm = rng.uniform(1.3, 1.7)
        self.fat_mm = rng.uniform(6.0, 8.0)
        self.gland_mm = rng.uniform(22.5, 24.5)
        self.retro_mm = rng.uniform(1.8, 2.6)
        self.muscle_fibre_tilt = rng.uniform(-0.18, 0.18)
        self.w_skin = random_waves(rng, 3, (25, 60), (30, 80))
        self.w_fat = random_waves(rng, 4, (12, 40), (15, 50))
        self.w_gland = random_waves(rng, 4, (15, 50), (20, 60))
        self.w_retro = random_waves(rng, 3, (20, 60), (20, 60))
        spacing = rng.uniform(21.0, 26.0)
        first = rng.uniform(-spacing / 2, spacing / 2) - spacing
        self.ribs_x = np.array([first + k * spacing for k in range(4)])
        self.rib_depth = depth_mm - rng.uniform(5.0, 6.5)   # rib centre, a few mm above the image bottom
        self.rib_rx, self.rib_rz = rng.uniform(4.5, 5.5), rng.uniform(2.6, 3.2)
        # muscle fibres: oblique coordinate, precomputed once (the pattern only shifts with y)
        c, s = math.cos(self.muscle_fibre_tilt), math.sin(self.muscle_fibre_tilt)
        self._fibre_u = (self.zz * c - self.x_mm[None, :] * s).astype(np.float32)

    def fields(self, y_mm: float) -> dict[str, np.ndarray]:
        """The three texture fields sampled at elevation ``y_mm`` and resized to the grid."""
        out = {}
        pos = (y_mm / self.VOXEL_Y_MM) % self.vol_lobule.shape[0]
        i0 = int(pos)
        f = np.float32(pos - i0)
        i1 = (i0 + 1) % self.vol_lobule.shape[0]
        for name in ("lobule", "texture", "island"):  # (the volume spans the plane, ≤ 1 voxel stretch)
            vol = getattr(self, "vol_" + name)
            sl = vol[i0] * (1 - f) + vol[i1] * f
            out[name] = cv2.resize(sl, (self.grid_w, self.grid_h), interpolation=cv2.INTER_LINEAR)
        return out

    def boundaries(self, y_mm: float) -> dict[str, np.ndarray]:
        """Depth (mm) of the layer boundaries (skin/fat, fat/gland, gland/retromammary fat, muscle), per column."""
        x = self.x_mm.astype(np.float64)
        skin = self.skin_mm + 0.12 * eval_waves(self.w_skin, x, y_mm)
        fat = self.fat_mm + 1.4 * eval_waves(self.w_fat, x, y_mm)
        gland_end = self.gland_mm + 1.6 * eval_waves(self.w_gland, x, y_mm)
        muscle = gland_end + self.retro_mm + 0.4 * eval_waves(self.w_retro, x, y_mm)
        return {k: v.astype(np.float32) for k, v in
                {"skin": skin, "fat_end": fat, "gland_end": gland_end, "muscle": muscle}.items()}

    def maps(self, y_mm: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(echo_db, alpha_db_per_mm, fields) at elevation ``y_mm``; both maps float32 (grid_h, grid_w)."""
        zz = self.zz
        f = self.fields(y_mm)
        b = self.boundaries(y_mm)
        lob, tex, isl = f["lobule"], f["texture"], f["island"]

        def below(top: np.ndarray, width: float, jitter: np.ndarray | None = None) -> np.ndarray:
            d = zz - top[None, :] if jitter is None else zz - top[None, :] - jitter
            return np.clip(d * (1.0 / width) + 0.5, 0.0, 1.0)

        def line(at: np.ndarray, width: float) -> np.ndarray:
            return np.exp(-np.square((zz - at[None, :]) * (1.0 / width)))

        # subcutaneous fat: dark lobules, bright septa along the zero-crossings of the lobule field
        septa = np.exp(-np.square(lob * (1 / 0.22)))
        fat = ECHO_DB["fat"] + 2.0 * tex + ECHO_DB["septum"] * septa
        # fibroglandular: bright, streaky, with fat islands (their rims bright too)
        island = np.clip((isl - 0.75) * 3.0, 0.0, 1.0)
        gland = ECHO_DB["gland"] + 3.5 * tex + (ECHO_DB["fat"] - 2.0) * island \
            + 8.0 * np.exp(-np.square((isl - 0.6) * (1 / 0.08)))
        in_gland = below(b["fat_end"], 0.8, 1.6 * isl * (isl > 0)) * (1 - below(b["gland_end"], 0.8, 0.8 * lob))
        echo = fat + (gland - fat) * in_gland
        alpha = ALPHA["fat"] + (ALPHA["gland"] - ALPHA["fat"]) * in_gland
        # pectoral fascia + muscle with oblique striations
        m = below(b["muscle"], 0.5)
        fibres = np.maximum(np.sin(self._fibre_u * (2 * math.pi / 1.7) + 1.5 * lob + 0.05 * y_mm), 0) ** 4
        muscle = ECHO_DB["muscle"] + ECHO_DB["fibre"] * 1.5 * fibres * np.clip(0.75 + 0.35 * isl, 0.3, 1.2) \
            + 1.5 * tex
        echo += (muscle - echo) * m
        alpha += (ALPHA["muscle"] - alpha) * m
        echo += ECHO_DB["fascia"] * line(b["muscle"], 0.35) + 5.0 * line(b["gland_end"], 0.3) * (1 - m)
        # skin: bright entry line, moderately bright dermis
        s = 1 - below(b["skin"], 0.3)
        echo += (ECHO_DB["skin"] + 2 * tex - echo) * s
        echo += ECHO_DB["skin_line"] * np.exp(-np.square((zz - 0.35) * (1 / 0.22)))
        alpha += (ALPHA["skin"] - alpha) * s
        self._paint_ribs(echo, alpha, y_mm, tex)
        return echo.astype(np.float32, copy=False), alpha.astype(np.float32, copy=False), f

    def _paint_ribs(self, echo: np.ndarray, alpha: np.ndarray, y_mm: float, tex: np.ndarray) -> None:
        """Ribs in cross-section: bright curved anterior cortex, shadow behind; pleura and lung between."""
        top = self.rib_depth - 1.2 * self.rib_rz
        r0 = int(np.searchsorted(self.z_mm, top))
        if r0 >= self.grid_h:
            return
        echo, alpha, tex = echo[r0:], alpha[r0:], tex[r0:]    # views: painted in place
        zz, x = self.zz[r0:], self.x_mm[None, :]
        drift = 1.5 * math.sin(2 * math.pi * y_mm / 70.0)
        rib_any = np.zeros_like(echo)
        cortex = np.zeros_like(echo)
        for xc in self.ribs_x + drift:
            if abs(xc) > self.width_mm / 2 + self.rib_rx:
                continue
            r = np.sqrt(np.square((x - xc) / self.rib_rx) + np.square((zz - self.rib_depth) / self.rib_rz))
            rib_any = np.maximum(rib_any, np.clip((0.88 - r) * 12 + 0.5, 0, 1))
            upper = zz < self.rib_depth + 0.3 * self.rib_rz
            cortex = np.maximum(cortex, np.exp(-np.square((r - 0.97) * (1 / 0.11))) * upper)
        pleura_z = self.rib_depth + 0.55 * self.rib_rz
        lung = np.clip((zz - pleura_z) * 2.5 + 0.5, 0, 1) * (1 - rib_any)
        echo += (ECHO_DB["lung"] + 3.0 * tex - echo) * lung
        echo += (ECHO_DB["pleura"] - echo) * np.exp(-np.square((zz - pleura_z) * (1 / 0.3))) * (1 - rib_any)
        alpha += (ALPHA["lung"] - alpha) * lung
        echo += (ECHO_DB["rib"] - echo) * rib_any
        alpha += (ALPHA["rib"] - alpha) * rib_any
        echo += (ECHO_DB["rib_cortex"] - echo) * cortex
