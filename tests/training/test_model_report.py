"""``sonolens model-report``: the three levels (external-eval, cine-eval, cam-localise) in one command and one report.

End to end on a random student and tiny synthetic data made here (never ../shared): BUSI / BUS-UCLM test and val
rows of a union-style split CSV, a Polish-style external set with masks, and two sample clips as a cine folder. The
summary's figures are checked against the per-level JSON files at the keys each level writes, so a key read wrongly
fails the test.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from sonolens.cli import main
from sonolens.pipeline.errors import ConfigError
from sonolens.training import model_report as mr

SAMPLES = REPO / "assets" / "sample_videos"
SPLIT_COLUMNS = ["file", "label", "group", "split", "dataset", "patient", "mask"]


def _image(rng: np.random.Generator, label: str, size: int = 72) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.GaussianBlur((rng.random((size, size)) * 120 + 60).astype(np.float32), (0, 0), 1.5)
    mask = np.zeros((size, size), np.uint8)
    if label != "normal":
        cv2.ellipse(mask, (int(rng.integers(20, 52)), int(rng.integers(20, 52))), (12, 9), 0, 0, 360, 255, -1)
        img[mask > 0] = 20 if label == "malignant" else 200
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _write(root: Path, rel: str, label: str, rng: np.random.Generator) -> tuple[str, str, int]:
    """One image and its mask under ``root``; returns (image, mask) relative to ``root`` and the lesion pixels."""
    img, mask = _image(rng, label)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), img)
    mask_rel = rel.replace(".png", "_mask.png")
    cv2.imwrite(str(root / mask_rel), mask)
    return rel, mask_rel, int((mask > 0).sum())


def _metadata(root: Path, rows: list[dict[str, str]]) -> None:
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    """``(datasets root, split CSV)``: busi (test + val rows), bus_uclm (metadata.csv; test + val patients) and
    breast_lesions_usg (metadata.csv, the external set), all lesions with masks."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("datasets")
    split: list[list[str]] = []
    for i, (label, part) in enumerate([("normal", "test"), ("benign", "test"), ("malignant", "test"),
                                       ("normal", "test"), ("benign", "test"), ("malignant", "test"),
                                       ("benign", "val"), ("malignant", "val")]):
        rel, _, _ = _write(root, f"busi/{label}/{label} ({i}).png", label, rng)
        split.append([rel, label, f"busi:g{i}", part, "busi", "", ""])
    uclm: list[dict[str, str]] = []
    for patient, labels, part in (("AA", ("benign", "normal"), "test"), ("BB", ("malignant", "benign"), "test"),
                                  ("CC", ("malignant", "normal"), "test"), ("DD", ("benign", "malignant"), "val")):
        for k, label in enumerate(labels):
            rel, mask, px = _write(root / "bus_uclm", f"{label}/{patient}_{k:03d}.png", label, rng)
            uclm.append({"file": rel, "mask": mask, "label": label, "patient": patient, "split_group": patient,
                         "lesion_pixels": str(px), "mask_note": ""})
            split.append([f"bus_uclm/{rel}", label, f"bus_uclm:{patient}", part, "bus_uclm", patient,
                          f"bus_uclm/{mask}"])
    _metadata(root / "bus_uclm", uclm)
    poland = []
    for i, label in enumerate(["benign", "malignant"] * 3):
        rel, mask, px = _write(root / "breast_lesions_usg", f"{label}/case{i:03d}.png", label, rng)
        poland.append({"file": rel, "mask": mask, "label": label, "patient": f"case{i:03d}", "birads": "4",
                       "lesion_pixels": str(px), "mask_note": ""})
    _metadata(root / "breast_lesions_usg", poland)
    split_csv = root / "split.csv"
    with split_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SPLIT_COLUMNS)
        w.writerows(split)
    return root, split_csv


@pytest.fixture(scope="module")
def cine(tmp_path_factory) -> Path:
    """Two sample clips of two 'patients' (benign, malignant), with clips.csv as the real folder has."""
    root = tmp_path_factory.mktemp("cine")
    rows = ["file,label,patient,frames,fps,width,height,source_path"]
    for i, label in enumerate(("benign", "malignant")):
        (root / label).mkdir()
        shutil.copy(SAMPLES / f"{label}.mp4", root / label / f"pid_{i}_vid_1.mp4")
        rows.append(f"{label}/pid_{i}_vid_1.mp4,{label},pid_{i},0,30.0,640,480,x")
    (root / "clips.csv").write_text("\n".join(rows) + "\n")
    return root


def _args(model: Path, out: Path, datasets: tuple[Path, Path], cine: Path, *extra: str) -> list[str]:
    root, split = datasets
    return ["--model", f"rand={model}", "--out", str(out), "--datasets-root", str(root), "--split-file", str(split),
            "--cine-root", str(cine), "--n-boot", "30", "--seed", "3", *extra]


@pytest.fixture(scope="module")
def report(random_student, datasets, cine, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sub" / "breast"  # a folder that does not exist yet
    assert main(["model-report", *_args(random_student, out, datasets, cine, "--decision", "1")]) == 0
    return out


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _expected(out: Path) -> dict[str, tuple[float, list[float] | None]]:
    """Every summary figure, read here from the per-level JSON files at the keys their commands write."""
    sets = _load(Path(f"{out}_images.json"))["models"]["rand"]["sets"]
    video = _load(Path(f"{out}_video.json"))["models"]["rand"]["summary"]
    cam = _load(Path(f"{out}_explanation.json"))["sets"]["breast_lesions_usg"]["models"]["rand"]["mass_in_mask"]
    return {"busi_accuracy_3class": (sets["busi"]["accuracy_3class"], sets["busi"]["accuracy_3class_ci95"]),
            "busi_auc": (sets["busi"]["auc"], None),
            "bus_uclm_auc": (sets["bus_uclm"]["auc"], None),
            "polish_auc": (sets["breast_lesions_usg"]["auc"], sets["breast_lesions_usg"]["auc_ci95"]),
            "cine_patient_auc_gated": (video["patient_auc_gated"]["auc"], video["patient_auc_gated"]["ci"]),
            "cine_flagged_frames": (video["flagged_frames"], None),
            "cine_changes_per_s_median": (video["changes_per_s_smoothed"]["median"], None),  # --decision given
            "cam_mass_in_mask_polish": (cam["mean"], cam["ci95"]),
            "cam_chance_polish": (cam["chance"], None)}


def test_every_level_is_written_and_held_by_the_combined_report(report):
    for level in mr.LEVELS:
        assert Path(f"{report}_{level}.json").is_file() and Path(f"{report}_{level}.md").is_file(), level
    assert (Path(f"{report}_explanation") / "cam_localisation_per_image.csv").is_file()
    doc = _load(Path(f"{report}.json"))
    assert doc["levels"] == list(mr.LEVELS) and doc["models"]["rand"].endswith("random_student.onnx")
    assert doc["images"]["result"]["models"]["rand"]["sets"].keys() == {"busi", "bus_uclm", "breast_lesions_usg"}
    assert doc["video"]["result"]["models"]["rand"]["summary"]["clips"] == 2
    assert doc["video"]["result"]["decision_s"] == 1.0
    assert doc["explanation"]["result"]["sets"].keys() == {"breast_lesions_usg", "bus_uclm"}
    assert doc["command"].startswith("sonolens model-report --model rand=")
    text = Path(f"{report}.md").read_text()
    assert "Research use only" in text and "external tests" in text and "never used to train" in text
    for level in mr.LEVELS:  # each level's own tables, as its command wrote them
        assert Path(f"{report}_{level}.md").read_text().strip() in text, level
    assert "| model | dataset | lesions (b/m) |" in text and "patient AUC, gated" in text
    assert "CAM mass in lesion %" in text and "### rand (`random_student.onnx`)" in text


def test_summary_figures_are_the_per_level_jsons_figures(report):
    doc = _load(Path(f"{report}.json"))
    got = doc["summary"]["rand"]
    expected = _expected(report)
    assert set(got) == set(expected)
    for key, (value, ci) in expected.items():
        assert value is not None and math.isfinite(value), key  # a real figure, not two missing ones agreeing
        assert got[key]["value"] == pytest.approx(value), key
        assert got[key]["ci95"] == (pytest.approx(ci) if ci is not None else None), key
    # the Markdown row shows the same figures
    e = {k: v for k, (v, _) in expected.items()}
    ci = {k: c for k, (_, c) in expected.items()}

    def with_ci(k: str, scale: float, digits: int) -> str:
        v, c = e[k], ci[k]
        return f"{scale * v:.{digits}f}" + (f" [{scale * c[0]:.{digits}f}, {scale * c[1]:.{digits}f}]" if c else "")

    row = (f"| rand | {with_ci('busi_accuracy_3class', 100, 1)} | {e['busi_auc']:.3f} | {e['bus_uclm_auc']:.3f} | "
           f"{with_ci('polish_auc', 1, 3)} | {with_ci('cine_patient_auc_gated', 1, 3)} | "
           f"{100 * e['cine_flagged_frames']:.1f} | {e['cine_changes_per_s_median']:.2f} | "
           f"{with_ci('cam_mass_in_mask_polish', 100, 1)} vs {100 * e['cam_chance_polish']:.1f} |")
    assert row in Path(f"{report}.md").read_text().splitlines()


def test_each_figure_is_read_from_its_own_key():
    """Every figure a distinct value at the key its command writes: a figure read from a neighbouring key (another
    set, the clip- instead of the patient-level AUC, the raw instead of the shown changes) cannot pass."""
    def lesion(k: int) -> dict:
        return {"auc": 0.1 * k, "auc_ci95": [0.1 * k - 0.01, 0.1 * k + 0.01], "accuracy_3class": 0.1 * k + 0.05,
                "accuracy_3class_ci95": [0.1 * k + 0.04, 0.1 * k + 0.06]}

    images = {"models": {"m": {"sets": {"busi": lesion(1), "bus_uclm": lesion(2), "breast_lesions_usg": lesion(3)}},
                         "other": {"sets": {"busi": lesion(9)}}}}
    summary = {"patient_auc_gated": {"auc": 0.61, "ci": [0.5, 0.7]}, "patient_auc_all": {"auc": 0.62, "ci": None},
               "clip_auc_gated": {"auc": 0.63, "ci": None}, "flagged_frames": 0.17,
               "changes_per_s_raw": {"median": 3.5, "mean": 3.6}, "changes_per_s_smoothed": {"median": 0.4, "mean": 1}}
    mass = {"mean": 0.33, "ci95": [0.3, 0.36], "chance": 0.12, "minus_chance": 0.21}
    cam = {"sets": {"breast_lesions_usg": {"models": {"m": {"mass_in_mask": mass, "pointing_hit": {"mean": 0.9}}}},
                    "bus_uclm": {"models": {"m": {"mass_in_mask": {"mean": 0.77, "chance": 0.5}}}}}}
    figs = mr.summary_figures("m", {"images": {"result": images}, "video": {"result": {"models": {"m": {
        "summary": summary}}}}, "explanation": {"result": cam}})
    got = {k: (round(f["value"], 9), f["ci95"] and [round(c, 9) for c in f["ci95"]]) for k, f in figs.items()}
    assert got == ({
        "busi_accuracy_3class": (0.15, [0.14, 0.16]), "busi_auc": (0.1, None), "bus_uclm_auc": (0.2, None),
        "polish_auc": (0.3, [0.29, 0.31]), "cine_patient_auc_gated": (0.61, [0.5, 0.7]),
        "cine_flagged_frames": (0.17, None), "cine_changes_per_s_median": (0.4, None),
        "cam_mass_in_mask_polish": (0.33, [0.3, 0.36]), "cam_chance_polish": (0.12, None)})
    row = mr.summary_table({"m": figs}).splitlines()[-1]
    assert row == ("| m | 15.0 [14.0, 16.0] | 0.100 | 0.200 | 0.300 [0.290, 0.310] | 0.610 [0.500, 0.700] | 17.0 | "
                   "0.40 | 33.0 [30.0, 36.0] vs 12.0 |")


def test_a_level_not_run_shows_a_dash():
    figs = mr.summary_figures("m", {"images": None, "video": None, "explanation": None})
    assert all(f["value"] is None and f["ci95"] is None for f in figs.values())
    row = mr.summary_table({"m": figs}).splitlines()[-1]
    assert row == "| m |" + " — |" * (len([f for f in mr.FIGURES if f[1]]))


def test_changes_per_second_without_decision_are_the_raw_ones():
    video = {"result": {"models": {"m": {"summary": {"changes_per_s_raw": {"median": 1.5}}}}}}
    figs = mr.summary_figures("m", {"video": video})
    assert figs["cine_changes_per_s_median"]["value"] == 1.5
    assert figs["cine_changes_per_s_median"]["key"] == "models.m.summary.changes_per_s_raw.median"


def test_unknown_level_is_refused_with_the_known_ones(random_student, tmp_path):
    with pytest.raises(ConfigError, match="audio.*images, video, explanation"):
        mr.cli_main(["--model", f"r={random_student}", "--out", str(tmp_path / "r"), "--levels", "images,audio"])


def test_unwritable_out_is_refused_before_any_work(random_student, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    args = ["--model", f"r={random_student}", "--out", str(tmp_path / "afile" / "r"),
            "--cine-root", str(tmp_path / "no_cine"), "--datasets-root", str(tmp_path / "no_data")]
    with pytest.raises(ConfigError, match="is a file"):
        mr.cli_main(args)
    assert main(["model-report", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sonolens: error: ") and "afile" in err[0]
    with pytest.raises(ConfigError, match="prefix"):
        mr.cli_main([*args[:2], "--out", str(tmp_path) + "/"])


def test_read_only_out_folder_is_refused(random_student, tmpfs):
    ro = tmpfs(ro=True)
    with pytest.raises(ConfigError, match="cannot write"):
        mr.cli_main(["--model", f"r={random_student}", "--out", str(ro / "r")])


def test_missing_inputs_are_config_errors(random_student, tmp_path, datasets):
    out = ["--out", str(tmp_path / "r")]
    with pytest.raises(ConfigError, match="does not exist"):
        mr.cli_main(["--model", f"r={tmp_path / 'none.onnx'}", *out])
    with pytest.raises(ConfigError, match="at least one --model"):
        mr.cli_main(out)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ConfigError, match="ONNX"):
        mr.cli_main(["--model", f"r={ckpt}", *out, "--levels", "video"])
    with pytest.raises(ConfigError, match="same name"):
        mr.cli_main(["--model", f"r={random_student}", "--model", f"r={random_student}", *out])
    with pytest.raises(ConfigError, match="clips.csv"):
        mr.cli_main(["--model", f"r={random_student}", *out, "--levels", "video", "--cine-root", str(tmp_path)])
    with pytest.raises(ConfigError, match="--datasets-root"):
        mr.cli_main(["--model", f"r={random_student}", *out, "--levels", "images",
                     "--datasets-root", str(tmp_path / "none")])
    with pytest.raises(ConfigError, match="--split-file"):
        mr.cli_main(["--model", f"r={random_student}", *out, "--levels", "explanation",
                     "--datasets-root", str(datasets[0]), "--split-file", str(tmp_path / "none.csv")])


def test_the_report_names_paths_relative_to_the_working_folder(tmp_path, monkeypatch):
    """A committed report must not name the machine's folders: inside or beside the working folder a path is
    recorded relative to it; far away, absolute."""
    work, beside, far = tmp_path / "a" / "repo", tmp_path / "a" / "shared", tmp_path / "b" / "c" / "far"
    for folder in (work / "runs", beside, far):
        folder.mkdir(parents=True)
    model = work / "runs" / "student.onnx"
    model.write_bytes(b"x")
    monkeypatch.chdir(work)
    assert mr.parse_models([f"m={model}"], ["images"]) == [("m", "runs/student.onnx")]
    assert mr.shown_path(beside) == Path("../shared")
    assert mr.shown_path(far) == far.resolve()
