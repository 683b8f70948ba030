"""Faults in the viewer (#14), each reproduced for real: a full disk under the study log (a small tmpfs), Ctrl-C
and SIGTERM (real signals to a viewer process, and to this one), the help box's colours, the performance panel at
the end of a stream."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from conftest import assert_one_line_error  # noqa: E402
from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtGui import QColor, QPalette  # noqa: E402
from PyQt6.QtWidgets import QApplication, QLabel  # noqa: E402
from viewer_harness import NEUTRAL_CWD, opts, subprocess_env, wait_frames  # noqa: E402

from sonolens.app.options import StudyOptions  # noqa: E402
from sonolens.app.selfcheck import qimage_to_array  # noqa: E402
from sonolens.app.signals import QtShutdownSignals  # noqa: E402
from sonolens.study.log import read_log  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def _view_cmd(clip, *args: str) -> list[str]:
    return [sys.executable, "-m", "sonolens", "view", str(clip), "--loop", *args]


# -- a full disk under the study log --------------------------------------------------------------------------------
def test_full_disk_shows_the_error_closes_the_session_and_exits_2(qtbot, make_window, clip, tmpfs, capsys):
    log = tmpfs("16k") / "s.jsonl"
    win = make_window(opts(clip, loop=True, study=StudyOptions("p1", "ai", str(log))))
    qtbot.waitUntil(lambda: win.exit_codes != [], timeout=30000)  # ~40 frames fill 16 KiB
    assert win.exit_codes == [2] and win.exit_code == 2
    err = win.study.error
    assert err is not None and "No space left on device" in err and str(log) in err
    assert win.automation.errors == [err]
    assert win.automation.error_box.isVisible() and win.automation.error_box.text() == err  # in the window
    assert win.ui.view.state_text == f"study log stopped: {err}"
    assert capsys.readouterr().err.strip().splitlines() == [f"sonolens: error: {err}"]
    recs = read_log(log)
    assert recs.complete and recs.bad_lines == 0 and not recs.torn_last_line
    assert recs.end["error"] == err and recs.end["exit_code"] == 2 and recs.end["frames"] == len(recs.frames) > 0


def test_full_disk_in_a_viewer_process_is_one_line_and_exit_2_not_an_abort(clip, tmpfs):
    log = tmpfs("16k") / "s.jsonl"
    proc = subprocess.run(_view_cmd(clip, "--study", "--participant", "p1", "--condition", "off", "--log", str(log),
                                    "--exit-after-seconds", "120"),
                          env=subprocess_env(), cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=150)
    assert_one_line_error(proc, "cannot write study log", "No space left on device")
    recs = read_log(log)
    assert recs.complete and recs.end["exit_code"] == 2 and "No space left" in recs.end["error"]


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_takes_the_normal_quit_path(clip, tmp_path, sig):
    log, rep = tmp_path / "s.jsonl", tmp_path / "rep.json"
    proc = subprocess.Popen(_view_cmd(clip, "--study", "--participant", "p1", "--condition", "off", "--log", str(log),
                                      "--report", str(rep), "--exit-after-seconds", "120"),
                            env=subprocess_env(), cwd=NEUTRAL_CWD, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for 5 frames on disk (an event, with a deadline)
            if log.exists() and log.read_bytes().count(b'"type":"frame"') >= 5:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    recs = read_log(log)
    assert recs.complete and recs.end["exit_code"] == 128 + sig and recs.end["interrupted_by"] == sig.name
    report = json.loads(rep.read_text())
    assert report["interrupted_by"] == sig.name and report["frames_displayed"] == len(recs.frames) >= 5
    assert report["study"]["end_written"] is True


def test_first_signal_quits_once_and_a_second_during_shutdown_is_ignored(qtbot, capfd):
    calls = []

    def on_signal(signum: int) -> None:  # the quit path; a second Ctrl-C arrives while it runs
        calls.append(signum)
        os.kill(os.getpid(), signal.SIGINT)

    sigs = QtShutdownSignals(on_signal)
    with sigs:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            qtbot.waitUntil(lambda: calls != [], timeout=5000)  # delivered from the event loop
            os.kill(os.getpid(), signal.SIGTERM)  # and a third, later: still ignored
            qtbot.waitUntil(lambda: "please wait" in capfd.readouterr().err, timeout=5000)
        finally:
            sigs.restore()
    assert calls == [signal.SIGTERM] and sigs.exit_code == 143


def test_interrupt_writes_the_end_record_and_the_report(qtbot, make_window, clip, tmp_path):
    log, rep = tmp_path / "s.jsonl", tmp_path / "rep.json"
    win = make_window(opts(clip, loop=True, report=str(rep), study=StudyOptions("p1", "blinded", str(log))))
    wait_frames(qtbot, win, 3)
    win.automation.interrupt(signal.SIGTERM)
    win.automation.interrupt(signal.SIGINT)  # a second one changes nothing
    assert win.exit_codes == [143]
    recs = read_log(log)
    assert recs.complete and recs.end["exit_code"] == 143 and recs.end["interrupted_by"] == "SIGTERM"
    assert json.loads(rep.read_text())["interrupted_by"] == "SIGTERM"


# -- the help box is readable ----------------------------------------------------------------------------------------
def _luminance(c: QColor) -> float:
    def lin(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c.redF()) + 0.7152 * lin(c.greenF()) + 0.0722 * lin(c.blueF())


def contrast(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio (1..21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_help_box_text_contrasts_with_its_background(qtbot, make_window, clip):
    from sonolens.app.main import DARK_QSS

    app = QApplication.instance()
    old_sheet = app.styleSheet()
    app.setStyleSheet(DARK_QSS)  # what the viewer runs with (main.make_app): light text for its dark panels
    try:
        win = make_window(opts(clip), start=False)
        qtbot.keyClick(win.ui.view, Qt.Key.Key_F1)
        box = win.ui.help_box
        qtbot.waitExposed(box)
        label = box.findChild(QLabel, "qt_msgbox_label")
        assert "Ctrl+K" in label.text()
        text = label.palette().color(QPalette.ColorRole.WindowText)
        ground = box.palette().color(box.backgroundRole())
        assert contrast(text, ground) >= 4.5, (text.name(), ground.name())
        # and the ground the palette names is what is painted around the text
        px = qimage_to_array(box.grab().toImage())
        b, g, r = px[2, 2, :3]
        assert QColor(int(r), int(g), int(b)).name() == ground.name()
        box.close()
    finally:
        app.setStyleSheet(old_sheet)


# -- the performance panel at the end of a stream ------------------------------------------------------------------
def test_the_display_rate_is_kept_at_the_end_of_the_stream(qtbot, make_window, clip, tmp_path):
    rep = tmp_path / "rep.json"
    win = make_window(opts(clip, report=str(rep), screenshot=str(tmp_path / "shot.png")))
    qtbot.waitUntil(lambda: win.exit_codes != [], timeout=15000)  # to the end of the clip, then finish
    assert win.playback.is_ended and win.exit_codes == [0]
    report = json.loads(rep.read_text())
    hud = win.ui.hud.text()  # as in the screenshot
    disp = float(re.search(r"disp\s+(\d+\.\d)", hud).group(1))
    assert report["display_fps"] > 0 and disp > 0, hud
    assert disp == pytest.approx(report["display_fps"], rel=0.5), hud
    assert "(rates as at the last frame)" in hud


def test_unwritable_report_or_screenshot_is_one_line_before_the_window_opens(tmpfs):
    """At c28fbd5 ``view --report v.json`` in a read-only working folder aborted (exit 134) and ``view --screenshot
    RO/s.png`` exited 0 with no file and no message."""
    import subprocess
    import sys

    from conftest import NEUTRAL_CWD

    ro = tmpfs("64k", ro=True)
    for flag, cwd, target in (("--report", ro, "v.json"), ("--screenshot", NEUTRAL_CWD, str(ro / "s.png"))):
        proc = subprocess.run([sys.executable, "-m", "sonolens", "view", "--exit-after-frames", "2", flag, target],
                              capture_output=True, text=True, timeout=120, cwd=cwd)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and flag in lines[0], proc.stderr
