"""The first hour: the README's main command, on the bundled demo sample, shows what sonolens is for."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

from sonolens.pipeline.run_cli import DEFAULT_SAMPLE, default_sample


def test_the_default_source_is_the_demo_made_from_real_breast_images():
    assert DEFAULT_SAMPLE.endswith("busi_demo.mp4")
    assert default_sample() is not None or not (REPO / DEFAULT_SAMPLE).is_file()


def test_the_default_command_shows_predictions_on_nine_frames_in_ten(tmp_path):
    """``sonolens run`` with no source and the bundled default model (here at --max-rate: the same frames): the gate
    lets at least 90 % of the frames through to a prediction with its heat map (at c28fbd5: 0 of 358)."""
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", "--max-rate", "--json", str(report)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(report.read_text())
    assert out["source"]["name"] == "busi_demo.mp4" and out["cam"] is True
    states = out["predictions"]["frames_by_state"]
    assert states["ok"] >= 0.9 * out["frames_processed"], states
    tops = out["predictions"]["frames_by_top_class"]
    assert all(tops[c] > 0.1 * states["ok"] for c in ("normal", "benign", "malignant")), tops  # not one class
