"""``sonolens study report`` on a study under way: one reader's first block logged by hand (the log format of
``study run``), the rest unanswered — the report still runs, counts what is missing and says why there is no iMRMC
file; wrong folders and arguments are one line."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.study.cli import cli_main as study
from sonolens.study.log import StudyLog
from sonolens.study.worklist import load_worklist

pytest.importorskip("matplotlib")
pytest.importorskip("pyarrow")


@pytest.fixture
def plan(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = ["study: s1", "readers: [A1, A2]", "conditions: [ai, blinded]", "questionnaires: []", "cases:"]
    for i, truth in enumerate(["benign", "benign", "malignant", "malignant"]):
        cv2.imwrite(str(data / f"{i}.png"), np.full((32, 32, 3), 40 * i, np.uint8))
        lines.append(f"  - {{id: k{i}, path: data/{i}.png, truth: {truth}}}")
    (tmp_path / "p.yaml").write_text("\n".join(lines) + "\n")
    assert study(["plan", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "plan")]) == 0
    return tmp_path / "plan"


def _log_first_block(plan, logs, calls):
    """A1's first block as ``study run`` logs it: case_shown, then a call with its rating, 2 s later."""
    wl = load_worklist(plan / "A1_s1.yaml")
    block = wl.blocks[0]
    log = StudyLog(logs / f"{wl.session_id}_{block.block}_1.jsonl", participant="A1", condition=block.display,
                   source="", model=None, class_names=["normal", "benign", "malignant"],
                   extra={"study": wl.study, "session_id": wl.session_id, "session": 1, "block": block.block,
                          "study_condition": block.condition})
    for case in block.cases:
        log.event("case_shown", None, case=case.id)
        key, conf = calls[case.id]
        log.call(key, 0, model_top=None, case=case.id, confidence=conf)
    log.close()
    return block


def test_a_report_of_a_study_under_way(plan, tmp_path, capsys):
    logs, out = tmp_path / "logs", tmp_path / "report"
    logs.mkdir()
    truth = {c["id"]: c["truth"] for c in json.loads((plan / "plan.json").read_text())["cases"]}
    calls = {cid: ((3, 80.0) if t == "malignant" else (2, 30.0)) for cid, t in truth.items()}  # all right
    block = _log_first_block(plan, logs, calls)
    assert study(["report", str(plan), str(logs), "--out", str(out), "--bootstrap", "100"]) == 0
    rows = list(csv.DictReader(open(out / "readings.csv")))
    answered = [r for r in rows if r["answered"] == "1"]
    assert len(rows) == 2 * 4 * 2 and len(answered) == len(block.cases) == 2
    assert all(r["correct"] == "1" and r["reader"] == "A1" and r["condition"] == block.condition for r in answered)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["answered"] == 2 and sum(summary["missing"].values()) == 14
    assert summary["conditions"][block.condition]["pooled"]["accuracy"]["value"] == pytest.approx(1.0)
    # the block's two cases: one benign and one malignant (stratified), so the iMRMC file can be written
    assert (out / "study.imrmc").is_file() and summary["imrmc"]["skipped_no_score"] == 0
    assert "2 of 16 planned readings answered" in capsys.readouterr().out


def test_wrong_folders_and_arguments_are_one_line(plan, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    with pytest.raises(ConfigError, match="plan folder"):
        study(["report", str(plan), str(logs), "--out", str(plan)])
    with pytest.raises(ConfigError, match="no study logs"):
        study(["report", str(plan), str(logs), "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="at least 100"):
        study(["report", str(plan), str(logs), "--out", str(tmp_path / "r"), "--bootstrap", "5"])
    with pytest.raises(ConfigError, match="not a folder written by"):
        study(["report", str(tmp_path), str(logs), "--out", str(tmp_path / "r")])
