"""The phantom's scanner screen: where the B-mode image sits in the frame, and the UI drawn around it.

The screen is what the pipeline's ROI detector has to strip: a black surround, a label bar on top
("SIMULATED - NOT PATIENT DATA" always, the product name where it fits), a settings column, a grey bar, an
orientation dot, depth ticks with the focus marker on the right, and an elapsed-time clock bottom right.
Sizes are in frame pixels (W×H), colours RGB uint8. OpenCV drawing only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import PhantomError

__all__ = ["Layout", "make_layout", "draw_screen", "draw_clock"]


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
        raise PhantomError(f"phantom frame size must be at least 64x64, got {w}x{h}")
    top, bottom = max(10, round(0.075 * h)), max(4, round(0.045 * h))
    img_h = h - top - bottom
    mm_per_px = depth_mm / img_h
    img_w = min(round(probe_mm / mm_per_px), int(0.72 * w))
    return Layout(w, h, (w - img_w) // 2, top, img_w, img_h, mm_per_px, img_w * mm_per_px, depth_mm)


_TEXT = (215, 225, 200)
_ACCENT = (120, 200, 230)


def _font_scale(lay: Layout) -> float:
    return max(0.25, 0.42 * lay.height / 480)


def draw_screen(lay: Layout, focus_mm: float, dynamic_range_db: float, fps: float, gain_db: float) -> np.ndarray:
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


def draw_clock(img: np.ndarray, lay: Layout, t_s: float) -> None:
    """The part of the UI that changes every frame: elapsed time, bottom right."""
    fs = _font_scale(lay) * 0.85
    th = max(1, round(lay.height / 480))
    m, s = divmod(t_s, 60.0)
    text = f"{int(m):02d}:{s:04.1f}"
    x = lay.img_x + lay.img_w + max(3, round(0.008 * lay.width))
    y = lay.height - max(2, round(0.012 * lay.height))
    if x + 10 < lay.width:
        cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, fs, _TEXT, th, cv2.LINE_AA)
