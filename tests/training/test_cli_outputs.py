"""The data-preparation commands (``audit-data``, ``make-split``, ``train-hashes``, ``chest-split``) check their
outputs and options before any work.

A path that cannot be written (under a regular file, a folder, a read-only folder) and a bad option value are one
``sonolens: error:`` line and exit status 2, before a single image is read or hashed. At 011f5d4 ``audit-data``'s
``--csv``/``--md`` and ``make-split``'s and ``train-hashes``' ``--out`` failed with a traceback after hashing every
image, ``chest-split`` checked its ``--out`` only after reading (and with ``--check-files`` stat-ing) every image, and
``make-split --datasets`` checked its twin thresholds (and its ``--keep`` files) only after hashing. Tiny synthetic
folders only; nothing under ../shared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from sonolens.cli import main
from sonolens.pipeline.errors import ConfigError
from sonolens.training import audit as audit_mod
from sonolens.training import audit_cli, chest_split_cli, split_cli, train_hashes

BUSI_CLASSES = ("benign", "malignant", "normal")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 6)).astype(np.float32)
    return (cv2.resize(coarse, (64, 64), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """``root/busi/<class>/*.png`` (a folder-per-class dataset, and a ``--datasets busi`` root), a split CSV of it, a
    stand-in model file, a chest ``labels.csv`` folder, and the obstacles: a regular file and a folder."""
    root = tmp_path / "root"
    rows = []
    for k in range(6):
        label = BUSI_CLASSES[k % 3]
        (root / "busi" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "busi" / label / f"i{k}.png"), _image(k))
        rows.append(f"{label}/i{k}.png,{label},g{k},train")
    split = tmp_path / "split.csv"
    split.write_text("file,label,group,split\n" + "\n".join(rows) + "\n")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read by train-hashes")
    chest = tmp_path / "chest"
    chest.mkdir()
    (chest / "labels.csv").write_text(
        "relpath,label,official_split,patient_key,exact_duplicate_of\n"
        "NORMAL/a.jpeg,NORMAL,train,p1,\nNORMAL/b.jpeg,NORMAL,test,p1,\n")
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "adir").mkdir()
    return {"root": root, "ds": root / "busi", "split": split, "model": model, "chest": chest, "tmp": tmp_path}


@pytest.fixture
def no_work(monkeypatch) -> list[str]:
    """Every hashing entry point (and the chest labels reader) fails the test when called; the list of calls."""
    calls: list[str] = []

    def refuse(name: str):
        def fake(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} ran before the command line was checked")
        return fake

    monkeypatch.setattr(audit_mod, "hash_samples", refuse("audit.hash_samples"))  # audit_dir / make-split DIR
    monkeypatch.setattr(audit_cli, "hash_samples", refuse("audit_cli.hash_samples"))  # --datasets
    monkeypatch.setattr(train_hashes, "hash_samples", refuse("train_hashes.hash_samples"))
    monkeypatch.setattr(chest_split_cli, "read_labels", refuse("chest_split.read_labels"))
    return calls


def _argv(command: str, data: dict[str, Path], out: str) -> list[str]:
    ds, root = str(data["ds"]), str(data["root"])
    return {
        "audit-data --csv": ["audit-data", ds, "--csv", out],
        "audit-data --datasets --csv": ["audit-data", root, "--datasets", "busi", "--csv", out],
        "audit-data --datasets --md": ["audit-data", root, "--datasets", "busi", "--md", out],
        "make-split": ["make-split", ds, "--out", out],
        "make-split --datasets": ["make-split", root, "--datasets", "busi", "--out", out],
        "train-hashes": ["train-hashes", "--model", str(data["model"]), "--data", ds, "--split-file",
                         str(data["split"]), "--splits", "train", "--out", out],
        "chest-split": ["chest-split", str(data["chest"]), "--out", out],
    }[command]


COMMANDS = ("audit-data --csv", "audit-data --datasets --csv", "audit-data --datasets --md", "make-split",
            "make-split --datasets", "train-hashes", "chest-split")


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.out == ""  # nothing done, nothing reported
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sonolens: error: "), err
    return err[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["under a file", "a folder", "read-only folder"])
def test_an_unwritable_output_is_one_line_before_any_work(command, where, data, no_work, capsys):
    tmp = data["tmp"]
    if where == "read-only folder":
        if AS_ROOT:
            pytest.skip("root can write into a read-only folder")
        (tmp / "ro").mkdir()
        (tmp / "ro").chmod(0o555)
    out = {"under a file": tmp / "afile" / "out.csv", "a folder": tmp / "adir",
           "read-only folder": tmp / "ro" / "out.csv"}[where]
    try:
        assert main(_argv(command, data, str(out))) == 2
    finally:
        if (tmp / "ro").exists():
            (tmp / "ro").chmod(0o755)
    line = _one_error_line(capsys)
    assert "cannot write the " in line and str(out) in line, line
    assert no_work == []
    assert (tmp / "afile").read_text() == "a regular file\n" and not any((tmp / "adir").iterdir())


@pytest.mark.parametrize("command", ["audit-data --datasets --csv", "make-split", "make-split --datasets"])
@pytest.mark.parametrize("option", ["--threshold", "--confirm-threshold", "--dhash-threshold"])
def test_twin_thresholds_are_refused_before_hashing(command, option, data, no_work, capsys):
    out = data["tmp"] / "new" / "out.csv"
    assert main([*_argv(command, data, str(out)), option, "65"]) == 2
    assert f"{option} must be between 0 and 64" in _one_error_line(capsys)
    assert no_work == [] and not out.parent.exists()  # not even the output's folder was made


def test_make_split_datasets_module_entry_checks_thresholds_first(data, no_work):
    out = data["tmp"] / "out.csv"
    with pytest.raises(ConfigError, match="--threshold must be between 0 and 64"):
        split_cli.cli_main([str(data["root"]), "--datasets", "busi", "--out", str(out), "--threshold", "-1"])
    assert no_work == [] and not out.exists()


def test_make_split_keep_files_are_checked_before_hashing(data, no_work, capsys):
    root, out = str(data["root"]), str(data["tmp"] / "out.csv")
    base = ["make-split", root, "--datasets", "busi", "--out", out]
    assert main([*base, "--keep", f"busi={data['tmp'] / 'missing.csv'}"]) == 2
    assert "missing.csv: file not found" in _one_error_line(capsys)
    assert main([*base, "--keep", f"bus_uclm={data['split']}"]) == 2
    assert "not in --datasets: bus_uclm" in _one_error_line(capsys)
    assert main([*base[:-1], str(data["split"]), "--keep", f"busi={data['split']}"]) == 2  # --out is the kept CSV
    assert "refusing to overwrite an input" in _one_error_line(capsys)
    assert no_work == [] and data["split"].read_text().startswith("file,label,group,split\n")


def test_audit_md_without_datasets_is_refused(data, no_work, capsys):
    """One dataset's audit writes no Markdown: ``--md`` there was silently ignored."""
    md = data["tmp"] / "audit.md"
    assert main(["audit-data", str(data["ds"]), "--md", str(md)]) == 2
    assert "--md needs --datasets" in _one_error_line(capsys)
    assert no_work == [] and not md.exists()


def test_chest_split_checks_options_and_refuses_to_overwrite_labels(data, no_work, capsys):
    chest = data["chest"]
    before = (chest / "labels.csv").read_text()
    assert main(["chest-split", str(chest), "--out", str(data["tmp"] / "x.csv"), "--val-fraction", "1.5"]) == 2
    assert "val fraction must be in [0, 1), got 1.5" in _one_error_line(capsys)
    assert main(["chest-split", str(chest), "--out", str(chest / "labels.csv")]) == 2
    assert "refusing to overwrite an input" in _one_error_line(capsys)
    assert no_work == [] and (chest / "labels.csv").read_text() == before


def test_train_hashes_default_sidecar_that_cannot_be_written_names_out(data, no_work, capsys):
    sidecar = train_hashes.sidecar_of(data["model"])
    sidecar.mkdir()  # a folder where the sidecar would go
    argv = ["train-hashes", "--model", str(data["model"]), "--data", str(data["ds"]), "--split-file",
            str(data["split"]), "--splits", "train"]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert str(sidecar) in line and "it is a folder" in line and "--out" in line
    assert main([*argv[:-1], ","]) == 2
    assert "--splits names no split" in _one_error_line(capsys)
    assert no_work == []


def test_the_commands_still_write_into_a_new_folder(data, capsys):
    """The checks create a missing output folder and leave no probe file behind; the real writes still happen."""
    new = data["tmp"] / "new" / "deeper"
    assert main(["audit-data", str(data["ds"]), "--csv", str(new / "audit.csv")]) == 0
    assert main(["audit-data", str(data["root"]), "--datasets", "busi", "--md", str(new / "audit.md"),
                 "--csv", str(new / "union.csv")]) == 0
    assert main(["make-split", str(data["ds"]), "--out", str(new / "split.csv"), "--threshold", "0",
                 "--confirm-threshold", "0", "--dhash-threshold", "0"]) == 0
    assert main(["train-hashes", "--model", str(data["model"]), "--data", str(data["ds"]), "--split-file",
                 str(data["split"]), "--splits", "train", "--out", str(new / "m.trainhash.json")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in new.iterdir()) == ["audit.csv", "audit.md", "m.trainhash.json", "split.csv",
                                                       "union.csv"]
    assert (new / "split.csv").read_text().startswith("file,label,group,split\n")
    assert json.loads((new / "m.trainhash.json").read_text())["n"] == 6
