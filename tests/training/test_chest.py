"""NanoRay V2 reproduction on the Kermany chest X-rays: the patient-grouped split, the configs, and
``sonolens cam-compare`` (lung-field heuristic, map measures, statistics, outputs).

Tests needing the dataset use ``shared_path`` and skip when ../shared is absent; the rest run on synthetic
label tables and synthetic "thorax" images, with randomly initialised students (never a trained model).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import shared_path

from sonolens.pipeline.errors import ConfigError
from sonolens.training import cam_compare as cc
from sonolens.training import chest_split as cs
from sonolens.training import chest_split_cli
from sonolens.training.config import load_config
from sonolens.training.data import Sample, read_split_csv

REPO = Path(__file__).resolve().parents[2]
SPLIT_CSV = REPO / "training" / "split_csv" / "chest_xray.csv"
CHEST = ("datasets", "chest_xray_kermany")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Exporting students runs small forwards: one thread is faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------------
# The split
# --------------------------------------------------------------------------------------------------------
def _row(rel: str, label: str, split: str, key: str, dup: str = "") -> dict[str, str]:
    return {"relpath": rel, "label": label, "official_split": split, "patient_key": key, "exact_duplicate_of": dup}


def _synthetic_rows(seed: int = 0) -> list[dict[str, str]]:
    """40 train patients per class with 1–4 images each, a test set, and a copy filed under another patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("NORMAL", "PNEUMONIA"):
        for p in range(40):
            for k in range(int(rng.integers(1, 5))):
                rows.append(_row(f"{label}/{label[0]}p{p:02d}_{k}.jpeg", label, "train", f"{label[0]}p{p:02d}"))
        for p in range(5):  # test patients reuse train keys: a different child in another official split
            rows.append(_row(f"{label}/{label[0]}t{p:02d}.jpeg", label, "test", f"{label[0]}p{p:02d}"))
    rows.append(_row("NORMAL/Np99_copy.jpeg", "NORMAL", "train", "Np99", dup="NORMAL/Np07_0.jpeg"))
    return rows


def test_split_keeps_patients_and_copies_together_and_test_official():
    rows = _synthetic_rows()
    out = cs.chest_split(rows, seed=3, val_fraction=0.2)
    assert [r.file for r in out] == sorted(r["relpath"] for r in rows)
    assert cs.straddling_groups(out) == []
    by_file = {r.file: r for r in out}
    assert by_file["NORMAL/Np99_copy.jpeg"].split == by_file["NORMAL/Np07_0.jpeg"].split
    assert by_file["NORMAL/Np99_copy.jpeg"].group == "train:Np99"  # its own patient key, tied by the copy
    official = {r["relpath"]: r["official_split"] for r in rows}
    for r in out:
        assert (r.split == "test") == (official[r.file] == "test")
        assert r.label in ("normal", "pneumonia")
        assert r.group.startswith(official[r.file] + ":")
    for label in ("normal", "pneumonia"):  # stratified: close to 20 % of each class, never above (first fit)
        n = sum(1 for r in out if r.label == label and r.split != "test")
        v = sum(1 for r in out if r.label == label and r.split == "val")
        assert 0.12 * n <= v <= round(0.2 * n)


def test_split_is_seeded():
    rows = _synthetic_rows()
    a, b = cs.chest_split(rows, seed=1), cs.chest_split(list(reversed(rows)), seed=1)
    assert a == b  # input order does not matter
    assert a != cs.chest_split(rows, seed=2)


def test_split_refuses_a_patient_under_two_labels_and_a_cross_split_copy():
    rows = _synthetic_rows() + [_row("PNEUMONIA/odd.jpeg", "PNEUMONIA", "train", "Np01")]
    with pytest.raises(ConfigError, match="several labels"):
        cs.chest_split(rows)
    rows = _synthetic_rows() + [_row("NORMAL/leak.jpeg", "NORMAL", "test", "Nt77", dup="NORMAL/Np01_0.jpeg")]
    with pytest.raises(ConfigError, match="other official split"):
        cs.chest_split(rows)


def test_committed_split_equals_the_regenerated_one():
    root = shared_path(*CHEST)
    regenerated = cs.render_csv(cs.chest_split(cs.read_labels(root)))
    assert SPLIT_CSV.read_text(encoding="utf-8") == regenerated


def test_committed_split_properties():
    root = shared_path(*CHEST)
    with SPLIT_CSV.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labels = {r["relpath"]: r for r in cs.read_labels(root)}
    assert len(rows) == len(labels) == 5840
    where = defaultdict(set)
    for r in rows:
        where[r["group"]].add(r["split"])
    assert not [g for g, s in where.items() if len(s) > 1], "a patient straddles splits"
    split = {r["file"]: r["split"] for r in rows}
    for r in labels.values():
        if r["exact_duplicate_of"]:
            assert split[r["relpath"]] == split[r["exact_duplicate_of"]]
    test = [r for r in rows if r["split"] == "test"]
    assert sum(r["label"] == "normal" for r in test) == 234 and sum(r["label"] == "pneumonia" for r in test) == 390
    for label in ("normal", "pneumonia"):
        n = sum(1 for r in rows if r["label"] == label and r["split"] != "test")
        v = sum(1 for r in rows if r["label"] == label and r["split"] == "val")
        assert abs(v / n - 0.1) < 0.01
    samples = read_split_csv(SPLIT_CSV, root, "val")  # the training reader accepts it, files exist
    assert {s.label for s in samples} == {"normal", "pneumonia"}


def test_split_cli_writes_the_csv(tmp_path):
    root = shared_path(*CHEST)
    out = tmp_path / "chest.csv"
    assert chest_split_cli.cli_main([str(root), "--out", str(out)]) == 0
    assert out.read_bytes() == SPLIT_CSV.read_bytes()
    with pytest.raises(ConfigError, match="labels.csv"):
        chest_split_cli.cli_main([str(tmp_path), "--out", str(tmp_path / "x.csv")])


# --------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------
def test_nanoray_configs():
    cfgs = {n: load_config(n) for n in ("nanoray_teacher_offline", "nanoray_distill_offline", "nanoray_baseline",
                                        "nanoray_teacher_paper")}
    for c in cfgs.values():
        assert c["data"]["class_names"] == ["normal", "pneumonia"]
        assert c["data"]["split_csv"] == "training/split_csv/chest_xray.csv"
    assert cfgs["nanoray_teacher_offline"]["model"]["name"] == "vit_nanoray_offline"
    assert cfgs["nanoray_teacher_paper"]["model"]["name"] == "vit_nanoray_paper"
    d, b = cfgs["nanoray_distill_offline"], cfgs["nanoray_baseline"]
    assert d["model"]["name"] == "mobilenetv3_small_100"
    assert d["kd"] == {"w_hard": 0.75, "w_kd": 0.25, "temperature": 4.0, "teacher_view": "same"}
    assert d["teacher"]["checkpoint"] == f"runs/{cfgs['nanoray_teacher_offline']['name']}/best.pt"
    # Same student, data and budget: the runs differ only by the teacher.
    for key in ("data", "augment", "model", "optim", "sched", "train", "seed"):
        assert d[key] == b[key], key


# --------------------------------------------------------------------------------------------------------
# Map measures and statistics
# --------------------------------------------------------------------------------------------------------
def test_total_variation_entropy_and_mass():
    rng = np.random.default_rng(0)
    const = np.full((224, 224), 0.5, np.float32)
    assert cc.cam_total_variation(const) == 0.0
    smooth = cv2.GaussianBlur(rng.random((224, 224)).astype(np.float32), (0, 0), 8)
    noisy = rng.random((224, 224)).astype(np.float32)
    assert cc.cam_total_variation(noisy) > 5 * cc.cam_total_variation(smooth) > 0
    assert cc.cam_entropy(const) == pytest.approx(1.0)
    peak = np.zeros((224, 224), np.float32)
    peak[100:110, 100:110] = 1
    assert cc.cam_entropy(peak) == pytest.approx(math.log(100) / math.log(224 * 224))
    assert math.isnan(cc.cam_entropy(np.zeros((8, 8))))
    mask = np.zeros((224, 224), bool)
    mask[:, :112] = True
    assert cc.cam_mass_share(const, mask) == pytest.approx(0.5)
    assert cc.cam_mass_share(peak, mask) == 1.0
    m = cc.map_metrics(np.zeros((16, 16)), mask[:16, :16])
    assert all(math.isnan(v) for v in m.values()) and set(m) == {"tv", "entropy", "lung_mass"}
    assert set(cc.map_metrics(const, None)) == {"tv", "entropy"}


def test_bootstrap_and_paired_comparison():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 300)
    b = a + 0.05 + rng.normal(0, 0.01, 300)
    s = cc.bootstrap_mean(a, n_boot=500, seed=0)
    assert s["n"] == 300 and s["ci95"][0] < s["mean"] < s["ci95"][1]
    p = cc.paired_comparison(a, b, n_boot=500, seed=0, n_perm=2000)
    assert p["ci95"][0] < 0.05 < p["ci95"][1] and p["mean_diff"] == pytest.approx(0.05, abs=0.005)
    assert p["p_signflip"] < 0.01 and p["frac_second_higher"] > 0.99
    same = cc.paired_comparison(a, a + rng.normal(0, 0.01, 300), n_boot=500, seed=0, n_perm=2000)
    assert same["ci95"][0] < 0 < same["ci95"][1] and same["p_signflip"] > 0.01
    a2, b2 = a.copy(), b.copy()
    a2[0], b2[1] = np.nan, np.nan
    assert cc.paired_comparison(a2, b2, n_boot=10)["n"] == 298
    assert cc.bootstrap_mean([np.nan])["mean"] is None


def test_figure_selection_is_stratified_and_seeded():
    labels = ["normal"] * 30 + ["pneumonia"] * 50
    files = [f"f{i:03d}" for i in range(80)]
    sel = cc.select_figure_images(labels, files, 8, seed=0)
    assert len(sel) == 8 and sum(labels[i] == "normal" for i in sel) == 4
    assert sel == cc.select_figure_images(labels, files, 8, seed=0)
    assert sel != cc.select_figure_images(labels, files, 8, seed=1)
    assert set(sel) <= set(cc.select_figure_images(labels, files, 16, seed=0))  # the mask debug grid contains it


# --------------------------------------------------------------------------------------------------------
# The lung-field heuristic
# --------------------------------------------------------------------------------------------------------
def _thorax(seed: int = 0, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic frontal chest film and its true lung mask: dark air outside a bright body, two dark lungs
    with bright ribs across them, a bright mediastinum and a bright abdomen below."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 12, np.float32)
    cv2.ellipse(img, (112, 118), (104, 112), 0, 0, 360, 165, -1)
    lungs = np.zeros((size, size), np.uint8)
    cv2.ellipse(lungs, (66, 100), (32, 68), 0, 0, 360, 1, -1)
    cv2.ellipse(lungs, (158, 100), (30, 68), 0, 0, 360, 1, -1)
    img[lungs.astype(bool)] = 70
    for y in range(40, 170, 16):  # ribs: brighter bands over the lungs
        img[y:y + 4][lungs[y:y + 4].astype(bool)] = 110
    img[:, 100:124][img[:, 100:124] > 100] = 215  # spine / mediastinum
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), lungs.astype(bool)


def test_lung_mask_finds_the_lungs_of_a_synthetic_thorax():
    gray, truth = _thorax()
    lm = cc.lung_mask(gray)
    assert lm.mask.shape == (224, 224) and lm.mask.dtype == bool
    assert lm.sides == ("otsu", "otsu")
    iou = (lm.mask & truth).sum() / (lm.mask | truth).sum()
    assert iou > 0.7
    assert not lm.mask[:, 104:120].any()  # not across the mediastinum
    assert not lm.mask[200:].any() and not lm.mask[:, :4].any()  # nor the abdomen or the air outside
    big = cc.lung_mask(cv2.resize(gray, (448, 448), interpolation=cv2.INTER_CUBIC))  # any input size
    assert (big.mask & truth).sum() / (big.mask | truth).sum() > 0.7


def test_lung_mask_falls_back_to_the_prior_for_an_opaque_lung():
    gray, truth = _thorax()
    gray = gray.copy()
    right = truth.copy()
    right[:, :112] = False
    gray[right] = 200  # a white-out (dense consolidation) of the image-right lung
    lm = cc.lung_mask(gray)
    assert lm.sides[0] == "otsu" and lm.sides[1] == "prior"
    assert lm.mask[:, 130:190].any()  # the opaque side still has a lung field
    assert not cc.lung_mask(np.zeros((64, 64), np.uint8)).mask.all()  # a blank image does not crash


# --------------------------------------------------------------------------------------------------------
# cam-compare end to end (random students)
# --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chest_students(tmp_path_factory):
    from sonolens.models.onnx_export import export_random_student

    d = tmp_path_factory.mktemp("chest_models")
    paths = []
    for seed in (1, 2):
        p = d / f"student{seed}.onnx"
        export_random_student(p, seed=seed, class_names=("normal", "pneumonia"), input_size=(160, 160))
        paths.append(p)
    return paths


def _thorax_folder(root: Path, classes=("normal", "pneumonia"), n: int = 3) -> Path:
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            assert cv2.imwrite(str(root / c / f"{c}_{i}.png"), _thorax(seed=10 * k + i)[0])
    return root


def test_cam_compare_outputs_on_synthetic_thoraxes(tmp_path, chest_students):
    data = _thorax_folder(tmp_path / "data")
    out = tmp_path / "out"
    rc = cc.cli_main(["--models", str(chest_students[0]), str(chest_students[1]), "--data", str(data),
                      "--n-figure", "4", "--out-dir", str(out), "--n-boot", "200"])
    assert rc == 0
    result = json.loads((out / "cam_metrics.json").read_text())
    assert {"n_images", "models", "metrics", "mask", "mask_stats", "figure", "cam_class", "comparison"} <= set(result)
    assert result["n_images"] == 6 and result["mask"] == "lung"
    assert set(result["metrics"]) == {"lung_mass", "tv", "entropy"}
    for m in result["metrics"].values():
        assert set(m) == {"baseline", "distilled", "paired"}
        assert {"mean", "ci95", "n"} <= set(m["baseline"])
        assert {"mean_diff", "ci95", "n", "p_signflip", "frac_second_higher"} <= set(m["paired"])
    for m in result["models"].values():
        assert m["cam_grid"] == [5, 5] and m["input_size"] == [160, 160] and m["trained"] is False
    fig = cv2.imread(result["figure"]["path"])
    assert fig is not None and fig.shape[0] > 200 and fig.shape[1] > 600
    assert len(result["figure"]["files"]) == 4
    masks = cv2.imread(str(out / "lung_masks.png"))
    assert masks is not None and masks.shape[1] == 4 * 224
    with (out / "cam_per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and "distilled_lung_mass" in rows[0] and rows[0]["lung_sides"].count("/") == 1
    md = (out / "cam_metrics.md").read_text()
    assert "| lung_mass |" in md and "NOT a trained model" in md
    # The same model twice: every paired difference is exactly zero.
    same = cc.compare([chest_students[0]] * 2, _samples(data), names=("a", "b"), out_dir=tmp_path / "same",
                      n_figure=2, n_boot=50)
    for m in same["metrics"].values():
        assert m["paired"]["mean_diff"] == 0.0


def _samples(root: Path) -> list[Sample]:
    from sonolens.training.data import read_class_folders

    return read_class_folders(root)


def test_cam_compare_without_a_lung_class_skips_lung_mass(tmp_path, random_student):
    from sonolens.models.onnx_export import export_random_student

    other = tmp_path / "other.onnx"
    export_random_student(other, seed=3)  # BUSI classes, like the conftest student
    data = _thorax_folder(tmp_path / "busi", classes=("benign", "malignant", "normal"), n=1)
    r = cc.compare([random_student, other], _samples(data), out_dir=tmp_path / "o", n_figure=3, n_boot=50)
    assert r["mask"] == "none" and set(r["metrics"]) == {"tv", "entropy"} and "lung_masks_png" not in r
    r = cc.compare([random_student, other], _samples(data), out_dir=tmp_path / "o2", n_figure=3, n_boot=50,
                   mask="lung", cam_class="malignant")
    assert r["mask"] == "lung" and "lung_mass" in r["metrics"]
    assert r["models"]["baseline"]["cam_grid"] == [7, 7]


def test_cam_compare_user_errors(tmp_path, chest_students, random_student):
    data = _thorax_folder(tmp_path / "d", n=1)
    base = ["--models", str(chest_students[0]), str(chest_students[1]), "--data", str(data), "--out-dir",
            str(tmp_path / "o")]
    with pytest.raises(ConfigError, match="--split needs"):
        cc.cli_main(base + ["--split", "test"])
    with pytest.raises(ConfigError, match="--cam-class"):
        cc.cli_main(base + ["--cam-class", "tumour"])
    with pytest.raises(ConfigError, match="classes differ"):
        cc.compare([chest_students[0], random_student], _samples(data), out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="ONNX"):
        cc.compare([chest_students[0], tmp_path / "best.pt"], _samples(data), out_dir=tmp_path / "o")


def test_cam_compare_on_real_chest_images(tmp_path, chest_students):
    root = shared_path(*CHEST)
    with SPLIT_CSV.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    pick = rows[:4] + [r for r in rows if r["label"] == "pneumonia"][:4]
    small = tmp_path / "small.csv"
    with small.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "group", "split"], lineterminator="\n")
        w.writeheader()
        w.writerows(pick)
    out = tmp_path / "out"
    assert cc.cli_main(["--models", str(chest_students[0]), str(chest_students[1]), "--data", str(root),
                        "--split-file", str(small), "--split", "test", "--out-dir", str(out), "--n-boot", "100",
                        "--cam-class", "pneumonia"]) == 0
    r = json.loads((out / "cam_metrics.json").read_text())
    assert r["n_images"] == 8 and r["mask"] == "lung"
    assert 0.1 < r["mask_stats"]["mean_area"] < 0.45  # lung fields, not the whole image nor specks
    assert r["mask_stats"]["sides_none"] == 0
    assert sorted(Path(f).name for f in r["figure"]["files"]) == sorted(Path(p["file"]).name for p in pick)
    for metric in r["metrics"].values():
        assert metric["paired"]["n"] == 8
