"""The training tools as ``sonolens`` subcommands: ``clip-report``, ``results-table``, ``chest-split``.

Each is reached through ``sonolens.cli.main`` as a user would: ``--help`` exits 0, an unknown flag exits 2, and an
error a user can cause (a missing or wrong file) is one ``sonolens: error:`` line and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sonolens.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "sample_videos" / "normal.mp4"

# subcommand -> arguments that satisfy its required positionals/options without touching any file
VALID_ARGS = {
    "clip-report": ["clip.mp4"],
    "results-table": ["a=a.json"],
    "chest-split": ["data", "--out", "split.csv"],
}


@pytest.mark.parametrize("name", sorted(VALID_ARGS))
def test_help_exits_0_and_names_the_subcommand(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: sonolens {name} ")


@pytest.mark.parametrize("name", sorted(VALID_ARGS))
def test_unknown_flag_exits_2(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, *VALID_ARGS[name], "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sonolens: error: "), err
    return err[0]


# --------------------------------------------------------------------------------------------------------
# results-table
# --------------------------------------------------------------------------------------------------------
def _eval(path: Path, probs: list[list[float]], y_true: list[int]) -> Path:
    """A minimal ``sonolens eval --json`` file over three images of two classes."""
    r = {"n": len(y_true), "accuracy": 0.5, "accuracy_ci95": [0.25, 0.75], "macro_f1": 0.4,
         "auc_positive_class": "b", "auc_positive": 0.6, "sensitivity": 1.0, "specificity": 0.0,
         "per_class": {"a": {"precision": 0.5, "recall": 0.25, "f1": 0.125},
                       "b": {"precision": 1.0, "recall": 0.75, "f1": 0.875}},
         "files": ["/data/a/1.png", "/data/a/2.png", "/data/b/3.png"], "y_true": y_true, "probs": probs}
    path.write_text(json.dumps(r))
    return path


@pytest.fixture
def evals(tmp_path) -> tuple[Path, Path]:
    a = _eval(tmp_path / "a.json", [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], [0, 0, 1])
    b = _eval(tmp_path / "b.json", [[0.7, 0.3], [0.6, 0.4], [0.4, 0.6]], [0, 0, 1])
    return a, b


def test_results_table_renders_both_tables(evals, capsys):
    a, b = evals
    assert main(["results-table", f"fp32={a}", f"int8={b}"]) == 0
    out = capsys.readouterr().out
    assert "| model | n | accuracy % [95% CI] | macro-F1 [95% CI] | AUC b [95% CI] |" in out
    assert "| fp32 | 3 | 50.0 [25.0, 75.0] | 0.400 | 0.600 | 100.0 | 0.0 |" in out
    assert "| int8 | 0.50 / 0.25 / 0.12 | 1.00 / 0.75 / 0.88 |" in out


def test_results_table_agree_and_leak(evals, tmp_path, capsys):
    a, b = evals
    assert main(["results-table", "--agree", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == \
        "top class agrees on 66.7% of images; largest probability change 0.40"
    split = tmp_path / "split.csv"  # 1.png has a twin (group g1) in train, 2.png and 3.png do not
    split.write_text("file,label,group,split\na/0.png,a,g1,train\na/1.png,a,g1,test\na/2.png,a,g2,test\n"
                     "b/3.png,b,g3,test\n")
    assert main(["results-table", "--leak", str(a), str(split)]) == 0
    assert capsys.readouterr().out.splitlines() == ["with a twin in train/val: n=1 accuracy=100.0%",
                                                    "without: n=2 accuracy=50.0%"]


def test_results_table_user_errors_are_one_line(evals, tmp_path, capsys):
    a, _ = evals
    assert main(["results-table", f"x={tmp_path / 'missing.json'}"]) == 2
    assert "missing.json" in _one_error_line(capsys)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["results-table", f"x={tmp_path / 'list.json'}"]) == 2
    assert "not an evaluation JSON" in _one_error_line(capsys)
    other = tmp_path / "other.json"  # the same keys, other images
    other.write_text(json.dumps(json.loads(a.read_text()) | {"files": ["/x/1.png", "/x/2.png", "/x/3.png"]}))
    assert main(["results-table", "--agree", str(a), str(other)]) == 2
    assert "not over the same images" in _one_error_line(capsys)
    assert main(["results-table", "--leak", str(a), str(a)]) == 2  # a JSON file is no split CSV
    assert "not a split CSV" in _one_error_line(capsys)


def test_results_table_usage_errors_exit_2(evals, capsys):
    a, _ = evals
    for argv in ([], [str(a)], ["--agree", str(a), str(a), f"x={a}"]):
        with pytest.raises(SystemExit) as exc:
            main(["results-table", *argv])
        assert exc.value.code == 2, argv
        assert "sonolens results-table: error:" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------
# clip-report and chest-split
# --------------------------------------------------------------------------------------------------------
def test_clip_report_prints_one_row_per_clip(capsys):
    assert main(["clip-report", str(SAMPLE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| clip | frames | shown (gate) | mean P(normal) | mean P(benign) | mean P(malignant) |")
    assert len(lines) == 3 and lines[2].startswith("| normal.mp4 | ")
    frames = int(lines[2].split("|")[2])
    assert frames > 0


def test_clip_report_missing_clip_is_one_line(tmp_path, capsys):
    assert main(["clip-report", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in _one_error_line(capsys)


def test_chest_split_user_errors_are_one_line(tmp_path, capsys):
    assert main(["chest-split", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "labels.csv" in _one_error_line(capsys)
    (tmp_path / "labels.csv").write_text(
        "relpath,label,official_split,patient_key,exact_duplicate_of\n"
        "NORMAL/a.jpeg,NORMAL,train,p1,\nNORMAL/b.jpeg,NORMAL,test,p1,\n")
    (tmp_path / "taken").mkdir()
    assert main(["chest-split", str(tmp_path), "--out", str(tmp_path / "taken")]) == 2  # a folder, not a file
    assert "cannot write" in _one_error_line(capsys)
