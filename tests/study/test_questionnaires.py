"""``study.questionnaires``: the NASA-TLX and SUS forms as data and their scoring, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.study.questionnaires import FORMS, NASA_TLX, SUS, Form, checked_answers, form, score, subscale_scores

TLX_KEYS = ("mental_demand", "physical_demand", "temporal_demand", "performance", "effort", "frustration")


def _sus(*values: float) -> dict[str, float]:
    return {f"q{i}": v for i, v in enumerate(values, start=1)}


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


def test_forms_registry_and_lookup():
    assert set(FORMS) == {"nasa_tlx", "sus"}
    assert form("nasa_tlx") is NASA_TLX and form("sus") is SUS
    assert all(isinstance(f, Form) and f.name == name for name, f in FORMS.items())


def test_nasa_tlx_items_are_the_standard_six():
    assert NASA_TLX.keys() == TLX_KEYS
    assert all((i.low, i.high, i.step) == (0, 100, 5) for i in NASA_TLX.items)
    perf = NASA_TLX.items[3]
    assert (perf.low_anchor, perf.high_anchor) == ("Perfect", "Failure")
    assert "successful" in perf.text
    assert all((i.low_anchor, i.high_anchor) == ("Very low", "Very high") for i in NASA_TLX.items if i is not perf)
    assert "hurried or rushed" in NASA_TLX.items[2].text
    assert "insecure, discouraged, irritated, stressed, and annoyed" in NASA_TLX.items[5].text


def test_sus_items_are_the_standard_ten():
    assert SUS.keys() == tuple(f"q{i}" for i in range(1, 11))
    assert all((i.low, i.high, i.step) == (1, 5, 1) for i in SUS.items)
    assert all((i.low_anchor, i.high_anchor) == ("Strongly disagree", "Strongly agree") for i in SUS.items)
    assert "like to use this system frequently" in SUS.items[0].text
    assert "unnecessarily complex" in SUS.items[1].text
    assert "learn a lot of things" in SUS.items[9].text


def test_sus_all_threes_is_fifty():
    assert score("sus", _sus(*[3] * 10)) == 50.0


def test_sus_best_and_worst():
    assert score("sus", _sus(5, 1, 5, 1, 5, 1, 5, 1, 5, 1)) == 100.0
    assert score("sus", _sus(1, 5, 1, 5, 1, 5, 1, 5, 1, 5)) == 0.0
    assert score("sus", _sus(*[5] * 10)) == 50.0  # agreeing with everything cancels out


def test_sus_mixed_by_hand():
    # answers 4,2,5,1,3,3,4,2,5,2
    # odd items (x-1):  q1 4->3, q3 5->4, q5 3->2, q7 4->3, q9 5->4  = 16
    # even items (5-x): q2 2->3, q4 1->4, q6 3->2, q8 2->3, q10 2->3 = 15
    # (16 + 15) * 2.5 = 77.5
    answers = _sus(4, 2, 5, 1, 3, 3, 4, 2, 5, 2)
    assert score("sus", answers) == 77.5
    parts = subscale_scores("sus", answers)
    assert parts == {"q1": 3, "q2": 3, "q3": 4, "q4": 4, "q5": 2, "q6": 2, "q7": 3, "q8": 3, "q9": 4, "q10": 3}


def test_nasa_tlx_raw_mean_of_six():
    # (80 + 5 + 50 + 30 + 65 + 40) / 6 = 270 / 6 = 45.0; no pairwise weighting
    answers = dict(zip(TLX_KEYS, (80, 5, 50, 30, 65, 40)))
    assert score("nasa_tlx", answers) == 45.0
    assert subscale_scores("nasa_tlx", answers) == {k: float(v) for k, v in answers.items()}
    assert score("nasa_tlx", dict.fromkeys(TLX_KEYS, 0)) == 0.0
    assert score("nasa_tlx", dict.fromkeys(TLX_KEYS, 100)) == 100.0
    # a non-round mean: (70 + 10 + 55 + 25 + 60 + 45) / 6 = 265 / 6
    assert score("nasa_tlx", dict(zip(TLX_KEYS, (70, 10, 55, 25, 60, 45)))) == pytest.approx(265 / 6)


def test_unknown_form_suggests_closest():
    with pytest.raises(ConfigError) as err:
        form("nasa-tlx")
    assert "did you mean 'nasa_tlx'" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        score("SUS", _sus(*[3] * 10))
    assert "'SUS'" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        form("xyzzy")
    assert "nasa_tlx" in _one_line(err) and "sus" in str(err.value)


def test_missing_item_is_named():
    answers = _sus(*[3] * 10)
    del answers["q7"]
    with pytest.raises(ConfigError) as err:
        score("sus", answers)
    assert "'q7'" in _one_line(err)
    with pytest.raises(ConfigError, match="'frustration'"):
        subscale_scores("nasa_tlx", dict.fromkeys(TLX_KEYS[:5], 50))


@pytest.mark.parametrize("value", [0, 6, -1, 5.5])
def test_sus_value_off_scale_names_item(value):
    answers = _sus(*[3] * 10)
    answers["q4"] = value
    with pytest.raises(ConfigError) as err:
        score("sus", answers)
    assert _one_line(err).startswith("q4:")


@pytest.mark.parametrize("value", [73, 2.5, 101, -5])
def test_tlx_value_off_scale_or_step_names_item(value):
    answers = dict.fromkeys(TLX_KEYS, 50)
    answers["effort"] = value
    with pytest.raises(ConfigError) as err:
        score("nasa_tlx", answers)
    assert _one_line(err).startswith("effort:")


def test_sus_half_point_off_step():
    with pytest.raises(ConfigError, match=r"q2: 2\.5 is not on the scale's steps"):
        score("sus", _sus(3, 2.5, 3, 3, 3, 3, 3, 3, 3, 3))


@pytest.mark.parametrize("value", ["3", None, True, math.nan, math.inf])
def test_non_numbers_refused(value):
    answers = _sus(*[3] * 10)
    answers["q1"] = value
    with pytest.raises(ConfigError, match="^q1: expected a number"):
        score("sus", answers)


def test_unknown_item_key_refused_with_suggestion():
    answers = dict.fromkeys(TLX_KEYS, 50)
    answers["frustation"] = 50
    with pytest.raises(ConfigError, match="did you mean 'frustration'"):
        score("nasa_tlx", answers)
    with pytest.raises(ConfigError, match="must be a mapping"):
        checked_answers(SUS, [3] * 10)


def test_float_and_int_answers_score_alike():
    assert score("sus", _sus(*[4.0, 2.0] * 5)) == score("sus", _sus(*[4, 2] * 5)) == 75.0
