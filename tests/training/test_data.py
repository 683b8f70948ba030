"""Data side of training: readers, the near-duplicate audit, split files and transforms.

BUSI tests use ../shared via ``busi_dir`` (skipped when absent) and hash its 780 images once per session.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sonolens.pipeline.errors import ConfigError
from sonolens.training import audit as audit_mod
from sonolens.training import audit_cli, split_cli
from sonolens.training import splits as splits_mod
from sonolens.training.augment import eval_transform, train_transform
from sonolens.training.data import (
    BUSI_CLASSES,
    ImageDataset,
    Sample,
    class_counts,
    read_busi,
    read_class_folders,
    read_split_csv,
)

REPO = Path(__file__).resolve().parents[2]
SPLIT_DIR = REPO / "training" / "split_csv"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _smooth_image(rng: np.random.Generator, size: int = 160) -> np.ndarray:
    """A random but image-like (spatially smooth) grayscale picture."""
    noise = rng.random((size // 8, size // 8)).astype(np.float32)
    img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 3) + 0.15 * rng.random((size, size)).astype(np.float32)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def _with_calipers(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    for x, y in ((50, 60), (110, 95)):
        cv2.drawMarker(out, (x, y), 255, cv2.MARKER_CROSS, markerSize=11, thickness=1)
    for t in np.linspace(0, 1, 12):  # the dotted measuring line between them
        cv2.circle(out, (int(50 + 60 * t), int(60 + 35 * t)), 1, 255, -1)
    cv2.putText(out, "RT 2", (8, 150), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
    return out


@pytest.fixture()
def synthetic(tmp_path: Path) -> Path:
    """benign/ b0..b3, malignant/ m0..m2, b0 again with calipers, b1 re-labelled malignant, a corrupt file, a mask."""
    rng = np.random.default_rng(7)
    root = tmp_path / "ds"
    (root / "benign").mkdir(parents=True)
    (root / "malignant").mkdir()
    imgs = {f"benign/b{i}.png": _smooth_image(rng) for i in range(4)}
    imgs.update({f"malignant/m{i}.png": _smooth_image(rng) for i in range(3)})
    imgs["benign/b0 calipers.png"] = _with_calipers(imgs["benign/b0.png"])
    imgs["malignant/b1 relabelled.png"] = imgs["benign/b1.png"]
    imgs["benign/b2_mask.png"] = (imgs["benign/b2.png"] > 128).astype(np.uint8) * 255
    for rel, img in imgs.items():
        assert cv2.imwrite(str(root / rel), img)
    (root / "malignant" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "benign" / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------- readers

def test_read_class_folders_ignores_masks_and_non_images(synthetic: Path):
    samples = read_class_folders(synthetic)
    names = [s.path.name for s in samples]
    assert "b2_mask.png" not in names and "notes.txt" not in names
    assert class_counts(samples) == {"benign": 5, "malignant": 5}  # corrupt.png is listed: the audit reports it
    assert all(s.path.parent.name == s.label for s in samples)
    paths = [s.path for s in samples]
    assert paths == sorted(paths, key=lambda p: p.relative_to(synthetic).as_posix())


def test_read_class_folders_lowercases_labels(tmp_path: Path):
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / cls / "sub" / "x.jpeg"), np.zeros((8, 8), np.uint8))
    assert sorted(s.label for s in read_class_folders(tmp_path)) == ["normal", "pneumonia"]


def test_readers_reject_bad_folders(tmp_path: Path, synthetic: Path):
    with pytest.raises(ConfigError, match="not found"):
        read_class_folders(tmp_path / "nope")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no images"):
        read_class_folders(tmp_path / "empty")
    with pytest.raises(ConfigError, match="normal"):
        read_busi(synthetic)  # has benign/ and malignant/ but no normal/


def test_read_busi_layout_with_masks(tmp_path: Path):
    for cls in BUSI_CLASSES:
        (tmp_path / cls).mkdir()
        for name in (f"{cls} (1).png", f"{cls} (1)_mask.png", f"{cls} (2)_mask_1.png"):
            cv2.imwrite(str(tmp_path / cls / name), np.zeros((8, 8), np.uint8))
    samples = read_busi(tmp_path)
    assert sorted(s.path.name for s in samples) == ["benign (1).png", "malignant (1).png", "normal (1).png"]


def _write_split(path: Path, rows: list[tuple[str, str, str, str]], header=("file", "label", "group", "split")):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_read_split_csv(synthetic: Path, tmp_path: Path):
    csv_path = tmp_path / "split.csv"
    _write_split(csv_path, [("benign/b0.png", "benign", "g1", "train"), ("benign/b1.png", "benign", "g2", "test"),
                            ("malignant/m0.png", "Malignant", "g3", "val")])
    all_rows = read_split_csv(csv_path, synthetic)
    assert [s.path for s in all_rows] == [synthetic / "benign/b0.png", synthetic / "benign/b1.png",
                                         synthetic / "malignant/m0.png"]
    assert all_rows[2] == Sample(synthetic / "malignant/m0.png", "malignant", "g3")
    assert [s.path.name for s in read_split_csv(csv_path, synthetic, "test")] == ["b1.png"]
    assert len(read_split_csv(csv_path, synthetic, ["train", "val"])) == 2
    with pytest.raises(ConfigError, match="no rows"):
        read_split_csv(csv_path, synthetic, "holdout")
    with pytest.raises(ConfigError, match="not found under"):
        read_split_csv(csv_path, tmp_path)  # wrong root
    _write_split(csv_path, [("benign/b0.png", "benign", "train")], header=("file", "label", "split"))
    with pytest.raises(ConfigError, match="group"):
        read_split_csv(csv_path, synthetic)


def test_image_dataset_gray_replicated(synthetic: Path):
    samples = [s for s in read_class_folders(synthetic) if s.path.name != "corrupt.png"]
    ds = ImageDataset(samples, ("normal", "benign", "malignant"))
    img, target = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 160, 160)
    assert torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])
    assert target == 1 and ds.targets.count(2) == 4 and len(ds) == len(samples)
    assert torch.equal(img[0], torch.from_numpy(cv2.imread(str(samples[0].path), cv2.IMREAD_GRAYSCALE)))
    x, _ = ImageDataset(samples, BUSI_CLASSES, eval_transform((64, 48), MEAN, STD))[0]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 48)
    with pytest.raises(ConfigError, match="benign"):
        ImageDataset(samples, ("normal", "pneumonia"))


# ---------------------------------------------------------------- audit on a synthetic set

def test_audit_finds_twins_conflicts_and_unreadable(synthetic: Path):
    result = audit_mod.audit_dir(synthetic)
    rel = {result.rel(i): i for i in range(len(result.samples))}
    g = {name: result.group[i] for name, i in rel.items()}
    assert g["benign/b0.png"] == g["benign/b0 calipers.png"] != ""
    assert g["benign/b1.png"] == g["malignant/b1 relabelled.png"]
    twins = {"benign/b0.png", "benign/b0 calipers.png", "benign/b1.png", "malignant/b1 relabelled.png"}
    others = [g[n] for n in rel if n not in twins and n != "malignant/corrupt.png"]
    assert len(set(others)) == len(others) and not set(others) & {g[n] for n in twins}  # random images stay apart
    assert list(result.conflicting_groups()) == [g["benign/b1.png"]]
    assert list(result.hashes.errors) == [rel["malignant/corrupt.png"]] and g["malignant/corrupt.png"] == ""
    s = result.summary()
    assert (s["images"], s["unreadable"], s["groups_with_twins"], s["images_with_twin"], s["conflicting_groups"]) \
        == (10, 1, 2, 4, 1)


def test_audit_grouping_is_transitive():
    # a ~ b (pHash 8) and b ~ c (pHash 8) but a, c 16 apart with a far dHash: still one group
    ph = np.array([0, 0xFF, 0xFFFF, 0xFFFF_FFFF_0000_0000], np.uint64)
    dh = np.array([0, 0xFF_FFFF_FFFF, 0, 0x00FF_00FF_00FF_00FF], np.uint64)
    hashes = audit_mod.ImageHashes(ph, dh, np.ones(4, bool))
    samples = [Sample(Path(f"/d/c/{i}.png"), "c") for i in range(4)]
    result = audit_mod.find_groups("/d", samples, hashes, audit_mod.MatchRule(phash=8, confirm_phash=8, dhash=0))
    assert result.group == ["g0001", "g0001", "g0001", "g0002"]
    # the confirm rule: pHash 16 alone is not a twin, pHash 16 with a close dHash is
    rule = audit_mod.MatchRule(phash=10, confirm_phash=16, dhash=13)
    assert rule.matches(np.array([16, 16, 10, 18]), np.array([14, 13, 64, 0])).tolist() == [False, True, True, False]


def test_collapsed_grouping_is_flagged_and_refused(tmp_path: Path, capsys):
    # a dozen slight variants of one picture (thresholds too loose for a dataset look like this)
    rng = np.random.default_rng(3)
    base = _smooth_image(rng, 64)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(7):
            noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / cls / f"{k}.png"), noisy)
    result = audit_mod.audit_dir(tmp_path)
    assert result.collapsed() and "WARNING: one group holds 14 of 14" in result.format_summary()
    with pytest.raises(ConfigError, match="collapsed"):
        split_cli.cli_main([str(tmp_path), "--out", str(tmp_path / "s.csv")])
    strict = audit_mod.audit_samples(tmp_path, read_class_folders(tmp_path), audit_mod.MatchRule(0, 0, 0))
    assert strict.summary()["groups"] > 1


def test_audit_cli_writes_csv(synthetic: Path, tmp_path: Path, capsys):
    out = tmp_path / "audit.csv"
    assert audit_cli.cli_main([str(synthetic), "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "unreadable            1" in text and "malignant/b1 relabelled.png" in text
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10
    by_file = {r["file"]: r for r in rows}
    assert by_file["malignant/corrupt.png"]["status"] == "unreadable"
    assert by_file["benign/b1.png"]["conflict"] == "1" and by_file["benign/b0.png"]["conflict"] == "0"
    assert by_file["benign/b0.png"]["nearest_file"] == "benign/b0 calipers.png"
    assert by_file["benign/b0 calipers.png"]["group_size"] == "2"
    with pytest.raises(ConfigError):
        audit_cli.cli_main([str(synthetic), "--threshold", "99"])


def test_make_split_cli_on_synthetic(synthetic: Path, tmp_path: Path):
    out = tmp_path / "split.csv"
    assert split_cli.cli_main([str(synthetic), "--out", str(out), "--seed", "1"]) == 0
    samples = read_split_csv(out, synthetic)
    assert len(samples) == 9  # the corrupt file is left out
    split = {s.path.name: r["split"] for s, r in zip(samples, csv.DictReader(out.open()))}
    assert split["b1.png"] == split["b1 relabelled.png"] == "train"  # label conflict: train only
    assert split["b0.png"] == split["b0 calipers.png"]
    with pytest.raises(ConfigError, match="paper protocol"):
        split_cli.cli_main([str(synthetic), "--out", str(out), "--protocol", "paper"])


# ---------------------------------------------------------------- BUSI

@pytest.fixture(scope="session")
def busi_audit(busi_dir: Path) -> audit_mod.AuditResult:
    """BUSI hashed once per test session (~3 s)."""
    return audit_mod.audit_samples(busi_dir, read_busi(busi_dir))


def _split_of(csv_path: Path) -> dict[str, dict[str, str]]:
    return {r["file"]: r for r in csv.DictReader(csv_path.open(newline=""))}


@pytest.mark.shared
def test_busi_reader_and_known_conflict(busi_audit: audit_mod.AuditResult):
    assert class_counts(busi_audit.samples) == {"benign": 437, "malignant": 210, "normal": 133}
    idx = {busi_audit.rel(i): i for i in range(len(busi_audit.samples))}
    a, b = idx["benign/benign (433).png"], idx["malignant/malignant (145).png"]
    assert busi_audit.group[a] == busi_audit.group[b]
    assert busi_audit.group[a] in busi_audit.conflicting_groups()
    assert busi_audit.hashes.readable.all()


@pytest.mark.shared
def test_busi_grouped_split_is_leak_free(busi_audit: audit_mod.AuditResult):
    rows = _split_of(SPLIT_DIR / "busi.csv")
    n = len(busi_audit.samples)
    assert sorted(rows) == sorted(busi_audit.rel(i) for i in range(n))
    split = np.array([rows[busi_audit.rel(i)]["split"] for i in range(n)])
    h = busi_audit.hashes
    test, seen = np.flatnonzero(split == "test"), np.flatnonzero(split != "test")
    # by the audit's own twin rule, pairwise — independent of the CSV's group column
    twin = busi_audit.rule.matches(audit_mod.hamming(h.phash[test], h.phash[seen]),
                                   audit_mod.hamming(h.dhash[test], h.dhash[seen]))
    assert not twin.any(), [busi_audit.rel(test[i]) for i in np.nonzero(twin)[0]]
    for members in busi_audit.groups().values():  # fresh groups never straddle splits
        assert len(set(split[members])) == 1
    for i in range(n):  # the committed group column agrees with the fresh grouping
        assert rows[busi_audit.rel(i)]["group"] == busi_audit.group[i]
    conflict = busi_audit.conflict()
    assert conflict.sum() > 0 and set(split[conflict]) == {"train"}


@pytest.mark.shared
def test_busi_grouped_split_is_stratified_70_10_20(busi_audit: audit_mod.AuditResult):
    rows = _split_of(SPLIT_DIR / "busi.csv")
    for label in BUSI_CLASSES:
        in_class = [r["split"] for r in rows.values() if r["label"] == label]
        for name, target in splits_mod.GROUPED_FRACTIONS.items():
            assert abs(in_class.count(name) / len(in_class) - target) < 0.02, (label, name)


@pytest.mark.shared
def test_busi_paper_split_composition(busi_audit: audit_mod.AuditResult):
    rows = _split_of(SPLIT_DIR / "busi_paper.csv")
    assert len(rows) == 780
    test = [r["label"] for r in rows.values() if r["split"] == "test"]
    assert {c: test.count(c) for c in BUSI_CLASSES} == {"normal": 88, "benign": 87, "malignant": 88}
    rest = [r["split"] for r in rows.values() if r["split"] != "test"]
    assert abs(rest.count("val") / len(rest) - 0.1) < 0.01


@pytest.mark.shared
@pytest.mark.parametrize("protocol,name", [("grouped", "busi.csv"), ("paper", "busi_paper.csv")])
def test_committed_splits_are_regenerated_exactly(busi_audit, protocol: str, name: str, tmp_path: Path):
    # what `sonolens make-split DIR --protocol P --seed 42` does, with the session's cached hashes
    out = tmp_path / name
    splits_mod.write_split_csv(out, busi_audit, splits_mod.make_split(busi_audit, protocol, seed=42))
    assert out.read_text() == (SPLIT_DIR / name).read_text()
    other = tmp_path / "other.csv"  # and the seed matters
    splits_mod.write_split_csv(other, busi_audit, splits_mod.make_split(busi_audit, protocol, seed=43))
    assert other.read_text() != out.read_text()


# ---------------------------------------------------------------- transforms

def test_eval_transform_is_the_runtime_preprocessing():
    from sonolens.pipeline.modelfile import ModelSpec
    from sonolens.pipeline.preprocess import preprocess_image

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (300, 257), dtype=np.uint8)
    spec = ModelSpec(arch="x", class_names=("a", "b"), input_size=(224, 192), mean=MEAN, std=STD)
    ref = preprocess_image(gray, spec)[0]
    assert ref.dtype == np.float32 and ref.shape == (3, 224, 192)
    # The formula, by hand: INTER_AREA resize, then (v/255 - mean) / std per channel.
    expect = cv2.resize(gray, (192, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    for c in range(3):
        np.testing.assert_allclose(ref[c], (expect - MEAN[c]) / STD[c], rtol=0, atol=1e-6)
    tf = eval_transform((224, 192), MEAN, STD)
    three = torch.from_numpy(gray).expand(3, -1, -1)
    assert torch.equal(tf(three), torch.from_numpy(ref))
    assert torch.equal(tf(gray), torch.from_numpy(ref))
    flat = eval_transform(4, MEAN, STD)(np.full((10, 10), 51, np.uint8)).numpy()
    np.testing.assert_allclose(flat[:, 0, 0], [(0.2 - m) / s for m, s in zip(MEAN, STD)], atol=1e-6)


def test_train_transform_shapes_dtype_and_grayscale():
    rng = np.random.default_rng(1)
    img = torch.from_numpy(_smooth_image(rng, 256)).expand(3, -1, -1).contiguous()
    tf = train_transform((224, 192), MEAN, STD)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    outs = []
    for seed in range(6):
        torch.manual_seed(seed)
        x = tf(img)
        assert x.dtype == torch.float32 and x.shape == (3, 224, 192) and torch.isfinite(x).all()
        unnorm = x * std + mean
        assert unnorm.min() >= -1e-5 and unnorm.max() <= 1 + 1e-5
        torch.testing.assert_close(unnorm[0], unnorm[2], rtol=0, atol=1e-5)  # still one gray image
        outs.append(x)
    assert not torch.equal(outs[0], outs[1])  # it is random…
    torch.manual_seed(0)
    assert torch.equal(tf(img), outs[0])  # …and reproducible from the seed


def test_split_file_is_written_whole_or_not_at_all(tmp_path: Path):
    """A writer that fails half-way (here: a split list shorter than the samples) leaves the old split file as it
    was, and a finished write replaces it whole (before, the file was truncated first and left half-written)."""
    from types import SimpleNamespace

    samples = [SimpleNamespace(label="benign") for _ in range(4)]
    audit = SimpleNamespace(samples=samples, rel=lambda i: f"benign/{i}.png", group=[f"g{i}" for i in range(4)])
    out = tmp_path / "split.csv"
    out.write_text("the old file\n")
    with pytest.raises(IndexError):
        splits_mod.write_split_csv(out, audit, ["train", "val"])
    assert out.read_text() == "the old file\n"
    assert list(tmp_path.iterdir()) == [out]
    assert splits_mod.write_split_csv(out, audit, ["train", "val", "test", "train"]) == 4
    assert out.read_text().splitlines()[1:] == ["benign/0.png,benign,g0,train", "benign/1.png,benign,g1,val",
                                                "benign/2.png,benign,g2,test", "benign/3.png,benign,g3,train"]
