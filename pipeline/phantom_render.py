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
   marker, grey bar, clock), the part the pipeline's ROI detector has to strip.

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

from .errors import SourceError
from .phantom_scene import _SEED_SPECKLE, KINDS, Lesion, Tissue, Timeline, paint_lesion, rng_for

__all__ = ["Phantom", "LesionTruth", "Layout", "check_kind", "KINDS"]

_LN10_20 = math.log(10.0) / 20.0
_SEED_NOISE = 0x0015E


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a phantom kind, else raise ``SourceError`` listing the valid ones."""
    if kind not in KINDS:
        raise SourceError(f"unknown phantom kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return kind


@dataclass(frozen=True)
class Layout:
    """Where the B-mode image sits in the frame, and its physical scale."""

    width: int
    height: int
    img_x: int
    img_y: int
    img_w: int
    img_h: int
    mm_per_px: float
    width_mm: float
    depth_mm: float

    @property
    def image_rect(self) -> tuple[int, int, int, int]:
        return self.img_x, self.img_y, self.img_w, self.img_h


def make_layout(size: tuple[int, int], depth_mm: float = 40.0, probe_mm: float = 38.0) -> Layout:
    """Scanner-like screen: a bar of text on top, the image centred, room for depth ticks on the right."""
    w, h = int(size[0]), int(size[1])
    if w < 64 or h < 64:
        raise SourceError(f"phantom frame size must be at least 64x64, got {w}x{h}")
    top, bottom = max(10, round(0.075 * h)), max(4, round(0.045 * h))
    img_h = h - top - bottom
    mm_per_px = depth_mm / img_h
    img_w = min(round(probe_mm / mm_per_px), int(0.72 * w))
    return Layout(w, h, (w - img_w) // 2, top, img_w, img_h, mm_per_px, img_w * mm_per_px, depth_mm)


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
    """

    SLICE_MM = 0.5              # elevational spacing of independent speckle slices
    AXIAL_SIGMA_MM = 0.16       # pulse envelope (≈0.38 mm FWHM)
    LATERAL_SIGMA_MM = 0.30     # beam width (≈0.7 mm FWHM)
    SMOOTH_SIGMA_MM = 0.08      # intensity smoothing after detection
    FOCUS_MM = 18.0
    NOISE_DB_AT_BOTTOM = -30.0  # electronic noise after TGC, re gland echo
    TOP_DB = 18.0               # echo level shown white (gland speckle ≈ grey 150)

    def __init__(self, kind: str, seed: int = 0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
                 seconds: float | None = None, *, depth_mm: float = 40.0, probe_mm: float = 38.0,
                 dynamic_range_db: float = 50.0, gain_db: float = 0.0, ui: bool = True) -> None:
        self.kind = check_kind(kind)
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise SourceError(f"phantom fps must be a positive number, got {fps!r}")
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise SourceError(f"phantom seconds must be positive (or None for endless), got {seconds!r}")
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
        nrng = rng_for(self.seed, _SEED_NOISE)
        self._noise = [(nrng.standard_normal((ih, iw, 2), dtype=np.float32) * noise_amp[:, None, None]
                        .astype(np.float32)) for _ in range(6)]
        self._slices: OrderedDict[int, np.ndarray] = OrderedDict()
        self._screen = (_draw_screen(lay, self.FOCUS_MM, dynamic_range_db, self.fps, gain_db) if ui
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
            rng = rng_for(self.seed, _SEED_SPECKLE, j)
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
        noise = self._noise[int(rng_for(self.seed, _SEED_NOISE, index).integers(len(self._noise)))]
        cv2.add(rf, noise, dst=rf)
        cv2.multiply(rf, rf, dst=rf)
        env2 = cv2.transform(rf, np.ones((1, 2), np.float32))   # I² + Q²
        # incoherent smoothing of the intensity (what a scanner's speckle reduction and display interpolation
        # do): fills the one-pixel null lines that raw Rayleigh speckle shows in a log display
        env2 = cv2.sepFilter2D(env2, -1, self._kx_i, self._kz_i, borderType=cv2.BORDER_REFLECT)
        cv2.max(env2, self._env2_floor, dst=env2)
        cv2.log(env2, dst=env2)
        return cv2.convertScaleAbs(env2, alpha=self._log_scale, beta=self._log_offset)

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as an H×W×3 uint8 RGB screen."""
        lay = self.layout
        out = self._screen.copy()
        img = self.render_bmode(index)
        out[lay.img_y:lay.img_y + lay.img_h, lay.img_x:lay.img_x + lay.img_w] = img[:, :, None]
        if self.ui:
            _draw_clock(out, lay, index / self.fps)
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


# ---------------------------------------------------------------------------------------------------------
# Scanner screen
# ---------------------------------------------------------------------------------------------------------
_TEXT = (215, 225, 200)
_ACCENT = (120, 200, 230)


def _font_scale(lay: Layout) -> float:
    return max(0.25, 0.42 * lay.height / 480)


def _draw_screen(lay: Layout, focus_mm: float, dynamic_range_db: float, fps: float, gain_db: float) -> np.ndarray:
    """The static part of the screen: black, label, settings, depth ticks, focus marker, grey bar."""
    img = np.zeros((lay.height, lay.width, 3), np.uint8)
    fs = _font_scale(lay)
    th = max(1, round(lay.height / 480))
    font = cv2.FONT_HERSHEY_SIMPLEX
    ybase = max(8, int(lay.img_y * 0.62))
    margin = max(2, round(0.015 * lay.width))
    label = "SIMULATED - NOT PATIENT DATA"    # always shown; the product label only where it fits
    (tw, _), _ = cv2.getTextSize(label, font, fs, th)
    cv2.putText(img, label, (lay.width - tw - margin, ybase), font, fs, _ACCENT, th, cv2.LINE_AA)
    name = "SONOLENS PHANTOM  L12-5  BREAST"
    if cv2.getTextSize(name, font, fs, th)[0][0] + tw + 3 * margin < lay.width:
        cv2.putText(img, name, (margin, ybase), font, fs, _TEXT, th, cv2.LINE_AA)
    # settings column left of the image, where there is room
    x_left = margin
    settings = ("10 MHz", f"G {50 + gain_db:.0f}", f"DR {dynamic_range_db:.0f}", f"D {lay.depth_mm / 10:.1f} cm",
                f"FR {fps:.0f}")
    for k, line in enumerate(settings):
        y = lay.img_y + round((k + 1) * 18 * lay.height / 480)
        fits = x_left + cv2.getTextSize(line, font, fs * 0.85, th)[0][0] < lay.img_x - margin
        if fits and y < lay.img_y + lay.img_h // 2:
            cv2.putText(img, line, (x_left, y), font, fs * 0.85, _TEXT, th, cv2.LINE_AA)
    # grey bar
    bar_x = max(0, lay.img_x - round(0.03 * lay.width))
    bar_w = max(2, round(0.012 * lay.width))
    bar_h = lay.img_h // 3
    bar_y = lay.img_y + lay.img_h - bar_h
    if bar_x + bar_w < lay.img_x - 2:
        ramp = np.linspace(255, 0, bar_h).astype(np.uint8)
        img[bar_y:bar_y + bar_h, bar_x:bar_x + bar_w] = ramp[:, None, None]
    # orientation marker
    r = max(2, round(0.006 * lay.width))
    cv2.circle(img, (lay.img_x + 3 * r, lay.img_y - 2 * r), r, _ACCENT, -1, cv2.LINE_AA)
    # depth scale: ticks every 5 mm, labels every 10 mm
    x0 = lay.img_x + lay.img_w + max(3, round(0.008 * lay.width))
    for mm in range(0, int(lay.depth_mm) + 1, 5):
        y = lay.img_y + round(mm / lay.mm_per_px)
        y = min(y, lay.img_y + lay.img_h - 1)
        long = mm % 10 == 0
        cv2.line(img, (x0, y), (x0 + (round(0.014 * lay.width) if long else round(0.007 * lay.width)), y),
                 _TEXT, th)
        if long and mm > 0:
            cv2.putText(img, str(mm // 10), (x0 + round(0.02 * lay.width), y + round(4 * fs / 0.42)), font,
                        fs * 0.85, _TEXT, th, cv2.LINE_AA)
    # focus marker: a small triangle pointing at the focal depth
    fy = lay.img_y + round(focus_mm / lay.mm_per_px)
    s = max(3, round(0.008 * lay.width))
    tri = np.array([[x0 - 1, fy], [x0 + s, fy - s], [x0 + s, fy + s]], np.int32) + [round(0.045 * lay.width), 0]
    cv2.fillConvexPoly(img, tri, _ACCENT, cv2.LINE_AA)
    return img


def _draw_clock(img: np.ndarray, lay: Layout, t_s: float) -> None:
    """The part of the UI that changes every frame: elapsed time, bottom right."""
    fs = _font_scale(lay) * 0.85
    th = max(1, round(lay.height / 480))
    m, s = divmod(t_s, 60.0)
    text = f"{int(m):02d}:{s:04.1f}"
    x = lay.img_x + lay.img_w + max(3, round(0.008 * lay.width))
    y = lay.height - max(2, round(0.012 * lay.height))
    if x + 10 < lay.width:
        cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, fs, _TEXT, th, cv2.LINE_AA)
