"""The reader study's two dialogs: the confidence rating after each call and the end-of-block questionnaires.

Both are non-blocking (``.open()``: window-modal, never ``exec()``) and report through their ``answered`` signal,
or the built-in ``rejected`` when cancelled (Esc). Nothing starts answered, so no value anchors the reader: a
scale shows "–" and no slider handle until the reader picks a value, and OK stays disabled until then.

Every control works from the keyboard and the mouse. A numeric scale is a spin box (focus, digits, arrow keys;
Enter accepts the dialog) beside a slider for the mouse (click or drag anywhere on it); a value that is off the
scale's steps stays in the box as unfinished text and is not taken. A short scale (the SUS's 1–5) is a row of
radio buttons: Tab reaches the row, arrow keys or a digit pick a value.
"""

from __future__ import annotations

import html
import math

from PyQt6.QtCore import QEvent, QObject, Qt, pyqtSignal
from PyQt6.QtGui import QKeyEvent, QMouseEvent, QValidator, QWheelEvent
from PyQt6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QVBoxLayout,
    QWidget,
)

from sonolens.pipeline.errors import ConfigError
from sonolens.study.protocol import RatingScale
from sonolens.study.questionnaires import Form, Item, checked_answers

from .widgets import DIALOG_QSS, style_dialog

UNSET = "–"  # what an unanswered scale shows
ANCHOR_W = 72  # the scale-end labels' width, so that the rows of a form line up
MAX_CHOICES = 7  # scales with at most this many values are radio buttons, longer ones a spin box and slider
FORM_SIZE = (760, 740)  # the questionnaire's initial size: inside a 1280×800 window, rows scroll
EXTRA_QSS = """
QDialog QLabel#muted { color: #8b949e; }
QDialog QLabel#title { font-size: 13pt; font-weight: bold; }
QScrollArea { background: transparent; border: none; }
QWidget#formbody { background: transparent; }
QDialog QPushButton:disabled { color: #8b949e; background: #161b22; }
QRadioButton { color: #e6edf3; padding: 2px 4px; border: 1px solid transparent; }
QRadioButton:focus { border: 1px solid #58a6ff; border-radius: 3px; }
QRadioButton::indicator { width: 14px; height: 14px; border-radius: 8px; border: 1px solid #8b949e;
                          background: #0d1014; }
QRadioButton::indicator:hover { border-color: #e6edf3; }
QRadioButton::indicator:checked { border-color: #58a6ff; background: qradialgradient(cx: 0.5, cy: 0.5, radius: 0.5,
    fx: 0.5, fy: 0.5, stop: 0 #58a6ff, stop: 0.5 #58a6ff, stop: 0.6 #0d1014, stop: 1 #0d1014); }
"""
ARROWS = {Qt.Key.Key_Left: -1, Qt.Key.Key_Up: -1, Qt.Key.Key_Right: 1, Qt.Key.Key_Down: 1}
SLIDER_QSS = """
QSlider::groove:horizontal {{ height: 4px; background: #30363d; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {handle}; width: 12px; margin: -5px 0; border-radius: 6px; }}
QSlider::sub-page:horizontal {{ background: {sub}; border-radius: 2px; }}
"""


def _decimals(*numbers: float) -> int:
    """The fewest decimals (0–6) that write every number exactly: 0 for whole-numbered scales."""
    for d in range(7):
        if all(abs(round(x, d) - x) < 1e-9 for x in numbers):
            return d
    return 6


def _on_step(value: float, low: float, step: float) -> bool:
    """Whether ``value`` is ``low`` plus a whole number of ``step``s."""
    n = (value - low) / step
    return abs(n - round(n)) < 1e-6


def _muted(text: str, width: int = 0, align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft) -> QLabel:
    """A grey, secondary label, at least ``width`` wide."""
    label = QLabel(text)
    label.setObjectName("muted")
    label.setMinimumWidth(width)
    label.setAlignment(align | Qt.AlignmentFlag.AlignVCenter)
    return label


def _style(dialog: QDialog) -> None:
    """The viewer's dark dialog colours plus the few controls these dialogs add."""
    style_dialog(dialog)
    dialog.setStyleSheet(DIALOG_QSS + EXTRA_QSS)


class StepSpinBox(QDoubleSpinBox):
    """``low``..``high`` in ``step``s, with one extra position below ``low`` that means "not answered" and shows
    ``UNSET``. Typed text that is off the steps is left unfinished (never becomes the value)."""

    def __init__(self, low: float, high: float, step: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._low, self._step = float(low), float(step)
        self.setDecimals(_decimals(low, step))
        self.setRange(low - step, high)
        self.setSingleStep(step)
        self.setSpecialValueText(UNSET)
        self.setValue(self.minimum())
        self.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumWidth(72)

    def answer(self) -> float | None:
        """The value, or None while unanswered."""
        v = self.value()
        return None if v < self._low - self._step / 2 else v

    def set_answer(self, value: float | None) -> None:
        """Show ``value`` (None: unanswered)."""
        self.setValue(self.minimum() if value is None else float(value))

    def validate(self, text: str | None, pos: int) -> tuple[QValidator.State, str, int]:
        """Qt's check, then: a number off the steps is only ``Intermediate`` (may still be typed on)."""
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and not _on_step(self.valueFromText(text), self._low, self._step):
            state = QValidator.State.Intermediate
        return state, text, pos

    def keyPressEvent(self, event: QKeyEvent | None) -> None:  # noqa: N802 (Qt name)
        """Typing into an unanswered box replaces the "–" instead of appending to it."""
        edit = self.lineEdit()
        if event is not None and edit is not None and edit.text() == UNSET and event.text()[:1].isdigit():
            edit.selectAll()
        super().keyPressEvent(event)

    def wheelEvent(self, event: QWheelEvent | None) -> None:  # noqa: N802
        """The wheel changes the value only when the box has focus; otherwise it scrolls the form."""
        if event is not None and not self.hasFocus():
            event.ignore()
            return
        super().wheelEvent(event)


class JumpSlider(QSlider):
    """A mouse-only slider (no focus, no wheel): a click anywhere on it picks the position under the pointer, and
    dragging follows the pointer. ``picked(position)`` on every press and move."""

    picked = pyqtSignal(int)

    def __init__(self, positions: int, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setRange(0, positions - 1)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMinimumWidth(240)
        self._dragging = False

    def position_at(self, x: float) -> int:
        """The slider position under widget x-coordinate ``x``."""
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        style = self.style()
        assert style is not None
        cc, groove_sc = QStyle.ComplexControl.CC_Slider, QStyle.SubControl.SC_SliderGroove
        groove = style.subControlRect(cc, opt, groove_sc, self)
        handle = style.subControlRect(cc, opt, QStyle.SubControl.SC_SliderHandle, self)
        span = max(1, groove.width() - handle.width())
        offset = int(round(x - groove.x() - handle.width() / 2))
        return QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), min(max(offset, 0), span), span)

    def _pick(self, event: QMouseEvent) -> None:
        self.setValue(self.position_at(event.position().x()))
        self.picked.emit(self.value())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent | None) -> None:  # noqa: N802
        """Left button: jump to the pointer and start following it."""
        if event is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        self._dragging = True
        self._pick(event)

    def mouseMoveEvent(self, event: QMouseEvent | None) -> None:  # noqa: N802
        """While the button is down: follow the pointer."""
        if event is not None and self._dragging:
            self._pick(event)

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:  # noqa: N802
        """Stop following the pointer."""
        self._dragging = False

    def wheelEvent(self, event: QWheelEvent | None) -> None:  # noqa: N802
        """Ignored: the wheel scrolls the form, never changes an answer."""
        if event is not None:
            event.ignore()  # never change an answer by scrolling past it


class ScaleInput(QWidget):
    """A numeric scale: the low end, a ``JumpSlider`` for the mouse, the high end, and a ``StepSpinBox`` for the
    keyboard, kept in sync. The slider shows no handle while unanswered. ``changed`` on every change."""

    changed = pyqtSignal()

    def __init__(self, low: float, high: float, step: float, low_text: str = "", high_text: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._low, self._step = float(low), float(step)
        self.spin = StepSpinBox(low, high, step)
        self.slider = JumpSlider(int(math.floor((high - low) / step + 1e-9)) + 1)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(_muted(low_text or f"{low:g}", ANCHOR_W, Qt.AlignmentFlag.AlignRight))
        row.addWidget(self.slider, 1)
        row.addWidget(_muted(high_text or f"{high:g}", ANCHOR_W))
        row.addSpacing(8)
        row.addWidget(self.spin)
        self.setFocusProxy(self.spin)
        self.spin.valueChanged.connect(self._from_spin)
        self.slider.picked.connect(lambda pos: self.spin.set_answer(self._low + pos * self._step))
        self._from_spin()

    def value(self) -> float | None:
        """The answer, or None."""
        return self.spin.answer()

    def set_value(self, value: float | None) -> None:
        """Set (None: clear) the answer; the caller checks that it is on the scale."""
        self.spin.set_answer(value)

    def _from_spin(self, *_: object) -> None:
        v = self.value()
        self.slider.blockSignals(True)
        self.slider.setValue(0 if v is None else int(round((v - self._low) / self._step)))
        self.slider.blockSignals(False)
        colours = {"handle": "transparent", "sub": "#30363d"} if v is None else {"handle": "#58a6ff", "sub": "#1f6feb"}
        self.slider.setStyleSheet(SLIDER_QSS.format(**colours))
        self.changed.emit()


class ChoiceInput(QWidget):
    """A short scale as radio buttons, one per value, between its two anchors; none checked at first. Tab reaches
    the row (Qt stops once per group), arrow keys or a digit pick a value. ``changed`` on every change."""

    changed = pyqtSignal()

    def __init__(self, item: Item, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.group = QButtonGroup(self)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(_muted(item.low_anchor, ANCHOR_W, Qt.AlignmentFlag.AlignRight))
        for v in range(item.low, item.high + 1, item.step):
            button = QRadioButton(str(v))
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            self.group.addButton(button, v)
            button.installEventFilter(self)
            row.addWidget(button)
        row.addWidget(_muted(item.high_anchor, ANCHOR_W))
        row.addStretch(1)
        self.setFocusProxy(self.group.buttons()[0])
        self.group.idToggled.connect(self._toggled)

    def _toggled(self, _id: int, on: bool) -> None:
        if on:
            self.changed.emit()

    def value(self) -> float | None:
        """The checked value, or None."""
        checked = self.group.checkedId()
        return None if checked == -1 else float(checked)

    def set_value(self, value: float | None) -> None:
        """Check ``value``'s button (None: uncheck all); the caller checks that it is on the scale."""
        if value is None:
            self.group.setExclusive(False)
            for b in self.group.buttons():
                b.setChecked(False)
            self.group.setExclusive(True)
            self.changed.emit()
            return
        button = self.group.button(int(value))
        if button is not None:
            button.setChecked(True)

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:  # noqa: N802
        """Keys on a radio button: a digit checks that value; Left/Up and Right/Down check the previous and next
        value (also from no answer, where Qt would only move the focus). The focus follows the check."""
        if event is None or event.type() != QEvent.Type.KeyPress or obj not in self.group.buttons():
            return super().eventFilter(obj, event)
        assert isinstance(event, QKeyEvent) and isinstance(obj, QRadioButton)
        buttons = self.group.buttons()
        target: QAbstractButton | None = None
        if event.text().isdigit():
            target = self.group.button(int(event.text()))
        elif Qt.Key(event.key()) in ARROWS:
            i = buttons.index(obj) + ARROWS[Qt.Key(event.key())]
            target = buttons[min(max(i, 0), len(buttons) - 1)]
        if target is None:
            return super().eventFilter(obj, event)
        target.setChecked(True)
        target.setFocus(Qt.FocusReason.OtherFocusReason)
        return True


def _buttons(dialog: QDialog) -> tuple[QDialogButtonBox, QPushButton]:
    """OK (the default button, disabled until answered) and Cancel, wired to accept / reject."""
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    ok = box.button(QDialogButtonBox.StandardButton.Ok)
    assert ok is not None
    ok.setDefault(True)
    ok.setEnabled(False)
    box.accepted.connect(dialog.accept)
    box.rejected.connect(dialog.reject)
    return box, ok


class RatingDialog(QDialog):
    """The reader's confidence in the call just made, on ``scale``; unanswered at first. ``answered(value)`` on
    OK or Enter (the value passes ``scale.check`` and is on the steps); Esc or Cancel → ``rejected``.

    Open with ``.open()`` (window-modal, does not block)."""

    answered = pyqtSignal(float)

    def __init__(self, parent: QWidget | None, scale: RatingScale, call_label: str) -> None:
        super().__init__(parent)
        self.scale = scale
        self.setWindowTitle("Confidence")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        _style(self)
        self.input = ScaleInput(scale.low, scale.high, scale.step)
        self.button_box, self.ok_button = _buttons(self)
        steps = "" if scale.step == 1 else f" in steps of {scale.step:g}"
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Your call: <b>{html.escape(call_label)}</b>"))
        layout.addWidget(QLabel(f"{html.escape(scale.label)} ({scale.low:g}–{scale.high:g}{steps})"))
        layout.addWidget(self.input)
        layout.addWidget(_muted("Type a value and press Enter, or click on the scale. Esc cancels."))
        layout.addWidget(self.button_box)
        self.input.changed.connect(self._update_ok)
        self.setMinimumWidth(460)
        self.input.spin.setFocus(Qt.FocusReason.OtherFocusReason)

    def value(self) -> float | None:
        """The value entered so far, or None."""
        return self.input.value()

    def set_value(self, value: float | None) -> None:
        """Enter ``value`` (checked: on the scale and its steps) or clear it (None)."""
        if value is not None:
            self._checked(value)
        self.input.set_value(value)

    def _checked(self, value: float) -> float:
        v = self.scale.check(value)
        if not _on_step(v, self.scale.low, self.scale.step):
            raise ConfigError(f"rating {v:g} is not on the scale's steps of {self.scale.step:g}")
        return v

    def _update_ok(self) -> None:
        self.ok_button.setEnabled(self.value() is not None)

    def accept(self) -> None:
        """Close and emit ``answered``, only with a value on the scale."""
        value = self.value()
        if value is None:
            return
        try:
            value = self._checked(value)
        except ConfigError:
            return
        super().accept()
        self.answered.emit(value)


def _item_input(item: Item) -> ScaleInput | ChoiceInput:
    """Radio buttons for a short scale, a spin box and slider for a long one."""
    if (item.high - item.low) // item.step + 1 <= MAX_CHOICES:
        return ChoiceInput(item)
    return ScaleInput(item.low, item.high, item.step, item.low_anchor, item.high_anchor)


class FormDialog(QDialog):
    """A questionnaire (``questionnaires.Form``): title, instructions and one row per item, in a scroll area, all
    unanswered at first. OK only when every item is answered; then ``answered({item.key: value})`` (values as
    floats, checked by ``questionnaires.checked_answers``). Esc or Cancel → ``rejected``.

    Open with ``.open()`` (window-modal, does not block)."""

    answered = pyqtSignal(dict)

    def __init__(self, parent: QWidget | None, form: Form) -> None:
        super().__init__(parent)
        self.form = form
        self.setWindowTitle(form.title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        _style(self)
        self.inputs: dict[str, ScaleInput | ChoiceInput] = {}
        self.button_box, self.ok_button = _buttons(self)
        self.progress = _muted("")
        title = QLabel(html.escape(form.title))
        title.setObjectName("title")
        instructions = QLabel(html.escape(form.instructions))
        instructions.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(instructions)
        layout.addWidget(self._rows(), 1)
        footer = QHBoxLayout()
        footer.addWidget(self.progress, 1)
        footer.addWidget(self.button_box)
        layout.addLayout(footer)
        self.resize(*FORM_SIZE)
        self._update_ok()
        self.inputs[form.items[0].key].setFocus(Qt.FocusReason.OtherFocusReason)

    def _rows(self) -> QScrollArea:
        """One row per item (its text above its control), in a scroll area."""
        body = QWidget()
        body.setObjectName("formbody")
        rows = QVBoxLayout(body)
        for item in self.form.items:
            text = QLabel(html.escape(item.text))
            text.setWordWrap(True)
            control = _item_input(item)
            control.changed.connect(self._update_ok)
            self.inputs[item.key] = control
            rows.addWidget(text)
            rows.addWidget(control)
            rows.addSpacing(6)
        rows.addStretch(1)
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setWidget(body)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Tab goes from item to item, not to the frame
        return area

    def answers(self) -> dict[str, float | None]:
        """Every item's answer so far (None: not answered)."""
        return {key: control.value() for key, control in self.inputs.items()}

    def set_answer(self, key: str, value: float | None) -> None:
        """Answer item ``key`` with ``value`` (checked by the item; None clears it); ConfigError for an unknown
        key or a value off the item's scale or steps."""
        if key not in self.inputs:
            checked_answers(self.form, {key: value})  # raises, naming the closest item
        item = next(i for i in self.form.items if i.key == key)
        self.inputs[key].set_value(None if value is None else item.check(value))

    def _update_ok(self) -> None:
        done = sum(v is not None for v in self.answers().values())
        self.progress.setText(f"{done} of {len(self.inputs)} answered")
        self.ok_button.setEnabled(done == len(self.inputs))

    def accept(self) -> None:
        """Close and emit ``answered``, only when every item is answered on its scale."""
        try:
            values = checked_answers(self.form, {k: v for k, v in self.answers().items() if v is not None})
        except ConfigError:
            return
        super().accept()
        self.answered.emit(values)


__all__ = ["RatingDialog", "FormDialog", "ScaleInput", "ChoiceInput", "StepSpinBox", "JumpSlider", "UNSET"]
