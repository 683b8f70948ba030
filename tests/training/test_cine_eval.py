"""``sonolens cine-eval`` (a breast model on cine clips) and ``clip-report --segments``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO

from sonolens.cli import main
from sonolens.training import cine_eval
from sonolens.training.external_eval import auc

SAMPLES = REPO / "assets" / "sample_videos"


@pytest.fixture
def cine(tmp_path):
    """Four short clips of four 'patients' (two benign, two malignant), with clips.csv as the real folder has."""
    rows = ["file,label,patient,frames,fps,width,height,source_path"]
    for i, (clip, label) in enumerate((("benign", "benign"), ("cyst", "benign"), ("malignant", "malignant"),
                                       ("sweep", "malignant"))):
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(SAMPLES / f"{clip}.mp4", tmp_path / label / f"pid_{i}_vid_1.mp4")
        rows.append(f"{label}/pid_{i}_vid_1.mp4,{label},pid_{i},0,30.0,640,480,x")
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_cine_eval_scores_clips_and_patients(cine, random_student, tmp_path, capsys):
    out = tmp_path / "cine.json"
    assert main(["cine-eval", "--model", str(random_student), "--cine", str(cine), "--n-boot", "50",
                 "--ema", "0.8", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    s, clips = doc["summary"], doc["clips"]
    assert s["clips"] == 4 and s["patients"] == 4 and s["frames"] == sum(c["frames"] for c in clips)
    assert s["flagged_frames"] == 0.0  # a random-init export has no gate
    y = np.array([c["label"] == "malignant" for c in clips])
    assert s["clip_auc_all"]["auc"] == pytest.approx(auc(np.array([c["score_all"] for c in clips]), y))
    assert s["patient_auc_all"]["auc"] == s["clip_auc_all"]["auc"]  # one clip a patient
    assert all(np.isfinite(c["changes_per_s_smoothed"]) and np.isfinite(c["changes_per_s_raw"]) for c in clips)
    assert "patient AUC" in capsys.readouterr().out


def test_cine_eval_refuses_an_unwritable_output_before_reading_any_clip(cine, random_student, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(cine_eval, "clip_frames", lambda *a, **k: pytest.fail("a clip was read"))
    assert main(["cine-eval", "--model", str(random_student), "--cine", str(cine),
                 "--json", str(blocker / "cine.json")]) == 2


def test_changes_per_second_counts_shown_frames_only():
    top = [0, 0, 1, 1, 0, 2]
    states = ["ok", "ok", "ok", "out_of_domain", "ok", "ok"]
    assert cine_eval.changes_per_s(top, states, fps=6.0) == pytest.approx(3.0)  # 0->1, 1->0, 0->2 in 1 s


def test_clip_report_segments(capsys):
    assert main(["clip-report", str(SAMPLES / "normal.mp4"), "--model", "busi", "--segments", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == [f"normal.mp4 part {k}" for k in (1, 2, 3)]
    assert sum(int(ln.split("|")[2]) for ln in lines[2:]) == 150


def test_join_pairs_follow_a_fixed_rule_that_reads_no_score():
    rows = [{"file": f"{lab}/{pid}_{k}.mp4", "label": lab, "patient": pid}
            for lab, pid in (("benign", "p1"), ("malignant", "p2"), ("benign", "p3"), ("malignant", "p4"))
            for k in (1, 2)]
    pairs = cine_eval.join_pairs(rows, 5)
    assert [(a["file"], b["file"]) for a, b in pairs] == [("benign/p1_1.mp4", "malignant/p2_1.mp4"),
                                                          ("benign/p3_1.mp4", "malignant/p4_1.mp4")]


def test_a_joined_clip_starts_its_second_half_at_the_join(tmp_path):
    import av

    a, b = SAMPLES / "normal.mp4", SAMPLES / "benign.mp4"
    join = cine_eval.join_clip(a, b, tmp_path / "j.mp4")
    with av.open(str(tmp_path / "j.mp4")) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert join == 150 and n == 150 + 180
