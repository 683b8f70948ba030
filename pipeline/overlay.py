"""Drawing the overlay onto frames (numpy + OpenCV): heatmap blend, probability bars, label, HUD, notice.

Used by the recorder (burned-in video) and by the viewer's worker-side sink, so colormapping and blending of
full frames never happen on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sonolens import RESEARCH_NOTICE

from .cam import heatmap
from .messages import STATE_TEXT, Result

COLORMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO, "turbo": cv2.COLORMAP_TURBO,
             "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT}


@dataclass
class OverlayStyle:
    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    show_roi: bool = True
    show_bars: bool = True
    show_hud: bool = True
    warning: str | None = None  # burned into every frame (e.g. "untrained model"), above the research notice


def blend_heatmap(frame: np.ndarray, cam: np.ndarray, roi: tuple[int, int, int, int], alpha: float = 0.4,
                  colormap: str = "jet") -> np.ndarray:
    """Return an RGB copy of ``frame`` with the heat map of ``cam`` blended into the ROI.

    ``cam``: [h, w] raw CAM of one class (``Result.cam``); it becomes the [0, 1] map at the ROI's size through
    ``cam.heatmap`` — the same function the pytorch-grad-cam parity test checks.
    """
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    x, y, w, h = roi
    heat = heatmap(cam, (h, w))
    heat = cv2.applyColorMap(np.clip(heat * 255.0, 0, 255).astype(np.uint8), COLORMAPS.get(colormap, cv2.COLORMAP_JET))
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    region = out[y : y + h, x : x + w]
    cv2.addWeighted(heat, float(alpha), region, 1.0 - float(alpha), 0.0, dst=region)
    return out


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color=(255, 255, 255)) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def draw_overlay(result: Result, style: OverlayStyle | None = None, hud: dict | None = None) -> np.ndarray:
    """Everything burned into one RGB frame: heatmap, ROI box, probability bars, top label, HUD, notice."""
    style = style or OverlayStyle()
    frame = result.frame
    if style.heatmap and result.cam is not None and result.shows_prediction:
        img = blend_heatmap(frame, result.cam, result.roi, style.alpha, style.colormap)
    else:
        img = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    h, w = img.shape[:2]
    s = max(0.4, min(w, h) / 900.0)
    if style.show_roi:
        x, y, rw, rh = result.roi
        cv2.rectangle(img, (x, y), (x + rw - 1, y + rh - 1), (0, 200, 255), 1)
    line = int(26 * s * 1.6)
    if result.state in STATE_TEXT:  # no prediction: say why instead of bars and heat map
        text = STATE_TEXT[result.state].replace("\u2014", "-")  # Hershey fonts are ASCII
        _text(img, text, (10, 10 + line), 0.7 * s * 1.6, (255, 200, 80))
    elif style.show_bars and result.probs.size:
        bar_w = int(160 * s * 1.6)
        for i, (name, p) in enumerate(zip(result.class_names, result.probs)):
            y0 = 10 + i * line
            top = i == result.top_class
            cv2.rectangle(img, (10, y0), (10 + bar_w, y0 + line - 6), (40, 40, 40), -1)
            cv2.rectangle(img, (10, y0), (10 + int(bar_w * float(p)), y0 + line - 6),
                          (255, 80, 80) if top else (120, 160, 255), -1)
            _text(img, f"{name} {100 * float(p):5.1f}%", (14 + bar_w, y0 + line - 10), 0.5 * s * 1.6)
        y_label = 10 + len(result.class_names) * line + line
        _text(img, f"{result.label} ({100 * float(result.probs[result.top_class]):.0f}%)", (10, y_label), 0.7 * s * 1.6,
              (255, 230, 120))
    if style.show_hud and (hud or result.ood_score is not None):
        parts = [f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in (hud or {}).items()]
        if result.ood_score is not None:
            parts.append(f"ood score {result.ood_score:.2f}")
        _text(img, "  ".join(parts), (10, h - 12 - line), 0.45 * s * 1.6, (180, 255, 180))
    if style.warning:
        _text(img, style.warning, (10, h - 14 - 2 * line), 0.45 * s * 1.6, (255, 120, 120))
    _text(img, RESEARCH_NOTICE, (10, h - 10), 0.45 * s * 1.6, (255, 200, 200))
    return img
