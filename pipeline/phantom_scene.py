"""What the phantom probe looks at: breast anatomy, lesions and where the probe is when.

The scene is described in millimetres: ``x`` across the probe face (0 at its centre), ``z`` depth below the
skin, ``y`` the elevational position of the probe, which advances with time as the probe slides over the
breast. For every probe position the scene paints two maps on a coarse grid (the renderer's half-resolution
grid, ~0.2 mm pixels):

* ``echo_db`` — backscatter strength of the tissue in dB relative to glandular tissue (it scales the speckle);
* ``alpha`` — round-trip attenuation in dB/mm; the renderer integrates it along depth, so a cyst (little
  attenuation) brightens what lies below it and a scirrhous carcinoma or a rib darkens it. Posterior
  enhancement and shadowing therefore fall out of the physics instead of being painted on.

Anatomy from skin down: skin line, subcutaneous fat (dark lobules separated by bright septa / Cooper's
ligaments), fibroglandular tissue (bright, heterogeneous, with fat islands), retromammary fat, pectoral fascia
and muscle (striated), ribs (bright anterior cortex, complete acoustic shadow) and the pleural line between
them. The smooth random textures come from 3-D noise volumes (periodic in ``y``) sampled at the probe's
position, so structures morph smoothly as the probe moves instead of cross-fading.

Lesions are 3-D bodies the probe sweeps across: an ellipsoid whose cross-section grows, peaks and vanishes
as ``y`` passes through it, with a kind-specific margin and echo pattern (BI-RADS lexicon):
``cyst`` anechoic, circumscribed, thin bright wall, posterior enhancement, thin edge shadows;
``benign`` (fibroadenoma-like) oval, parallel (wider than tall), circumscribed, hypoechoic, thin capsule;
``malignant`` irregular and spiculated, not parallel (taller than wide), very hypoechoic and heterogeneous,
echogenic halo, punctate microcalcifications, posterior shadowing.

numpy + OpenCV only. Everything is deterministic from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

KINDS: tuple[str, ...] = ("normal", "cyst", "benign", "malignant", "sweep")
LESION_KINDS: tuple[str, ...] = ("cyst", "benign", "malignant")

# Echogenicity (dB re glandular tissue) and round-trip attenuation (dB/mm) of each tissue. Only the
# differences matter: the renderer's time-gain compensation removes the average attenuation.
ECHO_DB = {"skin": 4.0, "skin_line": 12.0, "fat": -16.0, "septum": 14.0, "gland": 0.0, "fascia": 9.0,
           "muscle": -13.0, "fibre": 11.0, "rib_cortex": 16.0, "rib": -8.0, "pleura": 14.0, "lung": -6.0}
ALPHA = {"skin": 1.0, "fat": 0.9, "gland": 1.15, "muscle": 1.2, "rib": 14.0, "lung": 2.5}

_SEED_TISSUE, _SEED_LESION, _SEED_SPECKLE = 0x7155, 0x1E51, 0x59EC  # streams of the seed's SeedSequence


def rng_for(seed: int, stream: int, *index: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, index): frames can be rendered in any order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream, *[int(i) for i in index]])


# ---------------------------------------------------------------------------------------------------------
# Smooth random fields
# ---------------------------------------------------------------------------------------------------------
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


def _waves(rng: np.random.Generator, n: int, lx: tuple[float, float], ly: tuple[float, float]) -> np.ndarray:
    """Random plane-wave parameters (amp-weights, kx, ky, phase) for a smooth boundary z(x, y)."""
    kx = 2 * math.pi / rng.uniform(*lx, n) * rng.choice([-1, 1], n)
    ky = 2 * math.pi / rng.uniform(*ly, n) * rng.choice([-1, 1], n)
    amp = rng.uniform(0.5, 1.0, n)
    amp /= np.sqrt((amp ** 2).sum() / 2)  # unit std
    return np.stack([amp, kx, ky, rng.uniform(0, 2 * math.pi, n)], axis=1).astype(np.float64)


def _eval_waves(w: np.ndarray, x: np.ndarray, y: float) -> np.ndarray:
    return (w[:, 0, None] * np.sin(w[:, 1, None] * x[None, :] + w[:, 2, None] * y + w[:, 3, None])).sum(0)


# ---------------------------------------------------------------------------------------------------------
# Tissue
# ---------------------------------------------------------------------------------------------------------
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
        rng = rng_for(seed, _SEED_TISSUE)
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
        self.w_skin = _waves(rng, 3, (25, 60), (30, 80))
        self.w_fat = _waves(rng, 4, (12, 40), (15, 50))
        self.w_gland = _waves(rng, 4, (15, 50), (20, 60))
        self.w_retro = _waves(rng, 3, (20, 60), (20, 60))
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
        skin = self.skin_mm + 0.12 * _eval_waves(self.w_skin, x, y_mm)
        fat = self.fat_mm + 1.4 * _eval_waves(self.w_fat, x, y_mm)
        gland_end = self.gland_mm + 1.6 * _eval_waves(self.w_gland, x, y_mm)
        muscle = gland_end + self.retro_mm + 0.4 * _eval_waves(self.w_retro, x, y_mm)
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


# ---------------------------------------------------------------------------------------------------------
# Lesions
# ---------------------------------------------------------------------------------------------------------
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
    rng = rng_for(seed, _SEED_LESION, index)
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


# ---------------------------------------------------------------------------------------------------------
# Where the probe is, and which lesions it passes
# ---------------------------------------------------------------------------------------------------------
class Timeline:
    """Probe elevation over time and the lesions laid out along its path.

    Finite clips (``seconds`` given) place one lesion at mid-clip (``cyst``/``benign``/``malignant``) or, for
    ``sweep``, cyst → benign → malignant at 1/6, 3/6 and 5/6 of the clip; the probe speeds up for short
    sweeps so lesions never overlap. Endless (live) runs repeat: one new lesion every 6 s, or for ``sweep``
    the three kinds in turn every 4 s, each drawn afresh from (seed, lesion number).
    """

    SPEED_MM_S = 4.0
    Y0_MM = 12.0

    def __init__(self, kind: str, seed: int, seconds: float | None) -> None:
        self.kind, self.seed, self.seconds = kind, seed, seconds
        self.speed = self.SPEED_MM_S
        self._fixed: list[Lesion] | None = None
        if kind == "normal":
            self._fixed = []
        elif seconds is not None:
            if kind == "sweep":
                gap = seconds / 3.0
                self.speed = max(self.SPEED_MM_S, 14.0 / max(gap, 1e-3))
                times = [gap * (j + 0.5) for j in range(3)]
                kinds = LESION_KINDS
            else:
                times, kinds = [seconds / 2.0], (kind,)
            self._fixed = [make_lesion(k, seed, j, self.elevation(t)) for j, (k, t) in enumerate(zip(kinds, times))]
        else:
            self.period_s, self.first_s = (4.0, 2.0) if kind == "sweep" else (6.0, 3.0)

    def elevation(self, t_s: float) -> float:
        return self.Y0_MM + self.speed * t_s

    def lesion(self, k: int) -> Lesion:
        kind = LESION_KINDS[k % 3] if self.kind == "sweep" else self.kind
        return make_lesion(kind, self.seed, k, self.elevation(self.first_s + k * self.period_s))

    def lesions_near(self, y_mm: float) -> list[Lesion]:
        """Lesions whose body may intersect the plane at ``y_mm``."""
        if self._fixed is not None:
            return [les for les in self._fixed if abs(y_mm - les.y) < les.ay]
        t = (y_mm - self.Y0_MM) / self.speed
        k_mid = round((t - self.first_s) / self.period_s)
        out = []
        for k in range(max(0, k_mid - 1), k_mid + 2):
            les = self.lesion(k)
            if abs(y_mm - les.y) < les.ay:
                out.append(les)
        return out
