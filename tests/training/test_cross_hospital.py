"""Other hospitals' scanners: metadata readers, the BUSI + BUS-UCLM split, external evaluation, Grad-CAM localisation,
temporal stability, scanner augmentations and the feature-distillation stage.

Synthetic data for the logic; ``../shared`` (skipped when absent) for the committed split and the real readers.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sonolens.pipeline.errors import ConfigError
from sonolens.training import evaluate as ev
from sonolens.training import external_eval as xe
from sonolens.training import multi_split as ms
from sonolens.training import train as tr
from sonolens.training.audit import hash_samples
from sonolens.training.augment import (
    SCANNER_AUGMENT,
    AugmentConfig,
    BurnedInMarks,
    DynamicRange,
    JpegArtefacts,
    ZoomDepth,
    scanner_ops,
    train_transform,
)
from sonolens.training.cam_localise import localisation
from sonolens.training.config import load_config
from sonolens.training.data import (
    LesionSample,
    read_breast_lesions_usg,
    read_bus_uclm,
    read_lesion_split_csv,
    read_metadata_csv,
    read_split_csv,
)
from sonolens.training.temporal import stability_from_rows

REPO = Path(__file__).resolve().parents[2]
SPLIT_DIR = REPO / "training" / "split_csv"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- synthetic datasets with metadata.csv

def _blob_image(rng: np.random.Generator, label: str, size: int = 72) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.GaussianBlur((rng.random((size, size)) * 120 + 60).astype(np.float32), (0, 0), 1.5)
    mask = np.zeros((size, size), np.uint8)
    if label != "normal":
        c = (int(rng.integers(20, 52)), int(rng.integers(20, 52)))
        cv2.ellipse(mask, c, (10, 7), 0, 0, 360, 255, -1)
        img[mask > 0] = 20 if label == "malignant" else 200
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _write_meta_dataset(root: Path, rows: list[tuple[str, str, str]], extra_cols: dict[str, str] | None = None,
                        seed: int = 0) -> Path:
    """rows: (stem, label, patient); writes label/stem.png, label/stem_mask.png and metadata.csv."""
    rng = np.random.default_rng(seed)
    out = []
    for stem, label, patient in rows:
        (root / label).mkdir(parents=True, exist_ok=True)
        img, mask = _blob_image(rng, label)
        cv2.imwrite(str(root / label / f"{stem}.png"), img)
        cv2.imwrite(str(root / label / f"{stem}_mask.png"), mask)
        out.append({"file": f"{label}/{stem}.png", "mask": f"{label}/{stem}_mask.png", "label": label,
                    "patient": patient, "split_group": patient, "birads": "3" if label != "normal" else "1",
                    "lesion_pixels": str(int((mask > 0).sum())), "mask_note": "", **(extra_cols or {})})
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    return root


def test_metadata_readers_and_their_errors(tmp_path: Path):
    root = _write_meta_dataset(tmp_path / "bus_uclm", [("AA_000", "benign", "AA"), ("AA_001", "normal", "AA"),
                                                       ("BB_000", "malignant", "BB")])
    s = read_bus_uclm(root)
    assert [x.path.name for x in s] == ["AA_000.png", "BB_000.png", "AA_001.png"]  # sorted by relative path
    assert all(isinstance(x, LesionSample) and x.dataset == "bus_uclm" for x in s)
    assert s[0].group == "AA" and s[0].mask == root / "benign" / "AA_000_mask.png" and s[0].has_lesion_mask
    assert not s[2].has_lesion_mask and s[2].info()["birads"] == "1"
    assert [x.label for x in read_bus_uclm(root, labels=("malignant",))] == ["malignant"]
    poland = _write_meta_dataset(tmp_path / "breast_lesions_usg", [("case001", "benign", "case001"),
                                                                  ("case002", "normal", "case002")])
    assert len(read_breast_lesions_usg(poland)) == 2
    assert [x.label for x in read_breast_lesions_usg(poland, lesions_only=True)] == ["benign"]
    (root / "benign" / "AA_000_mask.png").unlink()
    with pytest.raises(ConfigError, match="missing"):
        read_bus_uclm(root)
    with pytest.raises(ConfigError, match="metadata.csv"):
        read_metadata_csv(tmp_path)
    text = (poland / "metadata.csv").read_text().replace(",benign,", ",cyst,")
    (poland / "metadata.csv").write_text(text)
    with pytest.raises(ConfigError, match="cyst"):
        read_breast_lesions_usg(poland)


# ---------------------------------------------------------------- the multi-dataset split

def test_assign_units_hits_reachable_targets_and_is_seeded():
    # 6 units, 2 cells; val wants (2, 1), test wants (3, 2): reachable exactly with units 1 (val) and 0+2 (test)
    units = np.array([[2, 1], [2, 1], [1, 1], [5, 5], [4, 3], [6, 2]], float)
    target = np.array([[2, 1], [3, 2]], float)
    dest = ms.assign_units(units, target, seed=1)
    got = np.array([units[dest == k].sum(axis=0) for k in (1, 2)])
    assert np.array_equal(got, target), (dest, got)
    assert np.array_equal(ms.assign_units(units, target, seed=1), dest)


def _uclm_like(tmp_path: Path) -> tuple[Path, list[LesionSample]]:
    rows = []
    for p in ("AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ"):
        for k, label in enumerate(("benign", "normal", "normal", "malignant" if p in "CCFFII" else "benign")):
            rows.append((f"{p}_{k:03d}", label, p))
    root = tmp_path / "sets"
    _write_meta_dataset(root / "bus_uclm", rows)
    return root, ms.read_datasets(root, ["bus_uclm"])


def test_union_split_keeps_patients_whole_and_refuses_the_external_set(tmp_path: Path):
    root, samples = _uclm_like(tmp_path)
    result = ms.union_split(root, samples, hash_samples(samples), seed=0)
    assert ms.leaks(result) == {"twin_links_across_splits": 0, "units_in_two_splits": 0, "patients_in_two_splits": 0}
    by_patient: dict[str, set[str]] = {}
    for s, sp in zip(samples, result.split):
        by_patient.setdefault(s.patient, set()).add(sp)
    assert all(len(v) == 1 for v in by_patient.values())
    assert {"train", "test"} <= set(result.split)
    out = tmp_path / "split.csv"
    assert ms.write_union_csv(out, result) == len(samples)
    plain, rich = read_split_csv(out, root), read_lesion_split_csv(out, root)
    assert [s.path for s in plain] == [s.path for s in rich] and rich[0].dataset == "bus_uclm" and rich[0].mask
    with pytest.raises(ConfigError, match="external test set"):
        ms.read_datasets(root, ["breast_lesions_usg"])


def test_union_audit_and_split_clis_write_their_reports(tmp_path: Path, capsys):
    from sonolens.training import audit_cli, split_cli

    root, samples = _uclm_like(tmp_path)
    md, per_image = tmp_path / "audit.md", tmp_path / "audit.csv"
    assert audit_cli.cli_main([str(root), "--datasets", "bus_uclm", "--md", str(md), "--csv", str(per_image)]) == 0
    text = md.read_text()
    assert "| bus_uclm | 40 | 17 | 3 | 20 | 10 |" in text and "Vallez" in text  # counts, patients, citation
    rows = list(csv.DictReader(per_image.open()))
    assert len(rows) == 40 and rows[0]["dataset"] == "bus_uclm" and rows[0]["unit"].startswith("bus_uclm:")
    out = tmp_path / "split.csv"
    assert split_cli.cli_main([str(root), "--datasets", "bus_uclm", "--out", str(out), "--seed", "3"]) == 0
    assert "patients in two splits 0" in capsys.readouterr().out
    assert len(read_lesion_split_csv(out, root)) == 40
    with pytest.raises(ConfigError, match="--keep needs --datasets"):
        split_cli.cli_main([str(root / "bus_uclm"), "--out", str(out), "--keep", "busi=x.csv"])


def test_union_split_puts_label_conflicting_twins_in_train_and_keeps_a_kept_split(tmp_path: Path):
    root, samples = _uclm_like(tmp_path)
    # make patient BB's two normal frames a byte copy of its benign frame: the same picture under two labels
    bb = [s for s in samples if s.patient == "BB"]
    src = next(s for s in bb if s.label == "benign")
    for s in bb:
        if s.label == "normal":
            s.path.write_bytes(src.path.read_bytes())
    hashes = hash_samples(samples)
    result = ms.union_split(root, samples, hashes, seed=0)
    assert "bus_uclm:BB" in result.grouping.conflicting_units
    assert {sp for s, sp in zip(samples, result.split) if s.patient == "BB"} == {"train"}
    # keep: every image where a given CSV puts it
    kept = tmp_path / "kept.csv"
    with kept.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "group", "split"])
        for s in samples:
            w.writerow([s.path.relative_to(root / "bus_uclm").as_posix(), s.label, s.patient,
                        "test" if s.patient in ("AA", "CC") else "val" if s.patient == "DD" else "train"])
    res = ms.union_split(root, samples, hashes, keep={"bus_uclm": kept})
    assert {sp for s, sp in zip(samples, res.split) if s.patient in ("AA", "CC")} == {"test"}
    assert {sp for s, sp in zip(samples, res.split) if s.patient == "DD"} == {"val"}
    # a patient whose images a kept CSV spreads over two splits cannot stay whole: an error, not a silent move
    kept.write_text(kept.read_text().replace("AA_000.png,benign,AA,test", "AA_000.png,benign,AA,val"))
    with pytest.raises(ConfigError, match="two kept splits"):
        ms.union_split(root, samples, hashes, keep={"bus_uclm": kept})


@pytest.fixture(scope="session")
def union_hashes():
    from conftest import shared_path

    root = shared_path("datasets")
    shared_path("datasets", "bus_uclm")
    samples = ms.read_datasets(root, ["busi", "bus_uclm"])
    return root, samples, hash_samples(samples)  # ~6 s


@pytest.mark.shared
@pytest.mark.slow
def test_committed_busi_uclm_split_is_regenerated_exactly_and_leak_free(union_hashes, tmp_path: Path):
    root, samples, hashes = union_hashes
    result = ms.union_split(root, samples, hashes, keep={"busi": SPLIT_DIR / "busi.csv"}, seed=42)
    out = tmp_path / "busi_uclm.csv"
    ms.write_union_csv(out, result)
    assert out.read_text() == (SPLIT_DIR / "busi_uclm.csv").read_text()
    assert ms.leaks(result) == {"twin_links_across_splits": 0, "units_in_two_splits": 0, "patients_in_two_splits": 0}
    rows = list(csv.DictReader((SPLIT_DIR / "busi_uclm.csv").open()))
    busi = {r["file"]: r for r in csv.DictReader((SPLIT_DIR / "busi.csv").open())}
    for r in rows:  # BUSI's canonical split and groups, unchanged
        if r["dataset"] == "busi":
            b = busi[r["file"].removeprefix("busi/")]
            assert (r["split"], r["group"]) == (b["split"], f"busi:{b['group']}")
    uclm = [r for r in rows if r["dataset"] == "bus_uclm"]
    assert len(uclm) == 683 and len(rows) == 1463
    for name, frac in (("test", 0.2), ("val", 0.1)):  # stratified by class within BUS-UCLM
        for label in ("benign", "malignant", "normal"):
            n = sum(1 for r in uclm if r["label"] == label)
            k = sum(1 for r in uclm if r["label"] == label and r["split"] == name)
            assert abs(k / n - frac) < 0.02, (name, label, k, n)
    # pairwise, independent of the grouping code: no test image has a twin (rule as used) outside test
    split = np.array(result.split)
    test, rest = np.flatnonzero(split == "test"), np.flatnonzero(split != "test")
    from sonolens.training.audit import hamming

    ds = np.array([s.dataset for s in samples])
    dp = hamming(hashes.phash[test], hashes.phash[rest])
    dd = hamming(hashes.dhash[test], hashes.dhash[rest])
    both_busi = (ds[test][:, None] == "busi") & (ds[rest][None, :] == "busi")
    twin = np.where(both_busi, ms.BUSI_RULE.matches(dp, dd), ms.CROSS_RULE.matches(dp, dd))
    assert not twin.any()


@pytest.mark.shared
def test_real_metadata_readers():
    from conftest import shared_path

    uclm = read_bus_uclm(shared_path("datasets", "bus_uclm"))
    assert len(uclm) == 683 and len({s.group for s in uclm}) == 37  # CHCO+CHVI is one group
    assert {s.group for s in uclm if s.patient in ("CHCO", "CHVI")} == {"CHCO+CHVI"}
    poland = read_breast_lesions_usg(shared_path("datasets", "breast_lesions_usg"))
    lesions = read_breast_lesions_usg(shared_path("datasets", "breast_lesions_usg"), lesions_only=True)
    assert len(poland) == 256 and len(lesions) == 252
    assert sorted(s.path.stem for s in poland if s not in lesions) == ["case045", "case061", "case209", "case213"]


# ---------------------------------------------------------------- external evaluation metrics

def test_auc_agrees_with_the_eval_module_and_handles_ties():
    rng = np.random.default_rng(0)
    s = np.round(rng.random(60), 1)  # many ties
    y = rng.random(60) < 0.4
    ref = float(ev.auc_weighted(s, y, np.ones((1, 60)))[0])
    assert xe.auc(s, y) == pytest.approx(ref, abs=1e-12)
    assert xe.auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert xe.auc(np.array([0.5, 0.5]), np.array([0, 1], bool)) == 0.5
    assert math.isnan(xe.auc(np.array([0.1, 0.2]), np.array([1, 1], bool)))


def test_sensitivity_at_90_specificity_by_hand():
    neg = np.arange(10) / 10.0  # 0.0 … 0.9: 90 % of them are <= 0.8
    assert xe.spec_threshold(neg) == pytest.approx(0.8)
    pos = np.array([0.85, 0.95, 0.5, 0.79])
    scores = np.concatenate([neg, pos])
    y = np.r_[np.zeros(10, bool), np.ones(4, bool)]
    assert xe.sens_at_spec(scores, y) == pytest.approx(0.5)  # 0.85 and 0.95 are above 0.8
    sens, spec = xe.sens_spec_at(scores, y, 0.8)
    assert (sens, spec) == (0.5, 0.9)


def test_malignancy_score_and_cluster_bootstrap():
    p = np.array([[0.8, 0.1, 0.1], [0.0, 0.25, 0.75]])
    assert np.allclose(xe.malignancy_score(p, ("normal", "benign", "malignant")), [0.5, 0.75])
    with pytest.raises(ConfigError):
        xe.malignancy_score(p, ("normal", "pneumonia", "x"))
    # two patients, one all 0s, one all 1s: resampling whole patients gives means of 0, 0.5 or 1 only
    values = np.array([0.0] * 5 + [1.0] * 5)
    groups = ["a"] * 5 + ["b"] * 5
    ci = xe.cluster_bootstrap(groups, lambda ix: float(values[ix].mean()), n_boot=400, seed=0)
    assert ci == [0.0, 1.0]
    assert xe.cluster_bootstrap(["a"] * 3, lambda ix: 0.0) is None


@pytest.mark.shared
def test_stored_probabilities_and_a_fresh_onnx_run_agree_on_busi_test():
    from conftest import shared_path

    datasets = shared_path("datasets")
    stored = xe.from_eval_json(REPO / "models/weights/eval/busi_student.json", SPLIT_DIR / "busi.csv", n_boot=0)
    result = xe.evaluate(REPO / "models/weights/busi_student.onnx", datasets, SPLIT_DIR / "busi_uclm.csv",
                         which=("busi",), n_boot=0)
    fresh = result["sets"]["busi"]
    from sonolens.models.onnx_export import read_spec

    prov = read_spec(REPO / "models/weights/busi_student.onnx").provenance
    assert result["provenance"]["val_accuracy"] == prov["val_accuracy"] and result["provenance"]["run"] == prov["run"]
    assert fresh["n_lesions"] == stored["n_lesions"] == 129
    assert fresh["auc"] == pytest.approx(stored["auc"], abs=1e-3)
    assert fresh["argmax_confusion"] == stored["argmax_confusion"]


# ---------------------------------------------------------------- Grad-CAM localisation

def test_localisation_measures_by_hand():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True  # 4 % of the image
    peak_inside = np.zeros((10, 10))
    peak_inside[3, 3], peak_inside[8, 8] = 1.0, 0.5
    r = localisation(peak_inside, mask)
    assert r["pointing_hit"] == 1.0 and r["mass_in_mask"] == pytest.approx(1 / 1.5) and r["mask_area"] == 0.04
    assert localisation(np.ones((10, 10)), mask)["mass_in_mask"] == pytest.approx(0.04)  # uniform = chance
    peak_outside = peak_inside.T[::-1].copy()
    peak_outside[3, 3] = 0.0
    peak_outside[9, 0] = 1.0
    assert localisation(peak_outside, mask)["pointing_hit"] == 0.0
    empty = localisation(np.zeros((10, 10)), mask)
    assert math.isnan(empty["mass_in_mask"]) and math.isnan(empty["pointing_hit"])
    with pytest.raises(ValueError):
        localisation(np.ones((5, 5)), mask)


def test_cam_localise_runs_on_a_model_file(tmp_path: Path, random_student: Path):
    from sonolens.training import cam_localise as cl

    root = _write_meta_dataset(tmp_path / "breast_lesions_usg", [(f"case{i:03d}", lab, f"case{i:03d}")
                                                                 for i, lab in enumerate(["benign", "malignant"] * 3)])
    sets = {"breast_lesions_usg": read_breast_lesions_usg(root, lesions_only=True)}
    res = cl.run([("a", str(random_student))], sets, n_boot=50, out_dir=tmp_path / "out", n_figure=2)
    m = res["sets"]["breast_lesions_usg"]["models"]["a"]
    assert res["sets"]["breast_lesions_usg"]["n_images"] == 6
    assert 0 <= m["mass_in_mask"]["mean"] <= 1 and m["pointing_hit"]["n"] + m["empty_maps"] == 6
    assert (tmp_path / "out" / "cam_localisation_breast_lesions_usg.jpg").is_file()
    rows = list(csv.DictReader((tmp_path / "out" / "cam_localisation_per_image.csv").open()))
    assert len(rows) == 6 and rows[0]["dataset"] == "breast_lesions_usg"
    assert json.loads((tmp_path / "out" / "cam_localisation.json").read_text())["cam_class"] == "true"


# ---------------------------------------------------------------- temporal stability

def test_stability_counts_flips_between_predicted_frames():
    def row(i, top, p, state="ok"):
        return {"status": "processed", "pts_s": str(i / 10), "top_class": "" if top is None else str(top),
                "p_normal": str(p[0]), "p_benign": str(p[1]), "p_malignant": str(p[2]), "state": state}

    rows = [row(0, 1, (0.1, 0.8, 0.1)), row(1, 2, (0.1, 0.4, 0.5)), row(2, None, (0, 0, 0), "out_of_domain"),
            row(3, 2, (0.1, 0.3, 0.6)), row(4, 1, (0.2, 0.7, 0.1))]
    s = stability_from_rows(rows, ("normal", "benign", "malignant"))
    assert s["changes"] == 2 and s["frames"] == 5 and s["frames_predicted"] == 4
    assert s["duration_s"] == pytest.approx(0.5) and s["changes_per_s"] == pytest.approx(4.0)
    assert s["mean_abs_dp"] == pytest.approx((0.8 + 0.2 + 1.0) / 3)
    assert s["frames_by_state"] == {"ok": 4, "out_of_domain": 1}
    rows[1]["state"] = "out_of_domain"  # the gate hides frame 1: the user sees benign, malignant, benign
    s = stability_from_rows(rows, ("normal", "benign", "malignant"))
    assert s["changes"] == 2 and s["frames_shown"] == 3 and s["changes_shown"] == 2
    rows[3]["state"] = "out_of_domain"  # ... and frame 3: benign, benign
    assert stability_from_rows(rows, ("normal", "benign", "malignant"))["changes_shown"] == 0


@pytest.mark.slow
def test_ema_smooths_the_shipped_model_on_a_sample_clip(tmp_path: Path):
    from sonolens.training.temporal import run_clip

    clip = REPO / "assets" / "sample_videos" / "normal.mp4"
    if not clip.is_file():
        pytest.skip("sample clip not present")
    raw, _ = run_clip(clip, "busi", 0.0, tmp_path)
    smooth, report = run_clip(clip, "busi", 0.8, tmp_path)
    assert raw["frames"] == smooth["frames"] == 150
    assert smooth["changes"] <= raw["changes"] and smooth["mean_abs_dp"] < raw["mean_abs_dp"]
    assert report["predictions"]["frames_by_state"]


# ---------------------------------------------------------------- scanner augmentations

def test_default_augmentation_chain_is_unchanged_and_scanner_ops_are_opt_in():
    names = [type(t).__name__ for t in train_transform(64, (0, 0, 0), (1, 1, 1)).transforms]
    assert names == ["RandomRotation", "RandomResizedCrop", "RandomHorizontalFlip", "ToDtype", "ColorJitter",
                     "RandomGamma", "DepthGain", "SpeckleNoise", "Clamp01", "Normalize"]
    assert scanner_ops(AugmentConfig()) == []
    strong = [type(t).__name__ for t in train_transform(64, (0, 0, 0), (1, 1, 1),
                                                          AugmentConfig(**SCANNER_AUGMENT)).transforms]
    for op in ("ZoomDepth", "ResolutionLoss", "AnisotropicBlur", "TimeGainCurve", "DynamicRange", "VariableSpeckle",
               "JpegArtefacts", "BurnedInMarks"):
        assert op in strong
    assert "SpeckleNoise" not in strong and strong[-2:] == ["Clamp01", "Normalize"]
    x = (torch.rand(1, 90, 80) * 255).to(torch.uint8).expand(3, -1, -1).contiguous()  # grey, replicated
    for seed in range(5):
        torch.manual_seed(seed)
        y = train_transform(64, (0, 0, 0), (1, 1, 1), AugmentConfig(**SCANNER_AUGMENT))(x)
        assert y.shape == (3, 64, 64) and y.dtype == torch.float32 and 0 <= float(y.min()) and float(y.max()) <= 1
        assert torch.equal(y[0], y[1]) and torch.equal(y[1], y[2])  # still one grey image


def test_scanner_ops_do_what_they_say():
    torch.manual_seed(0)
    x = torch.full((3, 40, 40), 0.5)
    out = ZoomDepth((0.5, 0.5001), 1.0)(x)  # deeper: the image shrinks into the top, black below
    assert float(out[:, 30:].abs().max()) == 0.0 and float(out[:, :18, 12:28].min()) > 0.4
    assert torch.equal(ZoomDepth((0.5, 2.0), 0.0)(x), x)  # p = 0: untouched
    ramp = torch.linspace(0, 1, 40).view(1, 1, 40).expand(3, 40, 40).contiguous()
    dr = DynamicRange((2.0, 2.0001), 1.0)(ramp)
    assert torch.all(dr[0, 0, 1:] >= dr[0, 0, :-1] - 1e-6)  # monotone remap
    blank = torch.zeros(3, 64, 64)
    torch.manual_seed(3)
    marked = BurnedInMarks(1.0)(blank)
    assert 0 < float((marked[0] > 0).float().mean()) < 0.1  # a few bright pixels, not a repaint
    noisy = torch.rand(3, 64, 64)
    jp = JpegArtefacts((10, 10), 1.0)(noisy)
    assert jp.shape == noisy.shape and float((jp - noisy).abs().mean()) > 0.01


# ---------------------------------------------------------------- feature distillation (stage 1) smoke test

def _class_folder_split(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    rows = []
    for label in ("normal", "benign", "malignant"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            img, _ = _blob_image(rng, label, 64)
            cv2.imwrite(str(root / label / f"{label}{i}.png"), img)
            rows.append((f"{label}/{label}{i}.png", label, f"{label}{i}", "train" if i < 3 else "val"))
    split = root / "split.csv"
    with split.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "group", "split"])
        w.writerows(rows)
    return root, split


def _feature_overrides(root: Path, split: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", f"data.split_csv={split}", "model.input_size=[64,64]",
            "feature.teacher_input_size=[64,64]", "train.epochs=2", "train.batch_size=4", "train.progress=false",
            "train.tensorboard=false", "sched.warmup_epochs=0", f"output.dir={out}", *extra]


@pytest.mark.slow
def test_feature_distillation_stage_runs_saves_every_epoch_resumes_and_feeds_stage_3(tmp_path: Path, monkeypatch):
    from sonolens.models.checkpoint import load_checkpoint
    from sonolens.training import feature_distill as fd

    root, split = _class_folder_split(tmp_path)
    out = tmp_path / "feat"
    # through the CLI with the committed CPU config: 2 epochs x 2 steps of 4 images (9 train images, drop_last)
    assert tr.cli_main(["feature", "--config", "busi_uclm_feature_cpu", *_feature_overrides(root, split, out)]) == 0
    for name in ("best.pt", "last.pt", "metrics.csv", "summary.json", "env.json", "config.yaml"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(math.isfinite(float(r["train_loss"])) and -1 <= float(r["val_cos"]) <= 1 for r in rows)
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert {"projection", "optimizer", "scheduler", "epoch"} <= set(last) and last["epoch"] == 1
    prov = load_checkpoint(out / "best.pt").sonolens_spec.provenance
    assert prov["mode"] == "feature" and prov["feature_teacher"]["arch"] == "tf_efficientnet_lite0"

    # the frozen teacher: ImageNet weights, nothing trainable
    teacher = fd.build_lite_teacher("tf_efficientnet_lite0")
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training

    # resume after a crash in epoch 2 reproduces the uninterrupted run
    out2 = tmp_path / "feat_resumed"
    real = fd._write_rows

    def crash(path, rows_):
        real(path, rows_)
        if len(rows_) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(fd, "_write_rows", crash)
    cfg = load_config("busi_uclm_feature_cpu", _feature_overrides(root, split, out2))
    with pytest.raises(KeyboardInterrupt):
        tr.run("feature", cfg)
    monkeypatch.setattr(fd, "_write_rows", real)
    tr.run("feature", cfg, resume=out2 / "last.pt")
    a = torch.load(out2 / "last.pt", map_location="cpu", weights_only=False)["state_dict"]
    b = last["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)

    # stage 3 starts from the stage-1 weights (model.pretrained_file)
    cfg3 = load_config("busi_uclm_baseline_cpu", [f"model.pretrained_file={out / 'best.pt'}",
                                                  "model.input_size=[64,64]"])
    student = tr.build_model(cfg3, ("normal", "benign", "malignant"))
    ref = torch.load(out / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(student.state_dict()["blocks.0.0.conv_dw.weight"], ref["blocks.0.0.conv_dw.weight"])


def test_feature_config_errors():
    from sonolens.training import feature_distill as fd

    with pytest.raises(ConfigError, match="feature.teacher"):
        fd.build_lite_teacher("resnet50")
    with pytest.raises(ConfigError, match="student_layer"):
        fd.StudentFeatures("blocks.3")
    with pytest.raises(ConfigError, match="feature.loss"):
        fd.feature_loss(torch.zeros(1, 2), torch.ones(1, 2), "l1")
    zs = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    loss, cos = fd.feature_loss(zs, zs.clone(), "cosine")
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(cos) == pytest.approx(1.0)
    loss, _ = fd.feature_loss(torch.zeros(2, 2), zs, "mse")
    assert float(loss) == pytest.approx(1.0)  # mean((0 - z)^2) / mean(z^2)


def test_external_set_is_not_audited_or_split_by_the_cli(tmp_path: Path):
    from sonolens.training import split_cli

    with pytest.raises(ConfigError, match="external"):
        split_cli.cli_main([str(tmp_path), "--datasets", "busi,breast_lesions_usg", "--out", str(tmp_path / "x.csv")])
