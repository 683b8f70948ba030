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

Scanner differences (off unless an ``AugmentConfig`` probability is set; ``SCANNER_AUGMENT`` switches them all on,
for training that has to hold up on other hospitals' machines): depth/zoom setting (``ZoomDepth``), resolution loss
(``ResolutionLoss``) and an anisotropic point-spread blur (``AnisotropicBlur``), a smooth random TGC curve
(``TimeGainCurve``), dynamic range / log compression (``DynamicRange``), speckle of varying grain
(``VariableSpeckle``), JPEG/video-codec artefacts (``JpegArtefacts``) and burned-in calipers and text on every class
(``BurnedInMarks``), a colour-Doppler box (``DopplerBox``) and the black frame of a screen capture or export
(``Letterbox``).

Geometry uses torchvision transforms v2 (antialiased bilinear resampling; close to INTER_AREA when shrinking —
the remaining difference is far below the augmentation's own variation).
"""

from __future__ import annotations

import math
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
    # Scanner differences (another hospital's machine and settings); every probability 0 = off, the default, so the
    # recipes of record are unchanged. SCANNER_AUGMENT below switches them all on. See the module docstring.
    zoom_p: float = 0.0
    zoom_range: tuple[float, float] = (0.75, 1.3)  # < 1: deeper setting (image shrinks, black below); > 1: zoom in
    resolution_p: float = 0.0
    resolution_factor: tuple[float, float] = (1.0, 3.0)  # down-sample by this, back up: a coarser probe / scan line
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # px; lateral and axial drawn separately (anisotropic PSF)
    speckle_grain: tuple[int, int] = (2, 2)  # px; (1, 4) varies the speckle size with the probe frequency
    tgc_p: float = 0.0
    tgc_strength: float = 0.5  # a smooth random gain curve over depth, 1 ± strength/2 at 4 control points
    dynamic_range_p: float = 0.0
    dynamic_range: tuple[float, float] = (0.5, 2.0)  # log-compression change: exponent of a log-curve remap
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (20, 90)  # JPEG / video-codec blocking and ringing
    marks_p: float = 0.0  # burned-in calipers, dotted lines and text at random places, on every class alike
    letterbox_p: float = 0.0  # the image shrunk into a black frame, as screen captures and video exports make
    letterbox_scale: tuple[float, float] = (0.6, 0.95)  # the content's side against the frame's, per axis
    doppler_p: float = 0.0  # a colour-Doppler box (outline + flow blobs, as grey) at a random place


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
    ops = [
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
    ]
    scanner = scanner_ops(cfg)
    if scanner:  # only when switched on, so the default chain (and its random stream) is exactly as before
        if scanner[5] is not None:  # variable speckle grain replaces the fixed-grain speckle
            ops = [op for op in ops if type(op) is not SpeckleNoise]
        k = next(i for i, op in enumerate(ops) if isinstance(op, Clamp01))
        # zoom/depth, resolution, blur right after the uint8 → float step; TGC, dynamic range, speckle grain, codec,
        # burned-in marks after the intensity jitter, before the final clamp
        ops = [*ops[:4], *scanner[:3], *ops[4:k], *scanner[3:], *ops[k:]]
        ops = [op for op in ops if op is not None]
    return v2.Compose(ops)


# --------------------------------------------------------------------------------------------------------
# Scanner-difference augmentations (another hospital's machine): all act on float [C, H, W] images in [0, 1]
# --------------------------------------------------------------------------------------------------------
class ZoomDepth(nn.Module):
    """A different depth / zoom setting: scale ``s`` log-uniform in ``zoom_range``. ``s > 1`` zooms in on the
    top-centre (the probe sits at the top: the skin line stays); ``s < 1`` shrinks the image into the top-centre of
    a black frame (a deeper setting: more black around and below the scan)."""

    def __init__(self, zoom_range: tuple[float, float], p: float):
        super().__init__()
        self.lo, self.hi, self.p = float(np.log(zoom_range[0])), float(np.log(zoom_range[1])), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        s = float(torch.empty(()).uniform_(self.lo, self.hi).exp())
        h, w = x.shape[-2:]
        if s >= 1:
            ch, cw = max(1, round(h / s)), max(1, round(w / s))
            x0 = (w - cw) // 2
            crop = x[..., :ch, x0:x0 + cw]
            return nn.functional.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False,
                                             antialias=True)[0]
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        small = nn.functional.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False,
                                          antialias=True)[0]
        out = torch.zeros_like(x)
        x0 = (w - nw) // 2
        out[..., :nh, x0:x0 + nw] = small
        return out


class ResolutionLoss(nn.Module):
    """Down-sample by a factor in ``factor_range`` (area), then back up (bilinear): a coarser transducer, fewer scan
    lines, or a low-resolution capture."""

    def __init__(self, factor_range: tuple[float, float], p: float):
        super().__init__()
        self.lo, self.hi, self.p = float(factor_range[0]), float(factor_range[1]), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        f = float(torch.empty(()).uniform_(self.lo, self.hi))
        h, w = x.shape[-2:]
        small = nn.functional.interpolate(x[None], size=(max(2, round(h / f)), max(2, round(w / f))), mode="area")
        return nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]


class AnisotropicBlur(nn.Module):
    """Gaussian blur with separate lateral (x) and axial (y) sigmas: another point-spread function."""

    def __init__(self, sigma_range: tuple[float, float], p: float):
        super().__init__()
        self.lo, self.hi, self.p = float(sigma_range[0]), float(sigma_range[1]), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        import cv2

        sx, sy = (float(v) for v in torch.empty(2).uniform_(self.lo, self.hi))
        # the channels are one grey image replicated: blur it once (OpenCV, ~1 ms), then replicate again
        y = cv2.GaussianBlur(np.ascontiguousarray(x[0].numpy(), np.float32), (0, 0), sigmaX=sx, sigmaY=sy,
                             borderType=cv2.BORDER_REPLICATE)
        return torch.from_numpy(y).unsqueeze(0).expand_as(x).contiguous()


class TimeGainCurve(nn.Module):
    """A smooth random gain curve over depth (4 control points, each 1 ± strength/2, cubic-ish interpolation):
    TGC sliders set differently; ``DepthGain`` is its linear special case."""

    def __init__(self, strength: float, p: float, points: int = 4):
        super().__init__()
        self.strength, self.p, self.points = strength, p, points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        h = x.shape[-2]
        ctrl = 1 + self.strength * (torch.rand(self.points) - 0.5)
        curve = nn.functional.interpolate(ctrl.view(1, 1, -1), size=h, mode="linear", align_corners=True).view(-1)
        curve = nn.functional.avg_pool1d(nn.functional.pad(curve.view(1, 1, -1), (4, 4), mode="replicate"), 9,
                                         stride=1).view(-1)
        return x * curve.view(-1, 1)


class DynamicRange(nn.Module):
    """A different log compression / dynamic range: ``y = log1p(a·x) / log1p(a)`` (a > 0 brightens the mid-tones
    like a narrower dynamic range) or its inverse, with ``a = 10**u - 1`` for ``u`` between the logs of
    ``range``; plus a random black level (0–5 %)."""

    def __init__(self, dr_range: tuple[float, float], p: float):
        super().__init__()
        self.lo, self.hi, self.p = float(np.log(dr_range[0])), float(np.log(dr_range[1])), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        g = float(torch.empty(()).uniform_(self.lo, self.hi).exp())  # > 1: compress, < 1: expand
        a = 10 ** abs(math.log(g)) * 4 - 1 + 1e-3
        xc = x.clamp(0, 1)
        y = torch.log1p(a * xc) / math.log1p(a) if g >= 1 else torch.expm1(xc * math.log1p(a)) / a
        black = float(torch.empty(()).uniform_(0.0, 0.05))
        return ((y - black) / (1 - black)).clamp(0, 1)


class VariableSpeckle(nn.Module):
    """``SpeckleNoise`` whose grain (px) is drawn from ``grain_range`` per image: the speckle size follows the probe
    frequency and the display resolution."""

    def __init__(self, looks: tuple[float, float], p: float, grain_range: tuple[int, int]):
        super().__init__()
        self.looks, self.p, self.grain_range = looks, p, (int(grain_range[0]), int(grain_range[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        grain = int(torch.randint(self.grain_range[0], self.grain_range[1] + 1, ()))
        return SpeckleNoise(self.looks, 1.0, grain)(x)


class JpegArtefacts(nn.Module):
    """JPEG at a random quality (OpenCV): the 8×8 blocking and ringing of a compressed capture or video stream."""

    def __init__(self, quality: tuple[int, int], p: float):
        super().__init__()
        self.quality, self.p = (int(quality[0]), int(quality[1])), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import cv2

        if torch.rand(()) >= self.p:
            return x
        q = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        gray = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            return x
        dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        y = torch.from_numpy(dec).float().div(255.0)
        return y.unsqueeze(0).expand_as(x).contiguous()


class BurnedInMarks(nn.Module):
    """Calipers ("+" or "x" pairs joined by a dotted line), and short text, drawn at random places in a bright grey,
    on every class alike — so a caliper stops being evidence for "lesion" (BUSI and BUS-UCLM carry such marks far
    more often on lesion images than on normal ones)."""

    _TEXT = ("RT", "LT", "L 1.2cm", "D 0.8cm", "BREAST", "10 o'clock", "AREA", "2D", "GAIN 52", "4.0cm")

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import cv2

        if torch.rand(()) >= self.p:
            return x
        h, w = x.shape[-2:]
        img = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy().copy()
        val = int(torch.randint(170, 256, ()))
        rnd = torch.rand(8).tolist()
        if rnd[0] < 0.7:  # a caliper pair with its dotted line
            p1 = (int(rnd[1] * w), int(rnd[2] * h))
            p2 = (int(min(w - 1, max(0, p1[0] + (rnd[3] - 0.5) * w * 0.6))),
                  int(min(h - 1, max(0, p1[1] + (rnd[4] - 0.5) * h * 0.4))))
            marker = cv2.MARKER_CROSS if rnd[5] < 0.5 else cv2.MARKER_TILTED_CROSS
            size = max(5, int(0.05 * min(h, w)))
            for pt in (p1, p2):
                cv2.drawMarker(img, pt, val, marker, markerSize=size, thickness=1)
            for t in np.linspace(0.1, 0.9, 8):
                cv2.circle(img, (int(p1[0] + (p2[0] - p1[0]) * t), int(p1[1] + (p2[1] - p1[1]) * t)), 0, val, -1)
        if rnd[6] < 0.6:  # a word of text
            text = self._TEXT[int(rnd[7] * len(self._TEXT)) % len(self._TEXT)]
            org = (int(torch.randint(0, max(1, w - 40), ())), int(torch.randint(10, max(11, h), ())))
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, max(0.25, 0.0016 * min(h, w)), val, 1, cv2.LINE_AA)
        y = torch.from_numpy(img).float().div(255.0)
        return y.unsqueeze(0).expand_as(x).contiguous()


class DopplerBox(nn.Module):
    """A colour-Doppler box as a grey model sees it: a thin bright outline and, inside, a few smooth blobs of
    mid-to-bright grey replacing the B-mode (colour flow converted to grey). Drawn on every class alike."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import cv2

        if torch.rand(()) >= self.p:
            return x
        h, w = x.shape[-2:]
        img = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy().copy()
        r = torch.rand(4).tolist()
        bw, bh = int(w * (0.25 + 0.25 * r[0])), int(h * (0.2 + 0.25 * r[1]))
        x0, y0 = int(r[2] * (w - bw)), int(r[3] * (h - bh))
        flow = np.zeros((h, w), np.float32)
        for _ in range(int(torch.randint(1, 5, ()))):
            c = (x0 + int(torch.rand(()) * bw), y0 + int(torch.rand(()) * bh))
            ra, rb = (torch.rand(2) + 0.3).tolist()
            axes = (max(2, int(bw * 0.15 * ra)), max(2, int(bh * 0.1 * rb)))
            cv2.ellipse(flow, c, axes, float(torch.rand(()) * 180), 0, 360, float(torch.randint(90, 230, ())), -1)
        flow = cv2.GaussianBlur(flow, (0, 0), 1.5)
        inside = np.zeros_like(flow, bool)
        inside[y0:y0 + bh, x0:x0 + bw] = True
        img = np.where(inside & (flow > 20), flow.clip(0, 255).astype(np.uint8), img)
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), int(torch.randint(150, 256, ())), 1)
        y = torch.from_numpy(img).float().div(255.0)
        return y.unsqueeze(0).expand_as(x).contiguous()


class Letterbox(nn.Module):
    """The whole image shrunk into a black frame of the same size at a random place (each axis by its own factor,
    so the aspect changes too): the borders a screen capture or a video export adds around the scan."""

    def __init__(self, scale: tuple[float, float], p: float):
        super().__init__()
        self.scale, self.p = (float(scale[0]), float(scale[1])), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        h, w = x.shape[-2:]
        lo, hi = self.scale
        sh, sw = (lo + (hi - lo) * torch.rand(2)).tolist()
        nh, nw = max(8, int(h * sh)), max(8, int(w * sw))
        small = nn.functional.interpolate(x.unsqueeze(0), size=(nh, nw), mode="bilinear", antialias=True,
                                          align_corners=False)[0]
        top, left = int(torch.randint(0, h - nh + 1, ())), int(torch.randint(0, w - nw + 1, ()))
        out = torch.zeros_like(x)
        out[:, top:top + nh, left:left + nw] = small
        return out


def scanner_ops(cfg: AugmentConfig) -> list[nn.Module | None]:
    """The scanner-difference modules ``cfg`` switches on, in chain order ([zoom, resolution, blur, TGC, dynamic
    range, speckle grain, JPEG, marks, Doppler box, letterbox], ``None`` where off); an empty list when all are off."""
    ops: list[nn.Module | None] = [
        ZoomDepth(cfg.zoom_range, cfg.zoom_p) if cfg.zoom_p > 0 else None,
        ResolutionLoss(cfg.resolution_factor, cfg.resolution_p) if cfg.resolution_p > 0 else None,
        AnisotropicBlur(cfg.blur_sigma, cfg.blur_p) if cfg.blur_p > 0 else None,
        TimeGainCurve(cfg.tgc_strength, cfg.tgc_p) if cfg.tgc_p > 0 else None,
        DynamicRange(cfg.dynamic_range, cfg.dynamic_range_p) if cfg.dynamic_range_p > 0 else None,
        (VariableSpeckle(cfg.speckle_looks, cfg.speckle_p, cfg.speckle_grain)
         if cfg.speckle_grain != (2, 2) and cfg.speckle_p > 0 else None),
        JpegArtefacts(cfg.jpeg_quality, cfg.jpeg_p) if cfg.jpeg_p > 0 else None,
        BurnedInMarks(cfg.marks_p) if cfg.marks_p > 0 else None,
        DopplerBox(cfg.doppler_p) if cfg.doppler_p > 0 else None,
        Letterbox(cfg.letterbox_scale, cfg.letterbox_p) if cfg.letterbox_p > 0 else None,
    ]
    return ops if any(op is not None for op in ops) else []


# Strong, scanner-varied augmentation for the cross-hospital recipe (configs busi_uclm_*.yaml use these values).
SCANNER_AUGMENT: dict[str, object] = {
    "crop_scale": (0.5, 1.0), "rotate_deg": 12.0, "brightness": 0.3, "contrast": 0.3, "gamma": (0.7, 1.4),
    "zoom_p": 0.4, "resolution_p": 0.3, "blur_p": 0.3, "speckle_grain": (1, 4), "tgc_p": 0.4,
    "dynamic_range_p": 0.4, "jpeg_p": 0.3, "marks_p": 0.3,
}
