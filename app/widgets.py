"""The viewer's painted widgets: the video view (frame, ROI box, status strip) and the probability bars.

Both only paint what they are given: the frame arrives already blended and scaled (``bridge.FrameBridge``), so a
paint is one image blit plus a few rectangles and lines of text, cheap enough for the GUI thread at any frame rate.
Nothing is drawn over the image except the ROI outline, so with the heat map off the pixels inside the ROI are
the source's pixels (tested), and the self-check stamp band below the image is never covered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from PyQt6.QtCore import QPoint, QRect, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter, QPalette, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from sonolens import RESEARCH_NOTICE
from sonolens.pipeline.messages import Result
from sonolens.pipeline.overlay import class_rgb

from .bridge import DisplayFrame, fit_rect

BG = QColor("#0d1014")
STRIP_BG = QColor("#161b22")
NOTICE = QColor("#f2cc60")
TEXT = QColor("#d8dee9")
MUTED = QColor("#8b949e")
ROI = QColor("#39c5e0")
RED = QColor("#f85149")


DIALOG_BG = QColor("#161b22")
DIALOG_TEXT = QColor("#e6edf3")  # contrast with DIALOG_BG: 15.6 (WCAG AA asks for 4.5)
DIALOG_QSS = """
QMessageBox, QDialog { background-color: #161b22; }
QMessageBox QLabel, QDialog QLabel { color: #e6edf3; background: transparent; }
QMessageBox QPushButton, QDialog QPushButton { background: #21262d; color: #e6edf3; border: 1px solid #30363d;
                                              border-radius: 4px; padding: 4px 14px; }
QMessageBox QPushButton:hover, QDialog QPushButton:hover { background: #30363d; }
"""


def dark_palette(base: QPalette | None = None) -> QPalette:
    """The viewer's colours as a palette (light text on dark ground in every colour group), so that dialogs are
    readable whether or not the application's style sheet reaches them."""
    pal = QPalette(base) if base is not None else QPalette()
    roles = {QPalette.ColorRole.Window: DIALOG_BG, QPalette.ColorRole.WindowText: DIALOG_TEXT,
             QPalette.ColorRole.Base: QColor("#0d1014"), QPalette.ColorRole.AlternateBase: DIALOG_BG,
             QPalette.ColorRole.Text: DIALOG_TEXT, QPalette.ColorRole.Button: QColor("#21262d"),
             QPalette.ColorRole.ButtonText: DIALOG_TEXT, QPalette.ColorRole.ToolTipBase: DIALOG_BG,
             QPalette.ColorRole.ToolTipText: DIALOG_TEXT, QPalette.ColorRole.Highlight: QColor("#1f6feb"),
             QPalette.ColorRole.HighlightedText: QColor("#ffffff"), QPalette.ColorRole.Link: QColor("#58a6ff"),
             QPalette.ColorRole.PlaceholderText: MUTED}
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        for role, color in roles.items():
            pal.setColor(group, role, color)
    for role, color in roles.items():
        pal.setColor(QPalette.ColorGroup.Disabled, role, MUTED if role in (
            QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText) else color)
    return pal


def style_dialog(box: QWidget) -> QWidget:
    """Give a dialog the viewer's dark colours explicitly (palette and style sheet)."""
    box.setPalette(dark_palette(box.palette()))
    box.setStyleSheet(DIALOG_QSS)
    return box


def class_color(name: str, i: int, dim: bool = False) -> QColor:
    """The colour of class ``name`` (``i`` in the model's order): ``pipeline.overlay.class_rgb``, the definition the
    burned-in recording uses too. ``dim``: a bar that is not the top class."""
    return QColor(*class_rgb(name, i, dim))


STATE_CHIP = {"out_of_domain": "no prediction: outside the domain", "no_image": "no image"}  # the strip's chip


def prediction_chip(r: Result) -> tuple[str, QColor]:
    """The strip's chip for a result with probabilities: its top class and confidence, or (a frame without a
    prediction) its state."""
    if r.shows_prediction:
        name = r.class_names[r.top_class]
        return f"{name}  {100 * float(r.probs[r.top_class]):.0f}%", class_color(name, r.top_class)
    return STATE_CHIP.get(r.state, "no prediction"), NOTICE


class VideoView(QWidget):
    """The frame, fitted to the widget below a status strip (research notice, state, prediction chip)."""

    STRIP_H = 36  # the strip: one row
    ROW_H = 28  # a row of a strip of two (a grid cell: notice and chip, then the state)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.frame: DisplayFrame | None = None
        self.show_roi = True
        self.chip: tuple[str, QColor] | None = None  # prediction chip (text, colour) in the strip, right side
        self.state_text = ""  # "PAUSED", "end of stream", an error…
        self.notice = "⚠ " + RESEARCH_NOTICE  # the strip's left end (a grid cell's is shorter)
        self.strip_rows = 1  # 2: the state gets a row of its own (a grid cell is narrow)
        self.state_color = TEXT
        self.placeholder = "No source. Open a file (Ctrl+O) or a camera (Ctrl+K)."
        self.on_new_frame_painted: Callable[[DisplayFrame, int], None] | None = None
        self.on_resized: Callable[[], None] | None = None
        self.last_paint_ms = 0.0
        self._painted_key: tuple | None = None
        self._font = QFont(self.font())
        self._font.setPointSizeF(10.5)
        self._bold = QFont(self._font)
        self._bold.setBold(True)

    # -- geometry ---------------------------------------------------------------------------------------------------
    @property
    def strip_height(self) -> int:
        return self.STRIP_H if self.strip_rows == 1 else self.ROW_H * self.strip_rows

    def area_rect(self) -> QRect:
        """Where frames go: everything below the strip."""
        h = self.strip_height
        return QRect(0, h, self.width(), max(1, self.height() - h))

    def area_size(self) -> tuple[int, int]:
        a = self.area_rect()
        return a.width(), a.height()

    def image_rect(self, df: DisplayFrame | None = None) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) in widget coordinates where the (whole, padded) frame is drawn."""
        df = df or self.frame
        if df is None:
            return None
        a = self.area_rect()
        if df.area == (a.width(), a.height()):
            x, y, w, h = df.rect
        else:
            fh, fw = df.result.frame.shape[:2]
            x, y, w, h = fit_rect(fw, fh, a.width(), a.height())
        return x + a.x(), y + a.y(), w, h

    def roi_rect(self, df: DisplayFrame | None = None) -> QRectF | None:
        df = df or self.frame
        r = self.image_rect(df)
        if df is None or r is None:
            return None
        x, y, w, h = r
        fh, fw = df.result.frame.shape[:2]
        sx, sy = w / fw, h / fh
        rx, ry, rw, rh = df.result.roi
        return QRectF(x + rx * sx, y + ry * sy, rw * sx, rh * sy)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.on_resized is not None:
            self.on_resized()

    # -- painting ---------------------------------------------------------------------------------------------------
    def set_frame(self, df: DisplayFrame | None) -> None:
        self.frame = df
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        t0 = time.perf_counter_ns()
        p = QPainter(self)
        p.fillRect(self.rect(), BG)
        df = self.frame
        rect = self.image_rect(df) if df is not None else None
        if df is not None and rect is not None:
            x, y, w, h = rect
            if (w, h) == (df.image.width(), df.image.height()):
                p.drawImage(QPoint(x, y), df.image)  # rendered at this size on the worker: a plain blit
            else:  # the widget was resized since: scale (until the next frame arrives at the new size)
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                p.drawImage(QRect(x, y, w, h), df.image)
            roi = self.roi_rect(df) if self.show_roi else None
            if roi is not None:
                pen = QPen(ROI, 1.5)
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(roi.adjusted(-1, -1, 1, 1))  # the outline sits just outside the ROI's pixels
        else:
            p.setPen(MUTED)
            p.setFont(self._font)
            p.drawText(self.area_rect().adjusted(12, 0, -12, 0),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
        self._paint_strip(p)
        p.end()
        if df is not None:
            key = (df.generation, df.result.index)
            if key != self._painted_key:
                self._painted_key = key
                t1 = time.perf_counter_ns()
                self.last_paint_ms = (t1 - t0) / 1e6
                if self.on_new_frame_painted is not None:
                    self.on_new_frame_painted(df, t1)

    def _paint_strip(self, p: QPainter) -> None:
        """The notice (left) and the chip (right); the state between them, or (two rows) on the second row. What
        does not fit is elided: the chip first, then the notice, then the state keep their whole text."""
        two = self.strip_rows > 1
        row_h = self.ROW_H if two else self.STRIP_H
        strip_h = self.strip_height
        p.fillRect(QRect(0, 0, self.width(), strip_h), STRIP_BG)
        p.setPen(QPen(NOTICE.darker(160), 1))
        p.drawLine(0, strip_h - 1, self.width(), strip_h - 1)
        p.setFont(self._bold)
        fm = p.fontMetrics()
        text_rect = QRect(12, 0, max(0, self.width() - 24), row_h)
        right = text_rect.right()
        if self.chip is not None:
            text, color = self.chip
            margin = 4 if two else 6
            cw = min(fm.horizontalAdvance(text) + 24, text_rect.width())
            chip = QRect(right - cw, margin, cw, row_h - 2 * margin)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(color.red(), color.green(), color.blue(), 60))
            p.drawRoundedRect(chip, 6, 6)
            p.setPen(color)
            p.drawText(chip, Qt.AlignmentFlag.AlignCenter, fm.elidedText(text, Qt.TextElideMode.ElideRight, cw - 8))
            right = chip.left() - 12
        p.setPen(NOTICE)
        notice_w = max(0, right - text_rect.left())
        notice = fm.elidedText(self.notice, Qt.TextElideMode.ElideRight, notice_w)
        p.drawText(QRect(text_rect.left(), 0, notice_w, row_h), Qt.AlignmentFlag.AlignVCenter
                   | Qt.AlignmentFlag.AlignLeft, notice)
        if self.state_text:
            p.setPen(self.state_color)
            if two:
                r, align = QRect(text_rect.left(), row_h, text_rect.width(), row_h), Qt.AlignmentFlag.AlignLeft
            else:
                used = fm.horizontalAdvance(notice) + 24
                r = QRect(text_rect.left() + used, 0, max(0, right - text_rect.left() - used), row_h)
                align = Qt.AlignmentFlag.AlignRight
            text = fm.elidedText(self.state_text, Qt.TextElideMode.ElideRight, r.width())  # its start says what
            p.drawText(r, Qt.AlignmentFlag.AlignVCenter | align, text)


class ProbBars(QWidget):
    """Probability of every class as a bar, the top class and its confidence in large type."""

    ROW_H = 34

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.names: tuple[str, ...] = ()
        self.probs: np.ndarray = np.zeros(0, np.float32)
        self.top: int = -1
        self.hidden_text: str | None = "no prediction yet"
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._big = QFont(self.font())
        self._big.setPointSizeF(17)
        self._big.setBold(True)
        self._small = QFont(self.font())
        self._small.setPointSizeF(10)
        self.setFixedHeight(self._height())

    def _height(self) -> int:
        return 58 + max(3, len(self.names)) * self.ROW_H

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(260, self._height())

    def set_values(self, names, probs, top: int) -> None:
        names = tuple(names)
        if names != self.names:
            self.names = names
            self.setFixedHeight(self._height())
        self.probs = np.asarray(probs, dtype=np.float32).copy()
        self.top = int(top)
        self.hidden_text = None
        self.update()

    def set_hidden(self, text: str) -> None:
        self.hidden_text = text
        self.probs = np.zeros(0, np.float32)
        self.top = -1
        self.update()

    @property
    def top_text(self) -> str:
        if self.hidden_text is not None or self.top < 0:
            return ""
        return f"{self.names[self.top]} {100 * float(self.probs[self.top]):.1f}%"

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w = self.width()
        if self.hidden_text is not None:
            p.setPen(MUTED)
            p.setFont(self._small)
            p.drawText(self.rect().adjusted(4, 4, -4, -4), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.hidden_text)
            p.end()
            return
        top_name = self.names[self.top]
        p.setFont(self._big)
        p.setPen(class_color(top_name, self.top))
        p.drawText(QRect(4, 4, w - 8, 40), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                   top_name.upper())
        p.setPen(TEXT)
        p.drawText(QRect(4, 4, w - 8, 40), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                   f"{100 * float(self.probs[self.top]):.1f}%")
        p.setFont(self._small)
        y = 54
        for i, (name, prob) in enumerate(zip(self.names, self.probs)):
            color = class_color(name, i, dim=i != self.top)
            p.setPen(TEXT if i == self.top else MUTED)
            p.drawText(QRect(4, y, w - 8, 16), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
            p.drawText(QRect(4, y, w - 8, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{100 * float(prob):5.1f}%")
            bar = QRectF(4, y + 18, w - 8, 9)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#262c36"))
            p.drawRoundedRect(bar, 4, 4)
            fill = QRectF(bar.x(), bar.y(), max(0.0, bar.width() * float(prob)), bar.height())
            p.setBrush(color)
            p.drawRoundedRect(fill, 4, 4)
            y += self.ROW_H
        p.end()


__all__ = ["VideoView", "ProbBars", "STATE_CHIP", "class_color", "dark_palette", "prediction_chip", "style_dialog"]
