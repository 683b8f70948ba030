"""Leave-one-hospital-out validation (training.loho): the split files never hold a test row, the metrics of one
run, and the rule over recipes (on the seeds every recipe completed; ties broken by balanced accuracy)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.training import loho
from sonolens.training.loho import HELDOUT, TIE, loho_rows, pick, run_metrics, summarise, write_loho_splits

CLASSES = ["normal", "benign", "malignant"]


def _rows():
    out = []
    for ds in ("busi", "bus_uclm"):
        for split in ("train", "val", "test"):
            out.append({"file": f"{ds}/{split}.png", "label": "benign", "group": "", "split": split, "dataset": ds})
    return out


def test_split_rows_keep_the_training_hospital_and_hold_out_the_other_without_test_rows():
    rows = loho_rows(_rows(), "busi")
    assert [(r["dataset"], r["split"]) for r in rows] == [("busi", "train"), ("busi", "val"),
                                                          ("bus_uclm", HELDOUT), ("bus_uclm", HELDOUT)]
    with pytest.raises(ConfigError):
        loho_rows(_rows(), "breast")


def test_the_committed_split_files_are_what_the_union_split_makes(tmp_path):
    committed = Path(__file__).resolve().parents[2] / "training" / "split_csv"
    written = write_loho_splits(committed / "busi_uclm.csv", tmp_path)
    for path in written:
        assert path.read_bytes() == (committed / path.name).read_bytes()
        with open(path, newline="", encoding="utf-8") as fh:
            assert "test" not in {r["split"] for r in csv.DictReader(fh)}


def _result(recipe, hospital, seed, probs, y, split=HELDOUT):
    return {"model": f"runs/loho_{recipe}_{hospital}_s{seed}/best.pt", "split": split, "class_names": CLASSES,
            "probs": probs, "y_true": y}


def test_run_metrics_reads_the_lesions_auc_and_balanced_accuracy():
    # two benign (1), two malignant (2), one normal (0); malignancy m/(b+m) ranks one pair wrongly
    probs = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]]
    y = [0, 1, 1, 2, 2]
    m = run_metrics(_result("a", "busi", 0, probs, y))
    assert m["auc_bm"] == pytest.approx(0.75)  # malignant 0.778, 0.333 against benign 0.111, 0.667: 3 of 4 pairs
    assert m["balanced_accuracy"] == pytest.approx(np.mean([1.0, 0.5, 0.5])) and m["accuracy"] == pytest.approx(0.6)
    with pytest.raises(ConfigError):
        run_metrics(_result("a", "busi", 0, probs, y, split="test"))


def _recipe(auc, bal, directions=("busi", "bus_uclm")):
    return {"auc_bm": auc, "balanced_accuracy": bal, "directions": list(directions)}


def test_the_rule_picks_the_highest_auc_and_breaks_a_tie_by_balanced_accuracy():
    assert pick({"a": _recipe(0.70, 0.4), "b": _recipe(0.75, 0.3)}) == "b"
    assert pick({"a": _recipe(0.75 - TIE / 2, 0.5), "b": _recipe(0.75, 0.3)}) == "a"  # a tie: balanced acc. decides
    assert pick({"a": _recipe(0.9, 0.9, ("busi",)), "b": _recipe(0.6, 0.3)}) == "b"  # one direction only: not judged
    assert pick({"a": _recipe(0.9, 0.9, ("busi",))}) is None


def test_recipes_are_compared_on_the_seeds_every_recipe_completed():
    good, bad = [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], [[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]
    y = [1, 2]
    results = [_result("a", h, 0, good, y) for h in ("busi", "bus_uclm")]
    results += [_result("b", h, 0, bad, y) for h in ("busi", "bus_uclm")]
    results += [_result("b", h, 1, good, y) for h in ("busi", "bus_uclm")]  # a seed recipe a lacks: left out
    s = summarise(results)
    assert s["seeds"] == [0] and s["recipes"]["b"]["auc_bm"] == 0.0 and s["pick"] == "a"
    assert len(s["runs"]) == 6  # every run is listed
    assert s["paired"]["b"]["diffs"] == [1.0] and s["paired"]["b"]["ci95"] is None  # one seed: no interval
    with pytest.raises(ConfigError, match="same recipe"):
        summarise(results + results[:1])


def test_letterbox_and_doppler_box_augmentations():
    torch = pytest.importorskip("torch")
    from sonolens.training.augment import AugmentConfig, DopplerBox, Letterbox, scanner_ops

    x = torch.full((3, 64, 80), 0.5)
    torch.manual_seed(0)
    y = Letterbox((0.6, 0.6), p=1.0)(x)
    assert y.shape == x.shape and float(y.min()) == 0.0  # a black frame around the shrunk image
    inside = (y[0] > 0).nonzero()
    h, w = int(inside[:, 0].max() - inside[:, 0].min() + 1), int(inside[:, 1].max() - inside[:, 1].min() + 1)
    assert (h, w) == (int(64 * 0.6), int(80 * 0.6)) and torch.allclose(y[0][y[0] > 0], torch.tensor(0.5))
    assert torch.equal(Letterbox((0.6, 0.9), p=0.0)(x), x) and torch.equal(DopplerBox(p=0.0)(x), x)
    z = DopplerBox(p=1.0)(x)
    assert z.shape == x.shape and not torch.equal(z, x) and torch.equal(z[0], z[1])  # grey, every channel alike
    kinds = [type(op).__name__ for op in scanner_ops(AugmentConfig(letterbox_p=0.3, doppler_p=0.2)) if op]
    assert kinds[-2:] == ["DopplerBox", "Letterbox"]


def _run(tmp_path, name, acc, f1, epoch=3):
    d = tmp_path / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"name": name, "best": {"epoch": epoch, "val_acc": acc,
                                                                        "val_macro_f1": f1}}))
    return str(d)


def test_pick_seed_takes_the_highest_val_accuracy_then_macro_f1(tmp_path, capsys):
    a = _run(tmp_path, "u_s0", 0.74, 0.70)
    b = _run(tmp_path, "u_s1", 0.76, 0.60)
    c = _run(tmp_path, "u_s2", 0.76, 0.65)
    out = tmp_path / "pick.json"
    assert loho.cli_main(["pick-seed", a, b, c, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["picked"] == c
    assert "u_s2: val accuracy 0.7600, macro-F1 0.6500 (epoch 3)  <- picked" in capsys.readouterr().out
    # a full tie: the run given first
    d = _run(tmp_path, "u_s3", 0.76, 0.65)
    assert loho.pick_seed([loho.run_summary(d), loho.run_summary(c)])["name"] == "u_s3"


def test_pick_seed_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "running").mkdir()
    with pytest.raises(ConfigError, match="has not finished"):
        loho.cli_main(["pick-seed", str(tmp_path / "running")])


def test_an_unwritable_output_is_refused_before_any_run_is_read(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        loho.cli_main(["pick-seed", str(tmp_path / "no_such_run"), "--json", str(blocker / "pick.json")])


def test_pick_recipe_keeps_the_incumbent_unless_the_challenger_wins_by_the_tie_band(tmp_path, capsys):
    old = [_run(tmp_path, f"old_s{s}", acc, 0.7) for s, acc in enumerate((0.74, 0.70, 0.72))]   # mean 0.72
    close = [_run(tmp_path, f"close_s{s}", acc, 0.7) for s, acc in enumerate((0.71, 0.73, 0.725))]  # 0.7217
    better = [_run(tmp_path, f"new_s{s}", acc, 0.7) for s, acc in enumerate((0.75, 0.72, 0.74))]   # 0.7367
    out = tmp_path / "pick.json"
    assert loho.cli_main(["pick-recipe", "--recipe", "old", *old, "--recipe", "close", *close,
                          "--json", str(out)]) == 0
    assert json.loads(out.read_text())["picked"] == old[0]          # within 0.01: the incumbent, its best seed
    assert loho.cli_main(["pick-recipe", "--recipe", "old", *old, "--recipe", "new", *better,
                          "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["recipe"], result["picked"]) == ("new", better[0])
    assert "new: mean val accuracy 0.7367 over seeds 0,1,2" in capsys.readouterr().out


def test_pick_recipe_compares_only_the_seeds_every_recipe_finished(tmp_path):
    old = [_run(tmp_path, f"old_s{s}", acc, 0.7) for s, acc in enumerate((0.70, 0.70, 0.99))]
    new = [_run(tmp_path, f"new_s{s}", acc, 0.7) for s, acc in enumerate((0.75, 0.75))]
    result = loho.pick_recipe({"old": [loho.run_summary(r) for r in old], "new": [loho.run_summary(r) for r in new]})
    assert result["seeds"] == [0, 1] and result["recipe"] == "new"   # old's seed 2 (0.99) is not compared
    with pytest.raises(ConfigError, match="_s<seed>"):
        loho.pick_recipe({"x": [loho.run_summary(_run(tmp_path, "noseed", 0.7, 0.7))]})
    with pytest.raises(ConfigError, match="same name"):
        loho.cli_main(["pick-recipe", "--recipe", "a", old[0], "--recipe", "a", old[1]])
