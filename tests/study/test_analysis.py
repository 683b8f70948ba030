"""``study.analysis`` against a small example computed by hand, ``study.report.reference_condition`` and
``study.readings.collect`` (the plan joined with hand-written logs) — no Qt, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sonolens.study.analysis import auc, bootstrap, cohen_kappa, fleiss_kappa, measures, pooled, reader_stats, wilson
from sonolens.study.readings import COLUMNS, collect
from sonolens.study.report import condition_summary, reference_condition

POS = "malignant"


def _row(reader, case, truth, call, confidence, model_call, model_state, rt_s):
    return {"reader": reader, "case": case, "condition": "ai", "display": "ai", "truth": truth, "call": call,
            "confidence": confidence, "model_call": model_call, "model_state": model_state, "rt_s": rt_s,
            "answered": 1}


# 2 readers × 5 cases × 1 condition; positive = malignant (c1, c2), negative = c3, c4, c5.
#            case  truth        call         conf  model        state             rt
R1 = [_row("R1", "c1", "malignant", "malignant", 90, "malignant", "ok", 3.0),
      _row("R1", "c2", "malignant", "benign", 40, "malignant", "ok", 5.0),
      _row("R1", "c3", "benign", "benign", 40, "benign", "ok", 4.0),
      _row("R1", "c4", "normal", "normal", 10, "benign", "ok", 2.0),
      _row("R1", "c5", "benign", "malignant", 70, "malignant", "out_of_domain", 6.0)]
R2 = [_row("R2", "c1", "malignant", "malignant", 80, "malignant", "ok", 2.0),
      _row("R2", "c2", "malignant", "malignant", 60, "malignant", "ok", 4.0),
      _row("R2", "c3", "benign", "benign", 30, "benign", "ok", 6.0),
      _row("R2", "c4", "normal", "benign", 30, "benign", "ok", 8.0),
      _row("R2", "c5", "benign", "benign", 50, "malignant", "ok", 10.0)]
ROWS = R1 + R2

# By hand, R1:
#   accuracy: c1 ✓ c2 ✗ c3 ✓ c4 ✓ c5 ✗ → 3/5 = 0.6
#   sensitivity: c1 ✓ (malignant), c2 ✗ (benign) → 1/2;  specificity: c3 ✓, c4 ✓, c5 ✗ (called malignant) → 2/3
#   AUC: positives {90, 40}, negatives {40, 10, 70}: 90 beats all three (3); 40 ties 40 (½), beats 10 (1),
#        loses to 70 (0) → 4.5 / 6 = 0.75
#   Wilson 95 % of the accuracy 3/5, z = 1.959964, z² = 3.841459:
#        denom = 1 + z²/5 = 1.768292;  centre = (0.6 + z²/10) / denom = 0.984146 / 1.768292 = 0.556552
#        half = z·√(0.6·0.4/5 + z²/100) / denom = 1.959964·√0.086415 / 1.768292 = 0.576158 / 1.768292 = 0.325827
#        → (0.2307, 0.8824)
#   kappa with the model (state ok only: c1..c4; c5 out_of_domain is left out):
#        R1 [mal, ben, ben, nor] vs model [mal, mal, ben, ben] → po = 2/4 = 0.5
#        pe = (mal 1·2 + ben 2·2 + nor 1·0) / 16 = 6/16 = 0.375 → κ = (0.5 − 0.375) / 0.625 = 0.2
#   RT median of 3, 5, 4, 2, 6 → 4
# By hand, R2:
#   accuracy 4/5 = 0.8 (c4 normal called benign); sensitivity 2/2 = 1; specificity 3/3 = 1
#   AUC: positives {80, 60}, negatives {30, 30, 50}: all beaten → 6/6 = 1
#   Wilson of the sensitivity 2/2: the upper bound is 1 and the lower n/(n + z²) = 2/5.841459 = 0.3424
#   kappa with the model (all five ok): R2 [mal, mal, ben, ben, ben] vs model [mal, mal, ben, ben, mal]
#        po = 4/5 = 0.8;  pe = (mal 2·3 + ben 3·2) / 25 = 0.48 → κ = 0.32 / 0.52 = 8/13 = 0.615385
#   RT median of 2, 4, 6, 8, 10 → 6
# Pooled (mean of the two readers): accuracy 0.7, sensitivity 0.75, specificity (2/3 + 1)/2 = 5/6, AUC 0.875
# Fleiss' kappa, m = 2 raters; calls per case (benign, malignant, normal):
#   c1 (0,2,0) P=1;  c2 (1,1,0) P=0;  c3 (2,0,0) P=1;  c4 (1,0,1) P=0;  c5 (1,1,0) P=0   [P_i = (Σn² − 2) / 2]
#   P_bar = 2/5 = 0.4;  p_j = benign 5/10, malignant 4/10, normal 1/10;  P_e = 0.25 + 0.16 + 0.01 = 0.42
#   κ = (0.4 − 0.42) / (1 − 0.42) = −0.02 / 0.58 = −0.034483
FLEISS = -0.02 / 0.58


def test_measures_of_one_reader_by_hand():
    assert measures(R1, POS) == pytest.approx({"accuracy": 0.6, "sensitivity": 0.5, "specificity": 2 / 3,
                                               "auc": 0.75})
    assert measures(R2, POS) == pytest.approx({"accuracy": 0.8, "sensitivity": 1.0, "specificity": 1.0,
                                               "auc": 1.0})


def test_reader_stats_by_hand():
    s = reader_stats(R1, POS)
    assert s["n"] == 5
    assert (s["accuracy"]["k"], s["accuracy"]["n"], s["accuracy"]["value"]) == (3, 5, 0.6)
    assert s["accuracy"]["ci"] == pytest.approx((0.2307, 0.8824), abs=1e-4)
    assert (s["sensitivity"]["k"], s["sensitivity"]["n"]) == (1, 2)
    assert (s["specificity"]["k"], s["specificity"]["n"]) == (2, 3)
    assert s["auc"] == pytest.approx(0.75)
    assert s["kappa_model"] == pytest.approx(0.2)
    assert s["calls_with_model"] == 4
    assert s["rt_median_s"] == 4.0

    s = reader_stats(R2, POS)
    assert s["sensitivity"]["value"] == 1.0
    assert s["sensitivity"]["ci"] == pytest.approx((0.3424, 1.0), abs=1e-4)
    assert s["kappa_model"] == pytest.approx(8 / 13)
    assert s["calls_with_model"] == 5
    assert s["rt_median_s"] == 6.0


def test_wilson_and_auc_edges():
    assert wilson(0, 0) is None
    assert wilson(3, 5) == pytest.approx((0.2307, 0.8824), abs=1e-4)
    lo, hi = wilson(0, 4)
    assert lo == 0.0 and hi == pytest.approx(3.841459 / (4 + 3.841459), abs=1e-6)  # upper z²/(n + z²) at k = 0
    assert auc([0.3, 0.3], [True, False]) == 0.5  # a tie counts one half
    assert auc([0.9, 0.1], [True, True]) is None and auc([], []) is None


def test_pooled_is_the_mean_of_the_readers():
    assert pooled(ROWS, POS) == pytest.approx({"accuracy": 0.7, "sensitivity": 0.75, "specificity": 5 / 6,
                                               "auc": 0.875})
    # without R2's c5 the readers weigh differently than the rows: R2 accuracy 3/4 → (0.6 + 0.75) / 2 = 0.675
    # (pooling the rows would give 6/9 = 0.667); R2 specificity 2/2 → (2/3 + 1)/2; R2 AUC {80,60} vs {30,30} = 1
    p = pooled(R1 + R2[:4], POS)
    assert p == pytest.approx({"accuracy": 0.675, "sensitivity": 0.75, "specificity": 5 / 6, "auc": 0.875})


def test_fleiss_kappa_by_hand():
    items = [[a["call"], b["call"]] for a, b in zip(R1, R2)]
    assert fleiss_kappa(items) == pytest.approx(FLEISS)
    summary = condition_summary(ROWS, POS, n_boot=200, seed=0)
    assert summary["fleiss_kappa"] == pytest.approx(FLEISS)
    assert (summary["answered"], summary["readers"], summary["cases"]) == (10, 2, 5)
    assert summary["calls_without_prediction"] == 1  # R1's c5: out_of_domain under a displayed model
    assert summary["rt_median_s"] == 4.5  # 2 2 3 4 [4 5] 6 6 8 10
    assert summary["pooled"]["accuracy"]["value"] == pytest.approx(0.7)
    assert summary["per_reader"]["R1"]["kappa_model"] == pytest.approx(0.2)


def test_cohen_kappa_undefined_is_none():
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["benign"], ["benign", "malignant"]) is None  # not the same items
    assert cohen_kappa(["benign", "benign"], ["benign", "benign"]) is None  # chance agreement 1
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)  # po 0, pe ½


def test_fleiss_kappa_undefined_is_none():
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([["a", "b"], ["a", "b", "b"]]) is None  # unequal rater counts
    assert fleiss_kappa([["a"], ["b"]]) is None  # one rater
    assert fleiss_kappa([["a", "a"], ["a", "a"]]) is None  # one category only: P_e = 1
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)


def test_bootstrap_contains_the_point_and_is_seeded():
    def stat(s):
        return pooled(s, POS)

    point = pooled(ROWS, POS)
    ci = bootstrap(ROWS, stat, n_boot=400, seed=5)
    assert set(ci) == {"accuracy", "sensitivity", "specificity", "auc"}
    for k, v in point.items():
        assert ci[k] is not None and ci[k][0] <= v <= ci[k][1], k
    assert ci["accuracy"][0] < ci["accuracy"][1]
    assert bootstrap(ROWS, stat, n_boot=400, seed=5) == ci
    assert bootstrap(ROWS, stat, n_boot=400, seed=6) != ci


def test_reference_condition():
    def plan(*conds):
        return {"conditions": [{"name": n, "display": d} for n, d in conds]}

    assert reference_condition(plan(("ai", "ai"), ("blinded", "blinded"), ("off", "off"))) == "off"
    assert reference_condition(plan(("ai", "ai"), ("hidden", "blinded"), ("plain", "off"), ("off", "off"))) == \
        "plain"
    assert reference_condition(plan(("ai", "ai"), ("blinded", "blinded"))) == "blinded"
    assert reference_condition(plan(("first_look", "ai"), ("second_look", "ai"))) == "first_look"


# -- study.readings.collect ---------------------------------------------------------------------------------------

CLASS_NAMES = ["benign", "malignant", "normal"]  # the model's classes: the positive one is not the last


def _reading(reader, session, order, case, condition, block="A"):
    return {"reader": reader, "group": 1, "session": session, "block": block, "block_position": 1,
            "condition": condition, "order": order, "case": case}


PLAN = {
    "study": "s1", "seed": 0, "positive": "malignant",
    "cases": [{"id": "c1", "truth": "malignant"}, {"id": "c2", "truth": "benign"}, {"id": "c3", "truth": "normal"}],
    "conditions": [{"name": "ai", "display": "ai"}, {"name": "off", "display": "off"}],
    "readings": [_reading("R1", 1, 1, "c1", "ai"), _reading("R1", 1, 2, "c2", "ai"),
                 _reading("R1", 1, 3, "c3", "off", "B"), _reading("R1", 2, 1, "c1", "off"),
                 _reading("R2", 1, 1, "c1", "ai")],
}


def _header(participant, condition, study="s1"):
    return {"type": "header", "participant": participant, "condition": condition, "study": study,
            "session_id": f"{study}_{participant}_s1", "session": 1, "study_condition": condition,
            "class_names": CLASS_NAMES, "source": "worklist", "t0_ns": 0}


def _ev(kind, t, **fields):
    return {"type": "event", "kind": kind, "frame_index": None, "t_s": t, "wall_time": 1000.0 + t, **fields}


def _call(t, case, label, confidence, model_label=None, model_state=None, model_probs=None):
    return _ev("call", t, case=case, label=label, confidence=confidence, model_label=model_label,
               model_state=model_state, model_probs=model_probs)


def _log(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_collect_joins_the_plan_with_the_logs(tmp_path):
    a = _log(tmp_path / "a.jsonl", [
        _header("R1", "ai"),
        _ev("case_shown", 1.0, case="c1"),
        _ev("pause", 3.0), _ev("resume", 7.5),  # 4.5 s paused while c1 is on screen
        _call(10.0, "c1", "malignant", 80, "malignant", "ok", [0.1, 0.7, 0.2]),
        _ev("case_shown", 11.0, case="c2"),
        _call(13.5, "c2", "Benign", 20, None, "out_of_domain", None),
        _call(14.0, "c2", "malignant", 90, "malignant", "ok", [0.2, 0.6, 0.2]),  # a second call: a duplicate
        _ev("case_shown", 15.0, case="c9"),
        _call(16.0, "c9", "normal", 10),  # c9 is in no plan
        _call(17.0, "c3", "normal", 10),  # c3 is planned for R1 under off, not ai
        {"type": "end", "t_s": 18.0},
    ])
    b = _log(tmp_path / "b.jsonl", [
        _header("R1", "off"),
        _ev("case_shown", 0.5, case="c3"),
        _call(3.0, "c3", "normal", 5, None, None, None),
    ])
    other = _log(tmp_path / "c.jsonl", [_header("R1", "ai", study="another"), _ev("case_shown", 0.0, case="c1"),
                                        _call(1.0, "c1", "malignant", 99)])
    junk = _log(tmp_path / "d.jsonl", [{"hello": "world"}])

    data = collect(PLAN, [a, b, other, junk])
    assert data.duplicates == 1 and data.unplanned == 2
    assert data.logs_used == [str(a), str(b)]
    assert len(data.logs_ignored) == 2
    assert data.logs_ignored[0].startswith(f"{other}: ") and "not a session of study 's1'" in data.logs_ignored[0]
    assert data.logs_ignored[1].startswith(f"{junk}: ") and "no header" in data.logs_ignored[1]

    rows = {(r["reader"], r["case"], r["condition"]): r for r in data.rows}
    assert len(data.rows) == 5 and set(rows) == {("R1", "c1", "ai"), ("R1", "c2", "ai"), ("R1", "c3", "off"),
                                                 ("R1", "c1", "off"), ("R2", "c1", "ai")}
    assert all(set(r) >= set(COLUMNS) for r in data.rows)

    r = rows[("R1", "c1", "ai")]
    assert (r["answered"], r["call"], r["correct"], r["confidence"], r["truth"], r["display"]) == \
        (1, "malignant", 1, 80, "malignant", "ai")
    assert r["rt_s"] == pytest.approx(4.5)  # 10.0 − 1.0 − (7.5 − 3.0)
    assert r["model_p_positive"] == pytest.approx(0.7)  # class_names.index("malignant") = 1
    assert (r["model_call"], r["model_state"], r["log"], r["call_time"]) == ("malignant", "ok", "a.jsonl", 1010.0)
    assert (r["study"], r["session"], r["order"], r["block"]) == ("s1", 1, 1, "A")

    r = rows[("R1", "c2", "ai")]  # the first call counts, lower-cased; the earlier pause is not c2's
    assert (r["answered"], r["call"], r["correct"], r["confidence"]) == (1, "benign", 1, 20)
    assert r["rt_s"] == pytest.approx(2.5)
    assert r["model_call"] is None and r["model_p_positive"] is None and r["model_state"] == "out_of_domain"

    r = rows[("R1", "c3", "off")]
    assert (r["answered"], r["call"], r["correct"], r["log"], r["display"]) == (1, "normal", 1, "b.jsonl", "off")
    assert r["rt_s"] == pytest.approx(2.5)

    for key in (("R1", "c1", "off"), ("R2", "c1", "ai")):  # planned, never answered
        r = rows[key]
        assert r["answered"] == 0 and r["call"] == "" and r["rt_s"] == "" and r["truth"] == "malignant"


def test_collect_without_the_positive_class_in_the_header(tmp_path):
    header = {**_header("R2", "ai"), "class_names": ["benign", "normal"]}
    log = _log(tmp_path / "x.jsonl", [header, _ev("case_shown", 2.0, case="c1"), _ev("pause", 2.5),
                                      _call(9.0, "c1", "benign", 30, "benign", "ok", [0.8, 0.2])])
    data = collect(PLAN, [log])
    r = next(r for r in data.rows if r["reader"] == "R2")
    assert r["answered"] == 1 and r["correct"] == 0 and r["model_p_positive"] is None
    assert r["rt_s"] == pytest.approx(0.5)  # paused from 2.5 and never resumed: 9.0 − 2.0 − 6.5
    assert sum(r["answered"] for r in data.rows) == 1
