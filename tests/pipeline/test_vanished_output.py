"""A recording whose folder is removed while it is written is reported lost, not passed as success.

At c28fbd5: exit 0, no file, no message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from conftest import NEUTRAL_CWD, REPO

SAMPLE = REPO / "assets" / "sample_videos" / "benign.mp4"  # 6 s, played in real time


def test_a_recording_whose_folder_vanishes_is_an_error(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    target, report = folder / "overlay.mp4", tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "run", str(SAMPLE), "--realtime", "--record",
                             str(target), "--json", str(report), "--quiet"], cwd=NEUTRAL_CWD,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (target.exists() and target.stat().st_size > 0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its recording had frames"
    shutil.rmtree(folder)  # while the 6-second realtime run is still writing it
    _, err = proc.communicate(timeout=120)
    errors = [ln for ln in err.splitlines() if ln.startswith("sonolens: error")]
    assert proc.returncode == 2 and len(errors) == 1 and "vanished" in errors[0] and "Traceback" not in err, err
    out = json.loads(report.read_text())
    assert "vanished" in out["recording"]["error"]


def _remove_the_folder_mid_run(tmp_path, flag: str, name: str, min_bytes: int):
    """A looping realtime run writing ``flag FOLDER/name``; FOLDER is removed once the file has ``min_bytes``.
    Returns (exit code, stderr, the run's JSON report). Without a periodic check the run never ends (it times out)."""
    folder = tmp_path / "out"
    folder.mkdir()
    target, report = folder / name, tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "run", str(SAMPLE), "--realtime", "--loop",
                             flag, str(target), "--json", str(report), "--quiet"], cwd=NEUTRAL_CWD,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (target.exists() and target.stat().st_size > min_bytes) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before its {name} was written"
        shutil.rmtree(folder)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err, json.loads(report.read_text())


def test_an_endless_recording_whose_folder_vanishes_ends_the_run(tmp_path):
    """A looping realtime run has no end to find the loss at: the recorder looks once a fragment (≤ 2 s), so the run
    stops by itself with the one line and exit 2 instead of encoding into a removed file for hours."""
    rc, err, out = _remove_the_folder_mid_run(tmp_path, "--record", "overlay.mp4", 0)
    errors = [ln for ln in err.splitlines() if ln.startswith("sonolens: error")]
    assert rc == 2 and len(errors) == 1 and "vanished" in errors[0] and "Traceback" not in err, err
    assert "vanished" in out["recording"]["error"]


def test_a_csv_whose_folder_vanishes_is_an_error(tmp_path):
    rc, err, _ = _remove_the_folder_mid_run(tmp_path, "--csv", "frames.csv", 200)
    errors = [ln for ln in err.splitlines() if ln.startswith("sonolens: error")]
    assert rc == 2 and len(errors) == 1 and "vanished" in errors[0] and "frames.csv" in errors[0], err


def test_a_killed_run_keeps_its_last_report(tmp_path):
    """At c28fbd5 a ``kill -9`` left the 0-byte file of the writability check; now the report is refreshed every few
    seconds (atomically, ``complete: false``), so a kill loses at most the last interval."""
    import os
    import signal

    report = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "run", str(REPO / "assets/sample_videos/sweep.mp4"),
                             "--realtime", "--loop", "--json", str(report), "--quiet"], cwd=NEUTRAL_CWD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not report.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert report.exists(), "no interim report"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    out = json.loads(report.read_text())
    assert out["complete"] is False and out["frames_processed"] > 0 and out["error"] is None


def test_a_finished_run_says_its_report_is_complete(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(SAMPLE), "--max-rate", "--json", str(report),
                           "--quiet"], cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["complete"] is True
