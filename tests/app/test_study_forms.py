"""``app.study_forms``: the confidence rating and questionnaire dialogs, driven by keyboard and mouse through Qt's
own event delivery (pytest-qt), opened non-blocking on a plain parent widget."""

from __future__ import annotations

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QPoint, Qt  # noqa: E402
from PyQt6.QtWidgets import QApplication, QDialog, QRadioButton, QScrollArea, QWidget  # noqa: E402

from sonolens.app.study_forms import UNSET, FormDialog, RatingDialog, StepSpinBox  # noqa: E402
from sonolens.pipeline.errors import ConfigError  # noqa: E402
from sonolens.study.protocol import RatingScale  # noqa: E402
from sonolens.study.questionnaires import NASA_TLX, SUS, score  # noqa: E402


@pytest.fixture
def parent(qtbot):
    """A shown plain window the size of the viewer's default (1280×800)."""
    w = QWidget()
    w.resize(1280, 800)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def _open(qtbot, dialog: QDialog) -> QDialog:
    dialog.open()  # returns at once: the test goes on while the dialog is up
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(lambda: dialog.isAncestorOf(QApplication.focusWidget()), timeout=2000)
    assert dialog.isVisible() and dialog.windowModality() == Qt.WindowModality.WindowModal
    return dialog


def _focused() -> QWidget:
    w = QApplication.focusWidget()
    assert w is not None
    return w


def _rating(qtbot, parent, scale: RatingScale | None = None, call: str = "benign") -> RatingDialog:
    return _open(qtbot, RatingDialog(parent, scale or RatingScale(), call))


# -- RatingDialog ----------------------------------------------------------------------------------------------------
def test_rating_starts_unset_then_typed_value_and_enter_answer(qtbot, parent):
    dlg = _rating(qtbot, parent)
    spin = dlg.input.spin
    assert _focused() is spin and spin.text() == UNSET and dlg.value() is None
    assert not dlg.ok_button.isEnabled() and "transparent" in dlg.input.slider.styleSheet()
    qtbot.keyClicks(spin, "73")
    assert dlg.value() == 73.0 and dlg.ok_button.isEnabled() and dlg.input.slider.value() == 73
    assert "transparent" not in dlg.input.slider.styleSheet()
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert blocker.args == [73.0]
    assert not dlg.isVisible() and dlg.result() == QDialog.DialogCode.Accepted


def test_rating_shows_call_and_scale_label(qtbot, parent):
    from PyQt6.QtWidgets import QLabel

    dlg = _rating(qtbot, parent, RatingScale(0, 100, 5, "probability of malignancy (%)"), "malignant <3>")
    texts = " | ".join(lab.text() for lab in dlg.findChildren(QLabel))
    assert "Your call: <b>malignant &lt;3&gt;</b>" in texts
    assert "probability of malignancy (%) (0–100 in steps of 5)" in texts


def test_rating_escape_rejects_without_answer(qtbot, parent):
    dlg = _rating(qtbot, parent)
    qtbot.keyClicks(dlg.input.spin, "40")
    with qtbot.assertNotEmitted(dlg.answered), qtbot.waitSignal(dlg.rejected, timeout=2000):
        qtbot.keyClick(dlg.input.spin, Qt.Key.Key_Escape)
    assert not dlg.isVisible() and dlg.result() == QDialog.DialogCode.Rejected


def test_rating_enter_while_unset_does_nothing(qtbot, parent):
    dlg = _rating(qtbot, parent)
    with qtbot.assertNotEmitted(dlg.answered), qtbot.assertNotEmitted(dlg.rejected):
        qtbot.keyClick(dlg.input.spin, Qt.Key.Key_Return)
    assert dlg.isVisible()


def test_rating_value_off_step_not_accepted(qtbot, parent):
    dlg = _rating(qtbot, parent, RatingScale(0, 100, 5))
    spin = dlg.input.spin
    qtbot.keyClicks(spin, "73")
    assert dlg.value() is None and not dlg.ok_button.isEnabled()
    with qtbot.assertNotEmitted(dlg.answered):
        qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert dlg.isVisible() and spin.text() == UNSET  # the unfinished text is dropped, nothing taken
    with pytest.raises(ConfigError, match="not on the scale's steps of 5"):
        dlg.set_value(73)
    with pytest.raises(ConfigError, match="outside the scale"):
        dlg.set_value(105)
    assert dlg.value() is None
    qtbot.keyClicks(spin, "75")
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.keyClick(spin, Qt.Key.Key_Enter)
    assert blocker.args == [75.0]


def test_rating_click_into_box_then_type_replaces_the_dash(qtbot, parent):
    dlg = _rating(qtbot, parent)
    edit = dlg.input.spin.lineEdit()
    qtbot.mouseClick(edit, Qt.MouseButton.LeftButton, pos=QPoint(edit.width() - 2, edit.height() // 2))
    edit.deselect()
    edit.end(False)  # the caret after the "–", nothing selected
    qtbot.keyClicks(dlg.input.spin, "8")
    assert dlg.value() == 8.0 and edit.text() == "8"


def test_rating_accept_refuses_a_value_that_bypassed_the_box(qtbot, parent):
    dlg = _rating(qtbot, parent, RatingScale(0, 100, 5))
    dlg.input.spin.setValue(73)  # programmatic: Qt's validator is not asked
    assert dlg.value() == 73.0
    with qtbot.assertNotEmitted(dlg.answered):
        dlg.accept()
    assert dlg.isVisible()


def test_rating_fractional_step_arrow_keys(qtbot, parent):
    dlg = _rating(qtbot, parent, RatingScale(1, 5, 0.5, "confidence"))
    spin = dlg.input.spin
    assert spin.decimals() == 1 and spin.text() == UNSET
    qtbot.keyClick(spin, Qt.Key.Key_Up)  # from no answer to the low end
    qtbot.keyClick(spin, Qt.Key.Key_Up)
    assert dlg.value() == 1.5 and dlg.input.slider.value() == 1
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert blocker.args == [1.5]


def test_rating_whole_scale_has_no_decimals():
    assert StepSpinBox(0, 100, 1).decimals() == 0 and StepSpinBox(0, 1, 0.05).decimals() == 2


def test_rating_mouse_click_on_slider_then_ok(qtbot, parent):
    dlg = _rating(qtbot, parent)
    slider = dlg.input.slider
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(slider.width() // 2, slider.height() // 2))
    value = dlg.value()
    assert value is not None and 40 <= value <= 60 and dlg.input.spin.text() == f"{value:g}"
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(slider.width() - 1, slider.height() // 2))
    assert dlg.value() == 100.0
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [100.0]


def test_rating_cancel_button_rejects(qtbot, parent):
    dlg = _rating(qtbot, parent)
    dlg.set_value(20)
    cancel = dlg.button_box.button(dlg.button_box.StandardButton.Cancel)
    with qtbot.assertNotEmitted(dlg.answered), qtbot.waitSignal(dlg.rejected, timeout=2000):
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)


# -- FormDialog ------------------------------------------------------------------------------------------------------
def _form(qtbot, parent, form) -> FormDialog:
    return _open(qtbot, FormDialog(parent, form))


@pytest.mark.parametrize("form", [NASA_TLX, SUS], ids=["nasa_tlx", "sus"])
def test_form_starts_unanswered_and_fits_the_viewer(qtbot, parent, form):
    dlg = _form(qtbot, parent, form)
    assert dlg.windowTitle() == form.title
    assert dlg.answers() == dict.fromkeys(form.keys())
    assert not dlg.ok_button.isEnabled() and dlg.progress.text() == f"0 of {len(form.items)} answered"
    assert not any(b.isChecked() for b in dlg.findChildren(QRadioButton))
    assert dlg.width() <= 1280 and dlg.height() <= 800
    assert dlg.minimumSizeHint().width() <= 1280 and dlg.minimumSizeHint().height() <= 800
    area = dlg.findChild(QScrollArea)
    assert area is not None and all(area.widget().isAncestorOf(c) for c in dlg.inputs.values())


def test_form_nasa_tlx_by_keyboard(qtbot, parent):
    dlg = _form(qtbot, parent, NASA_TLX)
    typed = ["80", "5", "50", "30", "65", "40"]
    for i, (item, text) in enumerate(zip(NASA_TLX.items, typed)):
        spin = _focused()
        assert spin is dlg.inputs[item.key].spin, item.key
        qtbot.keyClicks(spin, text)
        assert dlg.ok_button.isEnabled() == (i == len(typed) - 1)
        if i < len(typed) - 1:
            qtbot.keyClick(spin, Qt.Key.Key_Tab)
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.keyClick(_focused(), Qt.Key.Key_Return)
    answers = blocker.args[0]
    assert answers == {k: float(v) for k, v in zip(NASA_TLX.keys(), typed)}
    assert score("nasa_tlx", answers) == 45.0


def test_form_nasa_tlx_arrow_keys_and_slider_stay_in_sync(qtbot, parent):
    dlg = _form(qtbot, parent, NASA_TLX)
    control = dlg.inputs["mental_demand"]
    for _ in range(3):
        qtbot.keyClick(control.spin, Qt.Key.Key_Up)  # no answer -> 0 -> 5 -> 10
    assert control.value() == 10.0 and control.slider.value() == 2
    slider = dlg.inputs["effort"].slider
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(2, slider.height() // 2))
    assert dlg.answers()["effort"] == 0.0 and dlg.inputs["effort"].spin.text() == "0"


def test_form_nasa_tlx_typed_value_off_step_not_taken(qtbot, parent):
    dlg = _form(qtbot, parent, NASA_TLX)
    spin = dlg.inputs["mental_demand"].spin
    qtbot.keyClicks(spin, "73")
    assert dlg.answers()["mental_demand"] is None
    qtbot.keyClick(spin, Qt.Key.Key_Tab)
    assert spin.text() == UNSET and dlg.answers()["mental_demand"] is None
    assert _focused() is dlg.inputs["physical_demand"].spin


def test_form_sus_by_keyboard_digits_arrows_and_tab(qtbot, parent):
    dlg = _form(qtbot, parent, SUS)
    values = [4, 2, 5, 1, 3, 3, 4, 2, 5, 2]
    for i, (item, v) in enumerate(zip(SUS.items, values)):
        button = _focused()
        assert isinstance(button, QRadioButton) and dlg.inputs[item.key].isAncestorOf(button), item.key
        if item.key == "q2":
            qtbot.keyClick(button, Qt.Key.Key_Right)  # no answer: the next value after the focused "1"
        else:
            qtbot.keyClick(button, str(v))
        assert dlg.answers()[item.key] == float(v)
        assert dlg.ok_button.isEnabled() == (i == len(values) - 1)
        qtbot.keyClick(_focused(), Qt.Key.Key_Tab)
    assert _focused() is dlg.ok_button
    qtbot.keyClick(dlg.ok_button, Qt.Key.Key_Tab)  # Cancel, then round to the first item (no stop on the frame)
    qtbot.keyClick(_focused(), Qt.Key.Key_Tab)
    assert dlg.inputs["q1"].isAncestorOf(_focused()) and _focused().text() == "4"
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.keyClick(dlg.ok_button, Qt.Key.Key_Return)
    assert blocker.args[0] == {f"q{i}": float(v) for i, v in enumerate(values, start=1)}
    assert score("sus", blocker.args[0]) == 77.5


def test_form_sus_arrows_move_the_answer_and_stop_at_the_ends(qtbot, parent):
    dlg = _form(qtbot, parent, SUS)
    qtbot.keyClick(_focused(), "4")
    for key, expected in [(Qt.Key.Key_Right, 5.0), (Qt.Key.Key_Right, 5.0), (Qt.Key.Key_Left, 4.0),
                          (Qt.Key.Key_Up, 3.0)]:
        qtbot.keyClick(_focused(), key)
        assert dlg.answers()["q1"] == expected
    qtbot.keyClick(_focused(), "9")  # not a value of the scale: ignored
    assert dlg.answers()["q1"] == 3.0


def test_form_sus_mouse(qtbot, parent):
    dlg = _form(qtbot, parent, SUS)
    button = dlg.inputs["q3"].group.button(5)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert dlg.answers()["q3"] == 5.0


def test_form_ok_only_when_every_item_answered_via_set_answer(qtbot, parent):
    dlg = _form(qtbot, parent, SUS)
    for key in SUS.keys()[:-1]:
        dlg.set_answer(key, 3)
    assert not dlg.ok_button.isEnabled() and dlg.progress.text() == "9 of 10 answered"
    with qtbot.assertNotEmitted(dlg.answered):
        dlg.accept()
    assert dlg.isVisible()
    dlg.set_answer("q10", 3)
    assert dlg.ok_button.isEnabled()
    dlg.set_answer("q10", None)
    assert not dlg.ok_button.isEnabled() and dlg.answers()["q10"] is None
    dlg.set_answer("q10", 3.0)
    with qtbot.waitSignal(dlg.answered, timeout=2000) as blocker:
        qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] == dict.fromkeys(SUS.keys(), 3.0) and score("sus", blocker.args[0]) == 50.0
    assert not dlg.isVisible()


def test_form_set_answer_refuses_bad_values(qtbot, parent):
    dlg = _form(qtbot, parent, NASA_TLX)
    with pytest.raises(ConfigError, match="^effort: 73 is not on the scale's steps"):
        dlg.set_answer("effort", 73)
    with pytest.raises(ConfigError, match="^effort: 105 is outside"):
        dlg.set_answer("effort", 105)
    with pytest.raises(ConfigError, match="did you mean 'effort'"):
        dlg.set_answer("efort", 50)
    assert dlg.answers() == dict.fromkeys(NASA_TLX.keys())
    sus = _form(qtbot, parent, SUS)
    with pytest.raises(ConfigError, match="^q1: 6 is outside"):
        sus.set_answer("q1", 6)
    assert sus.answers()["q1"] is None


def test_form_escape_rejects_without_answer(qtbot, parent):
    dlg = _form(qtbot, parent, SUS)
    for key in SUS.keys():
        dlg.set_answer(key, 2)
    with qtbot.assertNotEmitted(dlg.answered), qtbot.waitSignal(dlg.rejected, timeout=2000):
        qtbot.keyClick(_focused(), Qt.Key.Key_Escape)
    assert not dlg.isVisible()


def test_form_tab_scrolls_the_focused_item_into_view(qtbot, parent):
    dlg = _form(qtbot, parent, SUS)
    dlg.resize(700, 360)  # too short for the ten items: the rows scroll
    area = dlg.findChild(QScrollArea)
    qtbot.waitUntil(lambda: area.verticalScrollBar().maximum() > 0, timeout=2000)
    for _ in range(9):
        qtbot.keyClick(_focused(), Qt.Key.Key_Tab)
    last = dlg.inputs["q10"]
    assert last.isAncestorOf(_focused())
    top_left = last.mapTo(area.viewport(), QPoint(0, 0))
    assert area.verticalScrollBar().value() > 0
    assert area.viewport().rect().contains(top_left) and top_left.y() + last.height() <= area.viewport().height()
