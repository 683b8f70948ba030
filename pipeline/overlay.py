"""Drawing the overlay onto frames (numpy + OpenCV): heatmap blend, probability bars, label, HUD, notice.

Used by the recorder (burned-in video) and by the viewer's worker-side sink, so colormapping and blending of
full frames never happen on the GUI thread.

Where the text goes: a scanner's screen carries its own text around the ultrasound image (depth, gain, TIS/MI,
the clock), and the ultrasound image itself (``Result.roi``) must stay visible. ``draw_overlay`` therefore puts
its two blocks of text — the prediction (bars and label, or the state text) and the information lines (HUD,
warning, research notice) — where the frame shows *nothing*: an empty place outside the ROI, the prediction
nearest a top corner and the information nearest a bottom corner, trying a wide layout, a narrow one (text above
its bar, long lines wrapped) and smaller text. When a block fits nowhere, the image is scaled down beside a
panel that holds the text, inside the same frame size: the text never covers the scanner's text or the image,
and a recording keeps the source's size. A place is kept from frame to frame while it stays empty, so the text
does not jump around.

Class colours (``class_rgb``) are the one definition the viewer's bars and the burned-in bars share.
"""

from __future__ import annotations

import colorsys
import functools
import re
import textwrap
from dataclasses import dataclass, field

import cv2
import numpy as np

from sonolens import RESEARCH_NOTICE

from .cam import heatmap
from .messages import NO_IMAGE_TEXT, STATE_TEXT, Result, state_text

COLORMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO, "turbo": cv2.COLORMAP_TURBO,
             "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT}

CLASS_COLORS = {"normal": "#3fb950", "benign": "#e3b341", "malignant": "#f85149", "pneumonia": "#f85149"}
CLASS_PALETTE = ("#58a6ff", "#d2a8ff", "#3fb950", "#e3b341", "#f85149", "#39c5e0")  # other classes, by index
DIM_FACTOR = 1.7  # a bar that is not the top class: HSV value divided by this (Qt's ``QColor.darker(170)``)


def class_rgb(name: str, index: int, dim: bool = False) -> tuple[int, int, int]:
    """(r, g, b) of class ``name`` (``index`` in the model's class order); ``dim`` gives the shade of a bar that is
    not the top class. The viewer's bars and the burned-in recording both use this."""
    hexv = CLASS_COLORS.get(name.lower(), CLASS_PALETTE[index % len(CLASS_PALETTE)])
    r, g, b = (int(hexv[i : i + 2], 16) for i in (1, 3, 5))
    if dim:
        h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        r, g, b = (int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v / DIM_FACTOR))
    return r, g, b


@dataclass
class OverlayStyle:
    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    show_roi: bool = True
    show_bars: bool = True  # False (blinded study condition): nothing of the model's answer, state and score included
    show_hud: bool = True
    warning: str | None = None  # burned into every frame (e.g. "untrained model"), above the research notice
    ood_threshold: float | None = None  # shown beside the score ("ood score 35.2 / 39.7"): a score means little alone
    gate_off: bool = False  # the model has a gate and it is switched off (--no-gate): said on every frame
    places: dict = field(default_factory=dict, repr=False, compare=False)  # text places kept across frames


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


# -- blocks of text ----------------------------------------------------------------------------------------------
_PAD = 4  # pixels around a block (and between lines)
_CONTENT_DIFF = 24  # grey levels from the background that count as content (scanner text, the image)
_SHRINK = (1.0, 0.8, 0.65, 0.5)  # text scales tried, largest first
_NARROW_CHARS = 14  # line length of the narrow layout
_MIN_TEXT = 0.3  # the smallest legible Hershey text scale (about 7 px high): a margin that needs smaller is no fit
_PANEL_MAX = 0.3  # a side panel takes at most this fraction of the frame's width
_PANEL_BG = (16, 16, 16)
_WHITE = (255, 255, 255)


@functools.lru_cache(maxsize=4096)
def _text_size(text: str, scale: float) -> tuple[int, int, int]:
    """(width, height above the baseline, below it) of ``text`` as ``_text`` draws it (outline included)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 3)
    return tw + 2, th + 1, base


class _Block:
    """Rows of text and bars, stacked, in one of two layouts: ``wide`` (a bar with its text beside it, lines as they
    are) or ``narrow`` (text above its bar, long lines wrapped), for a margin that is tall rather than wide.

    Rows: ("text", text, scale, color) or ("bar", text, scale, color, fraction). ``reserve`` keeps room for text
    the block may show on other frames, and widths are rounded up, so a changing number or state does not change
    the block's size (nor its place)."""

    def __init__(self, s: float) -> None:
        self.s = s  # the frame's text scale
        self.rows: list[tuple] = []
        self.reserve: list[tuple[str, float, bool]] = []  # (text, scale, beside a bar) the block has room for
        self.alts: list[_Block] = []  # what the block shows on other frames: their room is kept too

    def text(self, text: str, scale: float, color) -> None:
        self.rows.append(("text", text, scale, color))

    def bar(self, text: str, scale: float, color, fraction: float) -> None:
        self.rows.append(("bar", text, scale, color, fraction))

    # layout: a list of ("text", text, scale, color) / ("bar", text, scale, color, fraction, bar_w) /
    # ("meter", color, fraction, height) rows, with the block's inner width
    def layout(self, narrow: bool, k: float) -> tuple[list[tuple], int]:
        rows: list[tuple] = []
        for r in self.rows:
            if r[0] == "bar" and not narrow:
                rows.append(("bar", r[1], r[2] * k, r[3], r[4], int(160 * self.s * k)))
            elif r[0] == "bar":
                rows.append(("text", r[1], r[2] * k, _WHITE))
                rows.append(("meter", r[3], r[4], max(3, int(8 * self.s * k))))
            elif narrow and len(r[1]) > _NARROW_CHARS:
                rows += [("text", ln, r[2] * k, r[3]) for ln in textwrap.wrap(r[1], _NARROW_CHARS)]
            else:
                rows.append(("text", r[1], r[2] * k, r[3]))
        width = 0
        for r in rows:
            if r[0] == "text":
                width = max(width, _text_size(r[1], r[2])[0])
            elif r[0] == "bar":
                width = max(width, r[5] + _PAD + _text_size(r[1], r[2])[0])
        for text, scale, beside_bar in self.reserve:
            if narrow:
                width = max(width, max((_text_size(t, scale * k)[0] for t in textwrap.wrap(text, _NARROW_CHARS)),
                                       default=0))
            else:
                width = max(width, _text_size(text, scale * k)[0] + (int(160 * self.s * k) + _PAD if beside_bar
                                                                     else 0))
        return rows, -(-width // 16) * 16

    @staticmethod
    def _row_h(r: tuple, k: float, s: float) -> int:
        if r[0] == "meter":
            return r[3]
        _, above, below = _text_size(r[1], r[2])
        return max(above + below, int(26 * s * k) - 6) if r[0] == "bar" else above + below

    def smallest_text(self, k: float) -> float:
        """The smallest text scale of the block (and of what it keeps room for) at scale ``k``."""
        return min([r[2] * k for r in self.rows] + [a.smallest_text(k) for a in self.alts], default=1.0)

    def size(self, narrow: bool, k: float) -> tuple[int, int]:
        """(width, height) in pixels of a layout at text scale ``k`` (1 = the frame's own scale), padding included."""
        rows, width = self.layout(narrow, k)
        w, h = width + 2 * _PAD, sum(self._row_h(r, k, self.s) + _PAD for r in rows) + _PAD
        for alt in self.alts:
            aw, ah = alt.size(narrow, k)
            w, h = max(w, aw), max(h, ah)
        return w, h

    def draw(self, img: np.ndarray, x: int, y: int, narrow: bool, k: float) -> None:
        rows, width = self.layout(narrow, k)
        cy = y + _PAD
        for r in rows:
            row = self._row_h(r, k, self.s)
            if r[0] == "meter":
                cv2.rectangle(img, (x + _PAD, cy), (x + _PAD + width, cy + row - 1), (40, 40, 40), -1)
                if r[2] > 0:
                    cv2.rectangle(img, (x + _PAD, cy), (x + _PAD + int(width * r[2]), cy + row - 1), r[1], -1)
            elif r[0] == "bar":
                _, above, below = _text_size(r[1], r[2])
                bw = r[5]
                cv2.rectangle(img, (x + _PAD, cy), (x + _PAD + bw, cy + row - 1), (40, 40, 40), -1)
                if r[4] > 0:
                    cv2.rectangle(img, (x + _PAD, cy), (x + _PAD + int(bw * r[4]), cy + row - 1), r[3], -1)
                _text(img, r[1], (x + 2 * _PAD + bw, cy + (row - above - below) // 2 + above), r[2])
            else:
                _, above, _ = _text_size(r[1], r[2])
                _text(img, r[1], (x + _PAD, cy + above), r[2], r[3])
            cy += row + _PAD


def _prediction_block(result: Result, style: OverlayStyle, s: float) -> _Block | None:
    """Bars and label of a shown prediction, or the state text. Either keeps room for all the others (the bars at
    any probability, every state text with a reason), so the block has the same size, and place, on every frame."""
    if not style.show_bars or not result.probs.size:
        return None
    names = result.class_names
    bars = _Block(s)
    top = result.top_class
    for i, (name, p) in enumerate(zip(names, result.probs)):
        bars.bar(f"{name} {100 * float(p):5.1f}%", 0.5 * s, class_rgb(name, i, dim=i != top), float(p))
    bars.text(f"{result.label} ({100 * float(result.probs[top]):.0f}%)", 0.7 * s, class_rgb(result.label, top))
    bars.reserve = [(f"{n} 100.0%", 0.5 * s, True) for n in names] + [(f"{n} (100%)", 0.7 * s, False) for n in names]
    titles = [t.replace("\u2014", "-") for t in [*STATE_TEXT.values(), *(t for t, _ in NO_IMAGE_TEXT.values())]]
    whys = [w for _, w in NO_IMAGE_TEXT.values()]  # Hershey fonts are ASCII: no em dash above
    room = _Block(s)  # the tallest state text
    room.text(max(titles, key=len), 0.7 * s, _WHITE)
    room.text(max(whys, key=len), 0.5 * s, _WHITE)
    room.reserve = [(t, 0.7 * s, False) for t in titles] + [(w, 0.5 * s, False) for w in whys]
    if result.state not in STATE_TEXT:
        bars.alts = [room]
        return bars
    state = _Block(s)  # no prediction: say why instead of bars and heat map
    title, why = state_text(result.state, result.no_image)
    state.text(title.replace("\u2014", "-"), 0.7 * s, (255, 200, 80))
    if why:
        state.text(why, 0.5 * s, (255, 200, 80))
    state.alts = [bars, room]
    return state


def _info_block(result: Result, style: OverlayStyle, hud: dict | None, s: float) -> _Block:
    b = _Block(s)
    score = result.ood_score if style.show_bars else None
    if style.show_hud and (hud or score is not None or style.gate_off):
        parts = [f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in (hud or {}).items()]
        if style.gate_off and score is None:
            parts.append("gate off")
        if score is not None:
            limit = f" / {style.ood_threshold:.2f}" if style.ood_threshold is not None else ""
            parts.append(f"ood score {score:.2f}{limit}" + (" (gate off)" if style.gate_off else ""))
        line = "  ".join(parts)
        b.text(line, 0.45 * s, (180, 255, 180))
        b.reserve = [(re.sub(r"\d+", lambda m: "8" * (len(m.group()) + 1), line), 0.45 * s, False)]  # a digit more
    if style.warning:
        b.text(style.warning, 0.45 * s, (255, 120, 120))
    b.text(RESEARCH_NOTICE.replace("\u2014", "-"), 0.45 * s, (255, 200, 200))
    return b


# -- where the blocks go ------------------------------------------------------------------------------------------
_LAYOUTS = [(narrow, k) for k in _SHRINK for narrow in (False, True)]  # tried in this order


class _Canvas:
    """What is already on the frame — content: anything unlike the background, and the ROI (the ultrasound image)
    always — as an integral image, so the content under any rectangle costs four lookups."""

    def __init__(self, frame: np.ndarray, roi: tuple[int, int, int, int]) -> None:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        self.h, self.w = grey.shape
        x, y, rw, rh = roi
        outside = np.ones(grey.shape, bool)
        outside[y : y + rh, x : x + rw] = False
        sample = grey[::4, ::4][outside[::4, ::4]]
        self.bg = float(np.median(sample)) if sample.size else 0.0
        near = np.ones((2 * _PAD + 1, 2 * _PAD + 1), np.uint8)  # keep a gap of _PAD pixels from content
        content = (np.abs(grey.astype(np.int16) - int(self.bg)) > _CONTENT_DIFF) | ~outside
        self.content = cv2.integral(cv2.dilate(content.astype(np.uint8), near)).astype(np.int64)

    def taken(self, x: int, y: int, w: int, h: int) -> None:
        """A block was put here: later blocks go elsewhere."""
        m = np.zeros((self.h, self.w), np.uint8)
        m[max(0, y - _PAD) : y + h + _PAD, max(0, x - _PAD) : x + w + _PAD] = 1
        self.content += cv2.integral(m).astype(np.int64)

    def empty_place(self, bw: int, bh: int, corners: tuple[tuple[int, int], ...]) -> tuple[int, int] | None:
        """(x, y) of a bw×bh place with nothing under it, nearest to one of ``corners``; None when there is none."""
        if bw > self.w or bh > self.h:
            return None
        step = max(2, min(self.w, self.h) // 180)
        xs = np.arange(0, self.w - bw + 1, step)
        ys = np.arange(0, self.h - bh + 1, step)
        if xs[-1] != self.w - bw:
            xs = np.append(xs, self.w - bw)
        if ys[-1] != self.h - bh:
            ys = np.append(ys, self.h - bh)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        ii = self.content
        under = ii[gy + bh, gx + bw] - ii[gy, gx + bw] - ii[gy + bh, gx] + ii[gy, gx]
        free = under == 0
        if not free.any():
            return None
        dist = np.min([np.hypot(gx + bw / 2 - cx, gy + bh / 2 - cy) for cx, cy in corners], axis=0)
        i = int(np.argmin(np.where(free, dist, np.inf)))
        return int(gx.ravel()[i]), int(gy.ravel()[i])


def _empty_now(frame: np.ndarray, x: int, y: int, w: int, h: int) -> bool:
    """Still nothing under a block in this frame (cheap: only the block's pixels are looked at)."""
    patch = frame[y : y + h, x : x + w]
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
    if grey.size == 0:
        return False
    return bool((np.abs(grey.astype(np.int16) - int(np.median(grey))) <= _CONTENT_DIFF).all())


def _plan(result: Result, style: OverlayStyle, blocks: list[tuple[_Block, tuple]], signature: tuple) -> tuple:
    """Where the blocks go: ("places", [(x, y, narrow, k, w, h), ...]) in empty parts of the frame, or ("panel",
    narrow, k, width) when some block fits nowhere. A plan is kept for later frames of the same size, ROI and
    ``signature`` (what decides the blocks' sizes) while nothing has appeared under its places."""
    frame = result.frame
    fh, fw = frame.shape[:2]
    key = (fh, fw, tuple(result.roi), signature)
    kept = style.places.get(key)
    if kept is not None and (kept[0] == "panel" or all(_empty_now(frame, x, y, w, h)
                                                       for x, y, _, _, w, h in kept[1])):
        return kept
    canvas = _Canvas(frame, result.roi)
    places: list[tuple] = []
    plan: tuple
    for block, corners in blocks:
        for narrow, k in _LAYOUTS:
            if block.smallest_text(k) < _MIN_TEXT and k != _SHRINK[0]:
                continue  # too small to read: rather a panel (the frame's own scale is always tried)
            bw, bh = block.size(narrow, k)
            got = canvas.empty_place(bw, bh, corners)
            if got is not None:
                canvas.taken(*got, bw, bh)
                places.append((*got, narrow, k, bw, bh))
                break
        else:
            break
    if len(places) == len(blocks):
        plan = ("places", places)
    else:  # no margin fits: a panel beside the image, inside the same frame size
        plan = ("panel", *_panel_layout(blocks, fw, fh))
    if len(style.places) > 32:
        style.places.clear()
    style.places[key] = plan
    return plan


def _panel_layout(blocks: list[tuple[_Block, tuple]], fw: int, fh: int) -> tuple[bool, float, int]:
    """(narrow, k, panel width): the largest text whose blocks fit a panel of at most ``_PANEL_MAX`` of the width."""
    for narrow, k in sorted(_LAYOUTS, key=lambda nk: (-nk[1], not nk[0])):  # narrow first at each scale
        sizes = [b.size(narrow, k) for b, _ in blocks]
        width = max(w for w, _ in sizes)
        if width + _PAD <= _PANEL_MAX * fw and sum(h for _, h in sizes) + _PAD <= fh:
            return narrow, k, width + _PAD
    sizes = [b.size(True, _SHRINK[-1]) for b, _ in blocks]
    return True, _SHRINK[-1], min(int(_PANEL_MAX * fw), max(w for w, _ in sizes) + _PAD)


def _into_panel(img: np.ndarray, blocks: list[tuple[_Block, tuple]], narrow: bool, k: float, pw: int) -> np.ndarray:
    """The frame scaled down beside a panel of width ``pw`` that holds the blocks; the same size as ``img``."""
    h, w = img.shape[:2]
    iw = w - pw
    ih = max(1, int(round(h * iw / w)))
    out = np.empty_like(img)
    out[:] = _PANEL_BG
    y0 = (h - ih) // 2
    out[y0 : y0 + ih, :iw] = cv2.resize(img, (iw, ih), interpolation=cv2.INTER_AREA)
    y = 0
    for i, (block, _) in enumerate(blocks):
        bh = block.size(narrow, k)[1]
        if i == len(blocks) - 1 and i > 0:  # the information lines at the bottom, like in a margin
            y = max(y, h - bh)
        block.draw(out, iw, y, narrow, k)
        y += bh
    return out


def draw_overlay(result: Result, style: OverlayStyle | None = None, hud: dict | None = None) -> np.ndarray:
    """Everything burned into one RGB frame of the same size: heatmap, ROI box, probability bars (or the state
    text), top label, HUD, warning, notice — the text where the frame shows nothing, or in a panel beside the
    scaled-down image when nothing is empty enough (see the module's doc)."""
    style = style or OverlayStyle()
    frame = result.frame
    if style.heatmap and result.cam is not None and result.shows_prediction and style.show_bars:
        img = blend_heatmap(frame, result.cam, result.roi, style.alpha, style.colormap)
    else:
        img = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    h, w = img.shape[:2]
    s = max(0.4, min(w, h) / 900.0) * 1.6
    if style.show_roi:
        x, y, rw, rh = result.roi
        cv2.rectangle(img, (x, y), (x + rw - 1, y + rh - 1), (0, 200, 255), 1)
    blocks: list[tuple[_Block, tuple]] = []
    pred = _prediction_block(result, style, s)
    if pred is not None:
        blocks.append((pred, ((0, 0), (w, 0))))  # near a top corner
    info = _info_block(result, style, hud, s)
    blocks.append((info, ((0, h), (w, h))))  # near a bottom corner
    # what decides the blocks' sizes: the classes, the HUD's room (digits as 8s), the warning
    signature = (pred is not None and tuple(result.class_names), info.reserve[0][0] if info.reserve else None,
                 style.warning)
    plan = _plan(result, style, blocks, signature)
    if plan[0] == "panel":
        return _into_panel(img, blocks, *plan[1:])
    for (block, _), (x, y, narrow, k, _, _) in zip(blocks, plan[1]):
        block.draw(img, x, y, narrow, k)
    return img
