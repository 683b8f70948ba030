"""Scripted runs (``app.automation``): exit codes, errors on stderr, the screenshot and the report."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from fakes import ScriptedSource  # noqa: E402
from viewer_harness import NEUTRAL_CWD, opts, subprocess_env  # noqa: E402

from sonolens.pipeline.errors import ModelError  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def test_exit_after_frames_finishes_with_code_0_and_writes_the_report(qtbot, make_window, clip, tmp_path):
    rep, shot = tmp_path / "rep.json", tmp_path / "shot.png"
    win = make_window(opts(clip, exit_after_frames=5, report=str(rep), screenshot=str(shot)))
    qtbot.waitUntil(lambda: win.exit_codes == [0], timeout=8000)
    report = json.loads(rep.read_text())
    assert report["frames_displayed"] == win.stats.frames_displayed == 5
    assert report["source"] == str(clip) and report["errors"] == [] and report["pipeline"]["frames_processed"] >= 5
    assert report["frames_dropped"] == report["frames_dropped_queue"] + report["frames_skipped_display"]
    assert win.playback.pipe is None  # stopped
    assert cv2.imread(str(shot)).shape[:2] == (win.height(), win.width())


def test_source_error_ends_an_automated_run_with_code_1(qtbot, make_window, gated, tmp_path, capsys):
    gated(ScriptedSource(n=10, fps=30.0, size=(192, 144), fail_after=3, live=True))
    rep = tmp_path / "rep.json"
    win = make_window(opts("gated:", report=str(rep)))
    qtbot.waitUntil(lambda: win.exit_codes == [1], timeout=8000)
    assert win.playback.last_error == "scripted source vanished"
    assert "source error" in win.ui.view.state_text
    report = json.loads(rep.read_text())
    assert report["errors"] == ["scripted source vanished"] and report["pipeline"]["frames_in"] == 3


def test_a_model_that_cannot_load_exits_with_its_code(qtbot, make_window, clip, monkeypatch, capsys):
    import sonolens.app.window as window

    def no_model(model, threads):
        raise ModelError(f"{model}: not a model")

    monkeypatch.setattr(window, "open_engine", no_model)
    win = make_window(opts(clip, model="broken.onnx"), engine=None, start=False)
    win._given_engine = None
    assert win.start() is False
    qtbot.waitUntil(lambda: win.exit_codes != [], timeout=5000)
    assert win.exit_codes == [ModelError("x").exit_code] and win.exit_code == win.exit_codes[0]
    assert capsys.readouterr().err.strip().splitlines() == ["sonolens: error: broken.onnx: not a model"]


def _view(*args):
    return subprocess.run([sys.executable, "-m", "sonolens", "view", *args], env=subprocess_env(), cwd=NEUTRAL_CWD,
                          capture_output=True, text=True, timeout=120)


def test_cli_user_mistakes_are_one_line(tmp_path):
    from sonolens.cli import main

    r = _view(str(tmp_path), "--study", "--participant", "x", "--condition", "ai", "--log",
              str(tmp_path / "no" / "l.jsonl"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--log" in r.stderr
    r = _view(str(tmp_path / "missing.mp4"), "--model", str(tmp_path / "none.onnx"), "--exit-after-frames", "3")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("sonolens: error:")] == lines[-1:]
    assert "none.onnx" in lines[-1]
    assert main(["view", "--participant", "x"]) == 2  # --participant without --study


def test_automation_screenshot_and_report_with_real_model(clip, tmp_path, random_student):
    shot, rep = tmp_path / "shot.png", tmp_path / "rep.json"
    r = _view(str(clip), "--model", str(random_student), "--exit-after-frames", "20", "--screenshot", str(shot),
              "--report", str(rep), "--size", "900x600")
    assert r.returncode == 0, r.stderr
    report = json.loads(rep.read_text())
    assert report["frames_displayed"] == 20 and report["display_fps"] > 0
    c2p = report["latency_ms"]["capture_to_pixels"]
    assert c2p["n"] > 0 and 0 < c2p["p50"] <= c2p["p95"] <= c2p["p99"]
    assert report["selfcheck"]["enabled"] and report["selfcheck"]["decoded"] >= 15
    pipe = report["pipeline"]
    assert pipe["frames_processed"] >= 20 and pipe["model"]["classes"] and "capture_to_pixels" in pipe["latency_ms"]
    img = cv2.imread(str(shot))
    assert img.shape[1] == report["window"]["width"] and img.shape[0] == report["window"]["height"]
    assert img.std() > 10  # a real picture, not a blank window


def test_report_prints_a_summary_carries_the_contention_record_and_csv_writes_both_files(clip, tmp_path):
    """First-hour issue, item 5: ``view --report`` prints its summary at exit and carries the same CPU record and
    verdict as each 'sonolens bench' figure; ``view --csv F.csv`` writes the pipeline's per-frame CSV (as run's) and
    the viewer's per-painted-frame CSV beside it (``F_display.csv``, joined by ``index``)."""
    import csv

    rep, frames = tmp_path / "rep.json", tmp_path / "f.csv"
    r = _view(str(clip), "--model", "off", "--exit-after-frames", "20", "--report", str(rep), "--csv", str(frames),
              "--size", "900x600")
    assert r.returncode == 0, r.stderr
    assert "sonolens view: 20 frames displayed at" in r.stderr and "capture_to_pixels p50/p95/p99" in r.stderr
    report = json.loads(rep.read_text())
    cont = report["contention"]
    assert set(cont) >= {"record", "contended", "reasons"} and cont["record"]["wall_s"] > 0
    assert ("CPU: contended" in r.stderr) == cont["contended"]
    display = list(csv.DictReader((tmp_path / "f_display.csv").open()))
    pipeline = list(csv.DictReader(frames.open()))
    assert len(display) == report["frames_displayed"] == 20
    assert {row["index"] for row in display} <= {row["index"] for row in pipeline}
    measured = [float(row["capture_to_pixels_ms"]) for row in display if row["capture_to_pixels_ms"]]
    assert len(measured) == report["latency_ms"]["capture_to_pixels"]["n"]
    assert all(float(row["capture_to_paint_ms"]) >= float(row["result_to_paint_ms"]) for row in display)


def test_the_display_csv_stops_with_one_line_when_its_folder_vanishes(tmp_path):
    import shutil

    from sonolens.app.hud import DisplayCsv

    folder = tmp_path / "out"
    folder.mkdir()
    out = DisplayCsv(str(folder / "f_display.csv"))
    out.row(0, None, 0, 1, 2, None)
    shutil.rmtree(folder)
    for i in range(1, 40):
        out.row(i, None, 0, 1, 2, 1.0)
    error = out.close()
    assert error and "vanished" in error and "\n" not in error
