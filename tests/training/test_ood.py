"""Calibration (temperature, ECE), fitting the out-of-domain gate (``sonolens fit-ood``), its report statistics
(``sonolens ood-eval``) and what ``sonolens eval`` says about a gated model."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from conftest import shared_path, sonolens_proc

from sonolens.pipeline.errors import ConfigError
from sonolens.training import ood
from sonolens.training.calibrate import ece, ece_bootstrap, fit_temperature, nll, reliability, softmax
from sonolens.training.ood_eval import auroc, flagged_share, select_candidate, select_cross_hospital


# ------------------------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_fit_recovers_a_known_temperature(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 3))
    # labels drawn from softmax(logits / T): the model is miscalibrated by exactly T
    p = softmax(logits, true_t)
    y = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(true_t, rel=0.05)
    assert nll(logits, y, t) < nll(logits, y, 1.0)


def test_ece_on_a_toy_example():
    # confidences 0.9 (right), 0.9 (wrong) fall in bin (13/15, 14/15]: accuracy 0.5, confidence 0.9;
    # 0.7 (right) twice fall in bin (10/15, 11/15]: accuracy 1.0, confidence 0.7.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    assert ece(probs, y) == pytest.approx(2 / 4 * 0.4 + 2 / 4 * 0.3)
    r = reliability(probs, y)
    assert r["count"][13] == 2 and r["count"][10] == 2 and sum(r["count"]) == 4
    assert r["accuracy"][13] == pytest.approx(0.5) and r["confidence"][10] == pytest.approx(0.7)
    # one bin: |accuracy - mean confidence|
    assert ece(probs, y, n_bins=1) == pytest.approx(abs(3 / 4 - 0.8))
    # perfectly calibrated: 80 % confident and right 4 times out of 5
    probs = np.tile([0.8, 0.2], (5, 1))
    assert ece(probs, np.array([0, 0, 0, 0, 1])) == pytest.approx(0.0)
    value, ci = ece_bootstrap(probs, np.array([0, 0, 0, 0, 1]), n_boot=200)
    assert value == pytest.approx(0.0) and 0 <= ci[0] <= ci[1] <= 0.8


def test_fit_temperature_rejects_bad_input():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((3, 2)), [0, 1])


# ------------------------------------------------------------------------------------------------------------
# report statistics and the selection rule
# ------------------------------------------------------------------------------------------------------------
def test_auroc_and_flagged_share():
    a, ci = auroc(np.arange(10.0), np.arange(10.0) + 100, n_boot=200)
    assert a == 1.0 and ci == [1.0, 1.0]
    a, _ = auroc(np.array([0.0, 1.0]), np.array([0.5, 0.5]), n_boot=0)
    assert a == pytest.approx(0.5)
    # clustered: two clips, one flagged entirely -> 50 %, a clip bootstrap CI spanning 0..100 %
    f = flagged_share(np.r_[np.zeros(10), np.ones(10) * 5], 1.0, ["a"] * 10 + ["b"] * 10, n_boot=500)
    assert f["share"] == 0.5 and f["per_group"]["b"]["share"] == 1.0 and f["share_ci95"] == [0.0, 1.0]
    f = flagged_share(np.zeros(10), 1.0)
    assert f["share"] == 0.0 and f["ci_method"] == "Wilson"
    assert f["share_ci95"][0] == 0.0 and f["share_ci95"][1] == pytest.approx(0.2775, abs=1e-3)


def test_selection_rule_prefers_fewer_parts_within_the_tie():
    rows = [{"candidate": "a", "n_parts": 3, "min_far_auroc": 0.970},
            {"candidate": "b", "n_parts": 1, "min_far_auroc": 0.967},
            {"candidate": "c", "n_parts": 1, "min_far_auroc": 0.900}]
    assert select_candidate(rows)["candidate"] == "b"
    rows[1]["min_far_auroc"] = 0.960
    assert select_candidate(rows)["candidate"] == "a"


def test_selection_rule_with_cross_scanner_shares():
    """With a cross-scanner share on every row: the lowest share among the rows at AUROC >= 0.95, fewer parts
    within 0.01 of it; without a row at 0.95, back to the highest minimum AUROC."""
    rows = [{"candidate": "best_auc", "n_parts": 1, "min_far_auroc": 0.999, "cross_scanner": 0.80},
            {"candidate": "low_share", "n_parts": 4, "min_far_auroc": 0.960, "cross_scanner": 0.300},
            {"candidate": "tied_fewer", "n_parts": 2, "min_far_auroc": 0.951, "cross_scanner": 0.309},
            {"candidate": "too_weak", "n_parts": 1, "min_far_auroc": 0.940, "cross_scanner": 0.05}]
    assert select_candidate(rows)["candidate"] == "tied_fewer"
    rows[2]["cross_scanner"] = 0.311  # just outside the tie
    assert select_candidate(rows)["candidate"] == "low_share"
    for r in rows:
        r["min_far_auroc"] -= 0.1  # nobody reaches 0.95: the highest minimum AUROC
    assert select_candidate(rows)["candidate"] == "best_auc"
    for r in rows:
        r["cross_scanner"] = None  # one scanner only: the old rule
    assert select_candidate(rows)["candidate"] == "best_auc"


def _features(name: str, sources: dict[str, np.ndarray]) -> ood.SetFeatures:
    """SetFeatures with a 2-d ``pooled:vector`` per item, items named ``/d/<source>/benign/<i>.png``."""
    feats, groups = [], []
    for src, x in sources.items():
        feats.append(x)
        groups += [f"/d/{src}/benign/{i}.png" for i in range(len(x))]
    x = np.concatenate(feats)
    return ood.SetFeatures(name, "in", {"pooled:vector": x, "logits:vector": np.zeros((len(x), 3))}, None, groups,
                           [1] * len(x))


def test_cross_source_shares_by_hand():
    rng = np.random.default_rng(0)
    a_tr, a_va = rng.standard_normal((200, 2)), rng.standard_normal((100, 2))
    far_tr, far_va = rng.standard_normal((50, 2)) + 40, rng.standard_normal((30, 2)) + 40
    cand = "mahalanobis@pooled:vector"
    # two scanners far apart: each gate flags every image of the other
    shares = ood.cross_source_shares(cand, _features("tr", {"a": a_tr, "b": far_tr}),
                                     _features("va", {"a": a_va, "b": far_va}))
    assert shares == {"a": 1.0, "b": 1.0}
    # "b" drawn from the same distribution as "a": the gate fitted on "a" flags about the 2 % its threshold lets
    # through — recomputed here from the pieces
    b_tr, b_va = rng.standard_normal((300, 2)), rng.standard_normal((300, 2))
    train, val = _features("tr", {"a": a_tr, "b": b_tr}), _features("va", {"a": a_va, "b": b_va})
    shares = ood.cross_source_shares(cand, train, val)
    gate = ood.fit_gate(cand, _features("tr", {"a": a_tr}))
    thr = ood.choose_threshold(ood.gate_scores(gate, _features("va", {"a": a_va})))
    others = ood.gate_scores(gate, _features("x", {"b": np.concatenate([b_tr, b_va])}))
    assert shares["a"] == pytest.approx(float((others > thr).mean())) and shares["a"] < 0.1
    assert ood.cross_source_shares(cand, _features("tr", {"a": a_tr}), _features("va", {"a": a_va})) is None


def test_cross_hospital_levels_and_threshold_by_hand():
    """Fitted on each source alone: the level on that source's val scale (0 = median, 1 = the usual threshold)
    where only 5 % of the other source is flagged; the full fit's threshold sits at the highest level."""
    rng = np.random.default_rng(1)
    a_tr, a_va = rng.standard_normal((300, 2)), rng.standard_normal((150, 2))
    b_tr, b_va = rng.standard_normal((300, 2)) + [2.5, 0], rng.standard_normal((150, 2)) + [2.5, 0]
    cand = "mahalanobis@pooled:vector"
    train, val = _features("tr", {"a": a_tr, "b": b_tr}), _features("va", {"a": a_va, "b": b_va})
    levels = ood.cross_source_levels(cand, train, val, 0.05)
    gate_a = ood.fit_gate(cand, _features("tr", {"a": a_tr}))
    own = ood.gate_scores(gate_a, _features("va", {"a": a_va}))
    others = ood.gate_scores(gate_a, _features("x", {"b": np.concatenate([b_tr, b_va])}))
    lo, hi = np.median(own), np.quantile(own, 0.98)
    z = (others - lo) / (hi - lo)
    assert levels["a"] == pytest.approx(np.quantile(z, 0.95))
    assert levels["a"] > 1  # the other source sits beyond the usual threshold
    assert (z > levels["a"]).mean() <= 0.05 + 1 / len(z)
    full = ood.fit_gate(cand, train)
    v = ood.gate_scores(full, val)
    thr = ood.cross_hospital_threshold(v, levels)
    top = max(levels.values())
    assert thr == pytest.approx(np.median(v) + top * (np.quantile(v, 0.98) - np.median(v)))
    # never below the usual threshold, however close the sources
    assert ood.cross_hospital_threshold(v, {"a": 0.3, "b": -1.0}) == pytest.approx(ood.choose_threshold(v))
    assert ood.cross_source_levels(cand, _features("tr", {"a": a_tr}), _features("va", {"a": a_va}), 0.05) is None


def test_cross_hospital_rule_takes_the_highest_minimum_far_share():
    rows = [{"candidate": "high", "n_parts": 4, "min_far_auroc": 1.0, "min_far_flagged_cross": 0.97},
            {"candidate": "tied_fewer", "n_parts": 1, "min_far_auroc": 0.99, "min_far_flagged_cross": 0.962},
            {"candidate": "low", "n_parts": 1, "min_far_auroc": 1.0, "min_far_flagged_cross": 0.5},
            {"candidate": "one_source", "n_parts": 1, "min_far_auroc": 1.0, "min_far_flagged_cross": None}]
    assert select_cross_hospital(rows)["candidate"] == "tied_fewer"
    rows[1]["min_far_flagged_cross"] = 0.959  # just outside the tie
    assert select_cross_hospital(rows)["candidate"] == "high"
    assert select_cross_hospital(rows[3:]) is None


def test_candidate_names_and_thresholds():
    c = ood.parse_candidate("mahalanobis@stem:mean_std,blocks.1:mean_std")
    assert c.keys == ("stem:mean_std", "blocks.1:mean_std") and ood.parse_candidate(c.name) == c
    c = ood.parse_candidate("mahalanobis@stem:corr,stem:logstd")
    assert c.keys == ("stem:corr", "stem:logstd") and ood.parse_candidate(c.name) == c
    assert set(ood.all_keys()) == {k for c in ood.candidates() for k in c.keys} | {"logits:vector"}
    assert ood.parse_candidate("knn5@prelogits:vector").k == 5
    assert ood.parse_candidate("energy").keys == ("logits:vector",)
    assert all(ood.parse_candidate(c.name) == c for c in ood.candidates())
    for bad in ("mystery@pooled:vector", "mahalanobis@nowhere:vector", "energy@pooled:vector"):
        with pytest.raises(Exception, match="out-of-domain method|bad feature|logits only"):
            ood.parse_candidate(bad)
    assert ood.choose_threshold(np.arange(101.0), 0.02) == pytest.approx(98.0)


def test_ledoit_wolf_agrees_with_scikit_learn():
    sk = pytest.importorskip("sklearn.covariance")
    x = np.random.default_rng(0).standard_normal((40, 60))
    x -= x.mean(axis=0)
    cov, shrink = ood.ledoit_wolf(x)
    ref = sk.LedoitWolf(assume_centered=True).fit(x)
    assert shrink == pytest.approx(ref.shrinkage_, rel=1e-6)
    np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------------------
# fit-ood end to end on a tiny dataset, and eval on the result
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Speckle-like images in three class folders and a split CSV (8 train + 6 val + 3 test per class)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    rows = []
    for ci, label in enumerate(("normal", "benign", "malignant")):
        (root / label).mkdir()
        for i in range(17):
            img = np.clip(rng.rayleigh(40 + 20 * ci, (96, 128)), 0, 255).astype(np.uint8)
            name = f"{label}/{label}_{i}.png"
            cv2.imwrite(str(root / name), img)
            rows.append((name, label, f"g{ci}_{i}", "train" if i < 8 else "val" if i < 14 else "test"))
    csv_path = root / "split.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "group", "split"])
        w.writerows(rows)
    return root, csv_path


@pytest.mark.slow
def test_fit_ood_writes_a_gate_that_eval_reports(random_student, tiny_dataset, tmp_path):
    from sonolens.pipeline.engines import OnnxEngine
    from sonolens.training.data import read_split_csv
    from sonolens.training.evaluate import evaluate_model, runtime_input

    root, split = tiny_dataset
    out = tmp_path / "gated.onnx"
    res = ood.fit_and_attach(random_student, out, root, split, candidate="mahalanobis@stem:mean_std,pooled:vector",
                             target_flagged=0.2)
    spec = OnnxEngine(out).meta
    assert spec.ood["candidate"] == "mahalanobis@stem:mean_std,pooled:vector"
    assert spec.ood["n_train"] == 24 and spec.ood["n_val"] == 18 and spec.temperature == res.temperature
    # the threshold is the 0.8 quantile of the validation scores computed by the file's own graph
    engine = OnnxEngine(out)
    val = read_split_csv(split, root, "val")
    scores = np.array([engine.session.run(["ood_score"], {"image": runtime_input(s.path, spec)})[0][0] for s in val])
    np.testing.assert_allclose(scores, res.val_scores, rtol=1e-4)
    assert spec.ood["threshold"] == pytest.approx(np.quantile(res.val_scores, 0.8))
    assert spec.ood["val_flagged"] == pytest.approx((res.val_scores > spec.ood["threshold"]).mean())
    # sonolens eval: ECE at the file's temperature, and the gate's decisions
    r = evaluate_model(out, read_split_csv(split, root, "test"), n_boot=50)
    assert r["temperature"] == spec.temperature and 0 <= r["ece"] <= 1 and r["ece_ci95"] is not None
    g = r["ood"]
    assert g["n"] == 9 and g["n_flagged"] == int((np.array(r["ood_scores"]) > g["threshold"]).sum())
    assert np.allclose(np.array(r["probs"]).sum(axis=1), 1.0, atol=1e-5)


def test_eval_without_gate_has_no_ood_numbers(random_student, tiny_dataset):
    from sonolens.training.data import read_split_csv
    from sonolens.training.evaluate import evaluate_model

    root, split = tiny_dataset
    r = evaluate_model(random_student, read_split_csv(split, root, "test"), n_boot=0)
    assert r["ood"] is None and r["temperature"] == 1.0 and r["ece"] == pytest.approx(r["ece_uncalibrated"])


def test_image_sets_use_the_runtime_preprocessing(random_student):
    from sonolens.models.onnx_export import read_spec

    spec = read_spec(random_student)
    items = list(ood.noise_set("noise", "far", per_kind=1, seed=3).items(spec))
    assert [g for _, g, _ in items] == list(ood.NOISE_KINDS)
    assert all(x.shape == (1, 3, 224, 224) and x.dtype == np.float32 for x, _, _ in items)
    # the same seed gives the same frames
    again = list(ood.noise_set("noise", "far", per_kind=1, seed=3).items(spec))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(items, again))


@pytest.mark.shared
def test_clip_frames_follow_the_runtime_roi(random_student):
    from sonolens.models.onnx_export import read_spec
    from sonolens.pipeline.preprocess import Preprocessor
    from sonolens.pipeline.sources.video import VideoSource

    clip = shared_path("videos", "covid-blues_patient_43_R1.mp4")
    spec = read_spec(random_student)
    ours = [x for _, x in zip(range(12), ood.clip_frames(clip, spec))]
    pre = Preprocessor(spec)
    with VideoSource(clip) as src:
        src.open()
        theirs = [pre(raw.pixels)[0] for _, raw in zip(range(12), src.frames())]
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.shared
@pytest.mark.parametrize("name", ["busi", "busi-mnv3", "busi-uclm"])
def test_shipped_busi_gate_reproduces_its_validation_share(busi_dir, name):
    """A bundled breast file's gate, rescored through its own graph on the validation split it was thresholded on
    (BUSI + BUS-UCLM's, the breast gate split, for both), flags the share its metadata records."""
    from sonolens.pipeline.engines import bundled_model_path

    path = bundled_model_path(name)
    ext = ood.Extractor(path, ["logits:vector"])
    root, csv_path = ood.gate_split(ext.spec, busi_dir.parents[1])
    assert ext.spec.ood["fitted_on"] == f"{csv_path.name} train"
    val = ext.features(ood.split_set("val", "in", root, csv_path, "val", ext.spec.class_names))
    assert val.n == ext.spec.ood["n_val"]
    assert float((val.ood > ext.spec.ood["threshold"]).mean()) == pytest.approx(ext.spec.ood["val_flagged"], abs=1e-6)


@pytest.mark.shared
def test_two_hospital_model_gets_the_union_split_as_its_domain(busi_dir):
    """A breast model trained on busi_uclm.csv (provenance dataset ``bus_uclm+busi``) is fitted on that split's
    train rows, thresholded on its val rows and tested on its test rows; BUS-UCLM is then in-domain, not a
    'near' or report set, and the external set stays report-only."""
    from dataclasses import replace

    from sonolens.models.onnx_export import read_spec
    from sonolens.pipeline.engines import bundled_model_path

    shared = busi_dir.parents[1]
    base = read_spec(bundled_model_path("busi"))
    spec = replace(base, provenance={**base.provenance, "dataset": "bus_uclm+busi"})
    root, csv_path = ood.training_split(spec, shared)
    assert root == shared / "datasets" and csv_path.name == "busi_uclm.csv"
    select = ood.suite_sets(spec, shared, "select")
    assert [s.role for s in select][:1] == ["in"] and select[0].name == "BUSI + BUS-UCLM val"
    assert "(146 images)" in select[0].description and not [s for s in select if s.role == "near"]
    report = ood.suite_sets(spec, shared, "report")
    assert report[0].name == "BUSI + BUS-UCLM test" and "(293 images)" in report[0].description
    assert not [s for s in report if "BUS-UCLM (other" in s.name]
    assert [s.role for s in report if "BrEaST" in s.name] == ["report"]
    with pytest.raises(ConfigError, match="no image suite"):
        ood.training_split(replace(base, provenance={"dataset": "datasets"}), shared)


@pytest.mark.shared
def test_busi_model_gate_reference_is_both_scanners(busi_dir):
    """The BUSI-trained classifier's gate is fitted and selected on BUSI + BUS-UCLM (train / val rows); its report
    keeps its own BUSI test as the in-domain set and adds BUS-UCLM's test rows with the same target."""
    from sonolens.models.onnx_export import read_spec
    from sonolens.pipeline.engines import bundled_model_path

    shared = busi_dir.parents[1]
    spec = read_spec(bundled_model_path("busi-mnv3"))  # the BUSI-only student
    assert ood.training_split(spec, shared)[1].name == "busi.csv"
    assert ood.gate_split(spec, shared) == (shared / "datasets", ood.repo_file("split_csv/busi_uclm.csv"))
    select = ood.suite_sets(spec, shared, "select")
    assert select[0].name == "BUSI + BUS-UCLM val" and "(146 images)" in select[0].description
    assert [s.role for s in select[1:]] == ["far"] * (len(select) - 1)
    report = {s.name: s for s in ood.suite_sets(spec, shared, "report")}
    first = next(iter(report.values()))
    assert first.name == "BUSI test" and first.role == "in"
    uclm = report["BUS-UCLM test (the gate's second scanner)"]
    assert uclm.role == "report" and uclm.target == "<= 5 % flagged" and "(137 images" in uclm.description
    items = list(uclm.items(spec))
    assert len(items) == 137 and all(ood.source_of(g) == "bus_uclm" for _, g, _ in items)
    assert all(y is not None for _, _, y in items)


@pytest.mark.slow
def test_gate_split_apart_from_the_temperature_split(random_student, tiny_dataset, tmp_path):
    """fit_and_attach with a gate split: Gaussians on its train rows, threshold on its val rows, temperature on the
    model's own split's val rows — each recorded."""
    root, split = tiny_dataset
    gate_csv = tmp_path / "gate.csv"
    with split.open() as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows):  # another partition of the same images: 27 train, 15 val, 9 test
        r["split"] = ("train", "train", "val")[i % 3] if r["split"] != "test" else "test"
    with gate_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "group", "split"])
        w.writeheader()
        w.writerows(rows)
    n_train = sum(r["split"] == "train" for r in rows)
    n_val = sum(r["split"] == "val" for r in rows)
    out = tmp_path / "gated.onnx"
    res = ood.fit_and_attach(random_student, out, root, split, gate_root=root, gate_csv=gate_csv,
                             candidate="mahalanobis@stem:corr,stem:logstd", target_flagged=0.2)
    same = ood.fit_and_attach(random_student, tmp_path / "plain.onnx", root, split,
                              candidate="mahalanobis@stem:corr,stem:logstd", target_flagged=0.2)
    rec = res.record
    assert (rec["n_train"], rec["n_val"], rec["fitted_on"]) == (n_train, n_val, "gate.csv train")
    assert rec["temperature_fitted_on"] == "split.csv val" and res.temperature == pytest.approx(same.temperature)
    assert len(res.val_scores) == n_val and res.threshold == pytest.approx(np.quantile(res.val_scores, 0.8))
    assert same.record["n_train"] == 24 and same.record["fitted_on"] == "split.csv train"


@pytest.mark.slow
def test_fit_ood_cross_hospital_threshold(random_student, tmp_path):
    """--cross-hospital on a gate split of two datasets (a second "hospital" with brighter speckle): the file's
    threshold is the full fit's val scale at the highest leave-one-out level, recorded with its rule; a split of one
    dataset is refused in one line."""
    rng = np.random.default_rng(3)
    rows = []
    for hospital, scale in (("hosp_a", 40), ("hosp_b", 70)):
        for ci, label in enumerate(("normal", "benign", "malignant")):
            (tmp_path / hospital / label).mkdir(parents=True)
            for i in range(10):
                img = np.clip(rng.rayleigh(scale + 10 * ci, (96, 128)), 0, 255).astype(np.uint8)
                name = f"{hospital}/{label}/{i}.png"
                cv2.imwrite(str(tmp_path / name), img)
                rows.append((name, label, f"{hospital}{ci}_{i}", "train" if i < 6 else "val"))
    split = tmp_path / "two.csv"
    with split.open("w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label", "group", "split"), *rows])
    cand = "mahalanobis@stem:mean_std"
    res = ood.fit_and_attach(random_student, tmp_path / "g.onnx", tmp_path, split, candidate=cand,
                             target_flagged=0.2, cross_target=0.1, calibrate=False)
    levels = res.record["cross_levels"]
    assert set(levels) == {"hosp_a", "hosp_b"} and res.record["cross_target"] == 0.1
    assert res.record["threshold_rule"].startswith("cross-hospital")
    v = res.val_scores
    assert res.threshold == pytest.approx(ood.cross_hospital_threshold(v, levels, 0.2), rel=1e-3)
    assert res.threshold >= np.quantile(v, 0.8) - 1e-9
    one = tmp_path / "one.csv"
    with one.open("w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label", "group", "split"), *[r for r in rows if r[0].startswith("hosp_a")]])
    with pytest.raises(ConfigError, match="two or more datasets"):
        ood.fit_and_attach(random_student, tmp_path / "h.onnx", tmp_path, one, candidate=cand, cross_target=0.1)


@pytest.mark.parametrize("command", ["ood-eval", "fit-ood"])
def test_command_help(command):
    proc = sonolens_proc(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"sonolens {command}" in proc.stdout and "--model" in proc.stdout


def test_the_candidate_table_from_the_adapter_is_the_committed_reports():
    """The table is now generated from the student's adapter stages: for MobileNetV3-Small it must be, name for name
    and in order, the 31 candidates the committed ``benchmarks/ood_report.json`` was made with."""
    import json as _json
    from pathlib import Path as _Path

    report = _Path(__file__).resolve().parents[2] / "benchmarks" / "ood_report.json"

    def rows(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "rows" and isinstance(v, list) and v and isinstance(v[0], dict) and "candidate" in v[0]:
                    return [r["candidate"] for r in v]
                found = rows(v)
                if found:
                    return found
        if isinstance(o, list):
            for v in o:
                found = rows(v)
                if found:
                    return found
        return None

    assert [c.name for c in ood.candidates()] == rows(_json.loads(report.read_text()))


def test_cross_hospital_table_marks_the_pick_and_says_whether_the_file_carries_it():
    from sonolens.training.ood_eval import _cross_hospital_lines

    sel = {"rows": [{"candidate": "a", "cross_levels": {"x": 2.0, "y": 3.5}, "far_flagged_cross": {"X": 0.99},
                     "min_far_flagged_cross": 0.99},
                    {"candidate": "b", "cross_levels": None, "far_flagged_cross": None, "min_far_flagged_cross": None}],
           "cross_hospital": {"target": 0.05, "chosen": "a", "far_sets": ["X"], "rule": "r"}}
    text = "\n".join(_cross_hospital_lines(sel, {"candidate": "a", "cross_levels": {"x": 2.0}}))
    assert "| **`a`** | 3.50 | 99.0 % | **99.0 %** |" in text and "`b`" not in text
    assert text.rstrip().endswith("Chosen by the cross-hospital rule: `a`.")
    assert "not the gate this file carries" in "\n".join(_cross_hospital_lines(sel, {"candidate": "a"}))
    assert _cross_hospital_lines({"rows": []}, {}) == []


def test_fit_ood_auto_uses_the_cross_hospital_rules_pick(monkeypatch, tmp_path):
    """--candidate auto: the candidate the cross-hospital rule picks (method table without the report-only sets),
    thresholded at the cross-hospital share; refused with an explicit split, and where the split has one dataset."""
    from sonolens.training import ood_cli, ood_eval

    seen: dict = {}

    def table(model, shared, **kw):
        seen["table"] = kw
        return {"cross_hospital": {"chosen": "mahalanobis@stem:corr"}}

    monkeypatch.setattr(ood_eval, "method_table", table)
    class Fitted(Exception):
        pass

    def fit(*a, **kw):
        seen["fit"] = kw
        raise Fitted

    monkeypatch.setattr(ood_cli, "fit_and_attach", fit)
    with pytest.raises(Fitted):
        ood_cli.cli_main(["--model", "busi", "--out", str(tmp_path / "g.onnx"), "--candidate", "auto"])
    assert seen["table"]["skip_report_only"] is True and seen["table"]["cross_target"] == ood_eval.CROSS_TARGET
    assert seen["fit"]["candidate"] == "mahalanobis@stem:corr" and seen["fit"]["cross_target"] == ood_eval.CROSS_TARGET
    with pytest.raises(Fitted):  # another share: chosen and thresholded at that share
        ood_cli.cli_main(["--model", "busi", "--out", str(tmp_path / "g.onnx"), "--candidate", "auto",
                          "--cross-hospital", "0.1"])
    assert seen["table"]["cross_target"] == 0.1 and seen["fit"]["cross_target"] == 0.1
    with pytest.raises(ConfigError, match="leave out --split-file"):
        ood_cli.cli_main(["--model", "busi", "--out", str(tmp_path / "g.onnx"), "--candidate", "auto",
                          "--gate-split-file", "x.csv"])
    monkeypatch.setattr(ood_eval, "method_table", lambda *a, **kw: {"cross_hospital": None})
    with pytest.raises(ConfigError, match="two or more datasets"):
        ood_cli.cli_main(["--model", "busi", "--out", str(tmp_path / "g.onnx"), "--candidate", "auto"])
