"""``sonolens eval`` leaves out images the model was trained on, found by the hashes shipped beside the model.

At c28fbd5, 15 BUSI files, 11 of them in the model's training split, gave "accuracy 0.867" with no word."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import NEUTRAL_CWD

from sonolens.training import train_hashes


def _image(seed: int) -> np.ndarray:
    """A distinct smooth grey image (its own blobs), so each has its own perceptual hash."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 6)).astype(np.float32)
    return (cv2.resize(coarse, (160, 160), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture
def study(tmp_path, random_student):
    """A model copy with hashes of 6 'training' images; an evaluation folder with 2 of them renamed, 1 re-saved as
    a resized JPEG, and 4 new images."""
    model = tmp_path / "m.onnx"
    shutil.copy(random_student, model)
    train = tmp_path / "train"
    rows = []
    for i in range(6):
        label = ("benign", "malignant")[i % 2]
        (train / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(train / label / f"t{i}.png"), _image(i))
        rows.append(f"{label}/t{i}.png,{label},g{i},train")
    (tmp_path / "split.csv").write_text("file,label,group,split\n" + "\n".join(rows) + "\n")
    proc = subprocess.run([sys.executable, "-m", "sonolens", "train-hashes", "--model", str(model), "--data",
                           str(train), "--split-file", str(tmp_path / "split.csv"), "--splits", "train"],
                          capture_output=True, text=True,
                          timeout=120, cwd=NEUTRAL_CWD)
    assert proc.returncode == 0, proc.stderr
    ev = tmp_path / "eval"
    for label in ("benign", "malignant"):
        (ev / label).mkdir(parents=True)
    shutil.copy(train / "benign" / "t0.png", ev / "benign" / "renamed_a.png")
    shutil.copy(train / "malignant" / "t1.png", ev / "malignant" / "renamed_b.png")
    cv2.imwrite(str(ev / "benign" / "resaved.jpg"), cv2.resize(_image(2), (200, 200)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    for i in range(100, 104):
        cv2.imwrite(str(ev / ("benign", "malignant")[i % 2] / f"new{i}.png"), _image(i))
    return model, ev


def _eval(model, ev, tmp_path, *extra):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "sonolens", "eval", "--model", str(model), "--data", str(ev),
                           "--n-boot", "50", "--json", str(out), *extra], capture_output=True, text=True,
                          timeout=180, cwd=NEUTRAL_CWD)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_seen_images_are_found_counted_and_left_out(study, tmp_path):
    model, ev = study
    assert train_hashes.sidecar_of(model).is_file()
    stdout, r = _eval(model, ev, tmp_path)
    ov = r["training_overlap"]
    assert ov["checked"] and ov["matched"] == 3 and ov["excluded"] is True
    assert {p.rsplit("/", 1)[-1] for p in ov["matched_files"]} == {"renamed_a.png", "renamed_b.png", "resaved.jpg"}
    assert r["n"] == 4 and "3 of 7 images match images the model was trained or validated on" in stdout
    _, kept = _eval(model, ev, tmp_path, "--include-train")
    assert kept["n"] == 7 and kept["training_overlap"]["excluded"] is False


def test_a_model_without_hashes_says_it_was_not_checked(study, tmp_path):
    model, ev = study
    train_hashes.sidecar_of(model).unlink()
    stdout, r = _eval(model, ev, tmp_path)
    assert r["training_overlap"]["checked"] is False and "not checked" in stdout and r["n"] == 7


def test_the_bundled_breast_models_ship_their_hashes():
    for name in ("busi", "busi-mnv3", "busi-uclm"):
        found = train_hashes.load(name)
        if found is None:
            pytest.skip("bundled models not installed")
        assert found[1]["n"] > 500 and found[1]["splits"] == ["train", "val"]
