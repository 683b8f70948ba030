"""Every per-frame record of a still names its file (first-hour issue, item 6): ``run --csv`` rows and study-log
records carried only ``index`` and ``pts_s`` at c28fbd5; ``--dwell S`` sets the seconds per image of a folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
from conftest import NEUTRAL_CWD


def _folder(tmp_path):
    folder = tmp_path / "cases"
    (folder / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["a1.png", "a2.png", "b/c3.png"]
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (96, 128), dtype=np.uint8))
    return folder, names


def test_run_csv_names_each_still_and_dwell_sets_its_time(tmp_path):
    folder, names = _folder(tmp_path)
    out, report = tmp_path / "f.csv", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(folder), "--max-rate", "--dwell", "2.5",
                           "--no-gate", "--csv", str(out), "--json", str(report), "--quiet"], capture_output=True,
                          text=True, timeout=120, cwd=NEUTRAL_CWD)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == names  # relative to the folder, in the slideshow's (sorted) order
    assert [float(r["pts_s"]) for r in rows] == [0.0, 2.5, 5.0]
    assert json.loads(report.read_text())["frames_processed"] == 3


def test_dwell_must_be_positive(tmp_path):
    folder, _ = _folder(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(folder), "--dwell", "0"], capture_output=True,
                          text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert proc.returncode == 2 and "--dwell must be a positive number" in proc.stderr
