"""``sonolens seed-summary``: mean ± sd over seeds and paired differences, checked against hand computation."""

from __future__ import annotations

import json
import math

import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.training import seed_summary as ss


def _ext(path, models, val=None):
    """A minimal external-eval JSON: {name: {set: (acc, auc, sens)}}; ``val``: {name: validation accuracy}."""
    data = {"models": {name: {"sets": {s: {"accuracy_3class": a, "auc": u, "sens_at_90_spec": v}
                                       for s, (a, u, v) in sets.items()},
                              "provenance": {"val_accuracy": (val or {}).get(name)} if name in (val or {}) else {}}
                       for name, sets in models.items()}}
    path.write_text(json.dumps(data))
    return path


def test_means_sds_and_paired_differences_match_hand_computation(tmp_path, capsys):
    a = _ext(tmp_path / "a.json", {"kd_s0": {"busi": (0.80, 0.90, 0.6)}, "kd_s1": {"busi": (0.70, 0.88, 0.5)},
                                   "kd_s2": {"busi": (0.75, 0.86, 0.4)}, "teacher": {"busi": (0.85, 0.95, 0.7)}})
    b = _ext(tmp_path / "b.json", {"ce_s0": {"busi": (0.70, 0.80, 0.5)}, "ce_s1": {"busi": (0.72, 0.85, 0.5)},
                                   "ce_s2": {"busi": (0.65, 0.84, 0.3)}},
             val={"ce_s0": 0.70, "ce_s1": 0.74, "ce_s2": 0.71})
    runs = ss.read_runs([a, b])
    assert ss.best_by_validation(runs) == ("ce_s1", 0.74)  # the only runs with a recorded val accuracy
    tie = _ext(tmp_path / "tie.json", {"x_s0": {"busi": (0.7, 0.8, 0.5)}, "x_s1": {"busi": (0.7, 0.8, 0.5)}},
               val={"x_s0": 0.74, "x_s1": 0.74})
    data = json.loads(tie.read_text())
    data["models"]["x_s0"]["provenance"]["val_macro_f1"] = 0.70
    data["models"]["x_s1"]["provenance"]["val_macro_f1"] = 0.72
    tie.write_text(json.dumps(data))
    assert ss.best_by_validation(ss.read_runs([tie])) == ("x_s1", 0.74)  # equal accuracy: the higher macro-F1
    assert set(runs) == {"kd", "ce", "teacher"} and set(runs["kd"]) == {0, 1, 2} and set(runs["teacher"]) == {None}
    rows = {r["recipe"]: r for r in ss.summarise(runs)}
    assert rows["kd"]["accuracy_3class"]["mean"] == pytest.approx(0.75)
    assert rows["kd"]["accuracy_3class"]["sd"] == pytest.approx(0.05)  # deviations 0.05, -0.05, 0: sqrt(0.005/2)
    assert rows["teacher"]["n_seeds"] == 1 and math.isnan(rows["teacher"]["auc"]["sd"])
    (p,) = ss.paired(runs, "kd", "ce")
    d = p["accuracy_3class"]
    assert d["values"] == pytest.approx([0.10, -0.02, 0.10])
    assert d["mean"] == pytest.approx(0.06) and d["sd"] == pytest.approx(math.sqrt((0.04**2 * 2 + 0.08**2) / 2))
    lo, hi = d["t95"]
    assert (hi - lo) / 2 == pytest.approx(4.303 * d["sd"] / math.sqrt(3))
    assert ss.cli_main([str(a), str(b), "--paired", "kd-ce", "--md", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| kd | busi | 3 | 75.0 ± 5.0 | 0.880 ± 0.020 | 50.0 ± 10.0 |" in text
    assert "| teacher | busi | 1 | 85.0 | 0.950 | 70.0 |" in text
    assert "| ce | val (selection) | 3 | 71.7 ± 2.1 | – | – |" in text
    assert "Highest validation accuracy among the seeded runs: **ce_s1** (74.0 %)." in text
    assert "| kd − ce | busi | 6.0 ± " in text and "(10.0, -2.0, 10.0)" in text
    assert capsys.readouterr().out == text


def test_bad_inputs_are_config_errors(tmp_path):
    a = _ext(tmp_path / "a.json", {"kd_s0": {"busi": (0.8, 0.9, 0.6)}, "kd_s1": {"busi": (0.7, 0.9, 0.5)},
                                   "teacher": {"busi": (0.8, 0.9, 0.6)}})
    b = _ext(tmp_path / "b.json", {"ce_s0": {"busi": (0.7, 0.8, 0.5)}})
    runs = ss.read_runs([a, b])
    with pytest.raises(ConfigError, match="seeds differ"):
        ss.paired(runs, "kd", "ce")
    with pytest.raises(ConfigError, match="no recipe 'x'"):
        ss.paired(runs, "kd", "x")
    with pytest.raises(ConfigError, match="has no seeds"):
        ss.paired(runs, "teacher", "kd")
    with pytest.raises(ConfigError, match="appears twice"):
        ss.read_runs([a, a])
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError, match="not a 'sonolens external-eval"):
        ss.read_runs([tmp_path / "bad.json"])
    with pytest.raises(ConfigError, match="A-B"):
        ss.cli_main([str(a), "--paired", "kd"])
