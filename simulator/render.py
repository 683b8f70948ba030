"""The B-mode renderer of the phantom: speckle, point-spread function, envelope, log compression, scanner UI.

How one frame is made (all float32, numpy + OpenCV, no torch):

1. The probe's elevation ``y`` at time ``i / fps`` is looked up on the ``Timeline``; ``Tissue.maps(y)`` and
   ``paint_lesion`` give echogenicity (dB) and attenuation (dB/mm) on a half-resolution grid.
2. Attenuation is integrated along depth (a cumulative sum) and the time-gain-compensation curve added, so
   cysts enhance and cancers/ribs shadow what lies below them. The resulting gain is resized to full size.
3. Speckle: the tissue's scatterers are complex Gaussian (baseband / IQ) amplitudes on a 3-D lattice of
   elevational slices 0.5 mm apart, each slice drawn from ``(seed, slice number)``. The plane at ``y`` mixes
   the two nearest slices with weights ``cos``/``sin`` of the fractional position, which keeps the speckle
   statistics stationary while it decorrelates smoothly as the probe moves (≈0.9 frame-to-frame amplitude
   correlation at 4 mm/s and 30 Hz). Returning to the same ``y`` gives the same speckle, as in real tissue.
4. The scatterer plane times the gain is convolved with the separable point-spread function (Gaussian axial
   pulse envelope × Gaussian lateral beam). Convolving complex baseband scatterers with the pulse envelope is
   the analytic-signal approach: the magnitude of the result *is* the envelope that a Hilbert transform of
   the RF line would give, without simulating the (sub-pixel) carrier.
5. Electronic noise (amplified by the TGC, so it shows in deep shadows) is added; the intensity (envelope²)
   is smoothed a little, as a scanner's speckle reduction does, then ``10·log10`` → a fixed dynamic range
   onto 0..255 (log compression).
6. The B-mode rectangle is pasted into a pre-drawn scanner screen (black surround, label, depth ticks, focus
   marker, grey bar, clock; see ``screen``), the part the pipeline's ROI detector has to strip.

Everything that does not depend on the frame (PSF, TGC curve, noise bank, texture volumes, UI) is made once
in ``__init__`` (≈0.3–0.5 s). A 640×480 frame then costs about 6 ms (median; p90 ≈ 9 ms) on one core of a busy
2-core machine. Measure it with ``sonolens simulate --bench``.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import PhantomError
from .kinds import check_kind
from .lesions import Lesion, paint_lesion
from .noise import SEED_NOISE, SEED_SPECKLE, rng_for
from .screen import Layout, draw_clock, draw_screen, make_layout
from .timeline import Timeline
from .tissue import Tissue

__all__ = ["Phantom", "LesionTruth"]

_LN10_20 = math.log(10.0) / 20.0


@dataclass(frozen=True)
class LesionTruth:
    """Ground truth of one lesion in a frame: kind and the bounding box of its cross-section (frame pixels)."""

    kind: str
    bbox: tuple[int, int, int, int]  # x, y, w, h in frame pixels (the ellipse, without spicules/halo)
    center: tuple[float, float]      # x, y in frame pixels
    scale: float                     # 0..1: how much of the lesion's largest cross-section is in the plane


def _gauss_kernel(sigma_px: float, energy: bool = True) -> np.ndarray:
    """Gaussian taps with unit energy (white speckle keeps unit power) or unit sum (a plain smoother)."""
    r = max(1, int(math.ceil(3.0 * sigma_px)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_px) ** 2)
    return (k / (np.sqrt((k ** 2).sum()) if energy else k.sum())).astype(np.float32)


class Phantom:
    """Render frames of a simulated breast scan with a linear probe. ``render(i)`` is random-access.

    ``kind``: one of ``KINDS``. ``seconds``: clip length (lesions placed within it), or None for an endless
    live stream whose lesions repeat. ``size``: (width, height) of the whole screen. Frames depend only on
    (kind, seed, fps, size, seconds), not on the order they are rendered in. One thread renders at a time
    (a small speckle-slice cache is shared).

    Raises ``PhantomError`` for an unknown kind, a size under 64×64, a frame rate or length that is not a
    positive number.
    """

    SLICE_MM = 0.5              # elevational spacing of independent speckle slices
    AXIAL_SIGMA_MM = 0.16       # pulse envelope (≈0.38 mm FWHM)
    LATERAL_SIGMA_MM = 0.30     # beam width (≈0.7 mm FWHM)
    SMOOTH_SIGMA_MM = 0.08      # intensity smoothing after detection
    FOCUS_MM = 18.0
    NOISE_DB_AT_BOTTOM = -30.0  # electronic noise after TGC, re gland echo
    TOP_DB = 18.0               # echo level shown white (gland speckle ≈ grey 150)

    seed: int
    fps: float
    seconds: float | None
    layout: Layout
    ui: bool
    tissue: Tissue
    timeline: Timeline
    _gh: int
    _gw: int
    _kz: np.ndarray
    _kx: np.ndarray
    _kz_i: np.ndarray
    _kx_i: np.ndarray
    _dz_grid: float
    _tgc_db: np.ndarray
    _env2_floor: float
    _log_scale: float
    _log_offset: float
    _noise: list[np.ndarray]
    _screen: np.ndarray

    def __init__(self, kind: str, seed: int = 0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
                 seconds: float | None = None, *, depth_mm: float = 40.0, probe_mm: float = 38.0,
                 dynamic_range_db: float = 50.0, gain_db: float = 0.0, ui: bool = True) -> None:
        self.kind = check_kind(kind)
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise PhantomError(f"phantom fps must be a positive number, got {fps!r}")
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise PhantomError(f"phantom seconds must be positive (or None for endless), got {seconds!r}")
        self.seed, self.fps, self.seconds = int(seed), float(fps), seconds
        self.layout = lay = make_layout(size, depth_mm, probe_mm)
        self.ui = ui
        ih, iw = lay.img_h, lay.img_w
        self._gh, self._gw = (ih + 1) // 2, (iw + 1) // 2
        self.tissue = Tissue(self.seed, lay.width_mm, depth_mm, self._gh, self._gw)
        self.timeline = Timeline(kind, self.seed, seconds)
        px = lay.mm_per_px
        self._kz = _gauss_kernel(self.AXIAL_SIGMA_MM / px)
        self._kx = _gauss_kernel(self.LATERAL_SIGMA_MM / px)
        self._kz_i, self._kx_i = (_gauss_kernel(self.SMOOTH_SIGMA_MM / px, energy=False) for _ in range(2))
        # TGC: undo the average tissue attenuation, plus a gentle focal-zone brightening (half-res grid)
        z = self.tissue.z_mm
        self._dz_grid = depth_mm / self._gh
        self._tgc_db = (1.05 * z + 1.5 * np.exp(-0.5 * ((z - self.FOCUS_MM) / 7.0) ** 2) + gain_db).astype(np.float32)
        # display mapping: dB = 10·log10(env²) = (10/ln10)·ln(env²); grey = (dB − floor)·255/DR
        floor_db = self.TOP_DB - dynamic_range_db
        self._env2_floor = float(10.0 ** (floor_db / 10.0))
        self._log_scale = 10.0 / math.log(10.0) * 255.0 / dynamic_range_db
        self._log_offset = -floor_db * 255.0 / dynamic_range_db
        # electronic noise bank: complex, amplified with depth like the TGC
        zf = (np.arange(ih) + 0.5) * px
        noise_amp = 10.0 ** ((self.NOISE_DB_AT_BOTTOM - 1.05 * (depth_mm - zf)) / 20.0) * math.sqrt(0.5)
        nrng = rng_for(self.seed, SEED_NOISE)
        self._noise = [(nrng.standard_normal((ih, iw, 2), dtype=np.float32) * noise_amp[:, None, None]
                        .astype(np.float32)) for _ in range(6)]
        self._slices: OrderedDict[int, np.ndarray] = OrderedDict()
        self._screen = (draw_screen(lay, self.FOCUS_MM, dynamic_range_db, self.fps, gain_db) if ui
                        else np.zeros((lay.height, lay.width, 3), np.uint8))

    # -- timing --------------------------------------------------------------------------------------------
    @property
    def frame_count(self) -> int | None:
        return None if self.seconds is None else max(1, int(round(self.seconds * self.fps)))

    def elevation(self, index: int) -> float:
        """Probe elevation (mm) at frame ``index``."""
        return self.timeline.elevation(index / self.fps)

    # -- speckle -------------------------------------------------------------------------------------------
    def _slice(self, j: int) -> np.ndarray:
        s = self._slices.get(j)
        if s is None:
            rng = rng_for(self.seed, SEED_SPECKLE, j)
            s = rng.standard_normal((self.layout.img_h, self.layout.img_w, 2), dtype=np.float32)
            s *= np.float32(math.sqrt(0.5))
            self._slices[j] = s
            while len(self._slices) > 4:
                self._slices.popitem(last=False)
        else:
            self._slices.move_to_end(j)
        return s

    def _scatterers(self, y_mm: float) -> np.ndarray:
        pos = y_mm / self.SLICE_MM
        j = math.floor(pos)
        f = (pos - j) * math.pi / 2
        return cv2.addWeighted(self._slice(j), math.cos(f), self._slice(j + 1), math.sin(f), 0.0)

    # -- maps ----------------------------------------------------------------------------------------------
    def maps(self, index: int) -> tuple[np.ndarray, np.ndarray, list[Lesion]]:
        """Echo (dB) and attenuation (dB/mm) maps on the half-res grid for frame ``index``, and its lesions."""
        y = self.elevation(index)
        echo, alpha, fields = self.tissue.maps(y)
        lesions = self.timeline.lesions_near(y)
        for les in lesions:
            paint_lesion(echo, alpha, les, y, self.tissue, fields["texture"])
        return echo, alpha, lesions

    def gain(self, index: int) -> np.ndarray:
        """Amplitude gain (linear) of every half-res pixel: echo − attenuation above it + TGC."""
        echo, alpha, _ = self.maps(index)
        att = np.cumsum(alpha, axis=0, dtype=np.float32)
        att -= 0.5 * alpha                       # attenuation *above* the pixel's centre
        gain_db = echo - att * self._dz_grid + self._tgc_db[:, None]
        return cv2.exp(gain_db * np.float32(_LN10_20))

    # -- rendering -----------------------------------------------------------------------------------------
    def render_bmode(self, index: int) -> np.ndarray:
        """The B-mode image alone (img_h × img_w uint8), without the scanner screen."""
        lay = self.layout
        amp = cv2.resize(self.gain(index), (lay.img_w, lay.img_h), interpolation=cv2.INTER_LINEAR)
        field = self._scatterers(self.elevation(index))
        field *= amp[:, :, None]
        rf = cv2.sepFilter2D(field, -1, self._kx, self._kz, borderType=cv2.BORDER_REFLECT)
        noise = self._noise[int(rng_for(self.seed, SEED_NOISE, index).integers(len(self._noise)))]
        cv2.add(rf, noise, dst=rf)
        cv2.multiply(rf, rf, dst=rf)
        env2 = cv2.transform(rf, np.ones((1, 2), np.float32))   # I² + Q²
        # incoherent smoothing of the intensity (what a scanner's speckle reduction and display interpolation
        # do): fills the one-pixel null lines that raw Rayleigh speckle shows in a log display
        env2 = cv2.sepFilter2D(env2, -1, self._kx_i, self._kz_i, borderType=cv2.BORDER_REFLECT)
        cv2.max(env2, self._env2_floor, dst=env2)  # type: ignore[call-overload,unused-ignore]  # a scalar works; older stubs lack it
        cv2.log(env2, dst=env2)
        return cv2.convertScaleAbs(env2, alpha=self._log_scale, beta=self._log_offset)

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as an H×W×3 uint8 RGB screen."""
        lay = self.layout
        out = self._screen.copy()
        img = self.render_bmode(index)
        out[lay.img_y:lay.img_y + lay.img_h, lay.img_x:lay.img_x + lay.img_w] = img[:, :, None]
        if self.ui:
            draw_clock(out, lay, index / self.fps)
        return out

    def truth(self, index: int) -> list[LesionTruth]:
        """The lesions cut by frame ``index``'s plane, with their boxes in frame pixels."""
        lay, y = self.layout, self.elevation(index)
        out = []
        for les in self.timeline.lesions_near(y):
            s = les.scale_at(y)
            if s <= 0.02:
                continue
            a, b, t = les.ax * s, les.az * s, les.tilt
            hx = math.hypot(a * math.cos(t), b * math.sin(t)) / lay.mm_per_px
            hz = math.hypot(a * math.sin(t), b * math.cos(t)) / lay.mm_per_px
            cx = lay.img_x + (les.x + lay.width_mm / 2) / lay.mm_per_px
            cy = lay.img_y + les.z / lay.mm_per_px
            out.append(LesionTruth(les.kind, (round(cx - hx), round(cy - hz), round(2 * hx), round(2 * hz)),
                                   (cx, cy), s))
        return out
