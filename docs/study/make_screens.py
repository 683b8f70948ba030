"""The README's reader-study pictures, made by running the real commands on the bundled example protocol.

    python docs/study/make_screens.py       # headless: an offscreen 1280×800 screen

1. ``sonolens study plan assets/study/example_protocol.yaml`` into a temporary folder;
2. ``sonolens study run`` (``app.study_run.StudyRunner``, as the command builds it, 1280×800, the bundled breast
   model) for every worklist, with SCRIPTED readers pressing the keys (R01 calls the truth; R02 calls the truth with
   the AI and "benign" without), ratings typed, questionnaires filled in with mid-scale answers — the participant
   screen of the first case is saved with its rating dialog open (``participant.png``);
3. ``sonolens study report`` → the report's accuracy and ROC plots are copied here.

The figures in the plots are those of scripted keys on SIMULATED clips: they show what the report looks like, not
how any clinician reads.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtGui import QPainter
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication

from sonolens.app.main import create_window, make_app
from sonolens.app.study_run import StudyRunner
from sonolens.study.cli import cli_main as study
from sonolens.study.worklist import load_worklist

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KEYS = {"normal": Qt.Key.Key_1, "benign": Qt.Key.Key_2, "malignant": Qt.Key.Key_3}


def wait(predicate, seconds: float = 20.0) -> None:
    for _ in range(int(seconds * 100)):
        QApplication.processEvents()
        if predicate():
            return
        QTest.qWait(10)
    raise TimeoutError("the viewer did not get there in time")


def grab_with_dialog(win, dialog, out: Path) -> None:
    """The window with the (separate, window-modal) dialog painted where it sits on screen."""
    img = win.grab().toImage()
    painter = QPainter(img)
    top_left = dialog.mapToGlobal(QPoint(0, 0)) - win.mapToGlobal(QPoint(0, 0))
    painter.drawImage(top_left, dialog.grab().toImage())
    painter.end()
    img.save(str(out))


def answer(runner, truth: dict[str, str], reader: str, shot: Path | None) -> None:
    wait(lambda: runner.win is not None and runner.win.study.case is not None and runner.win.playback.current
         is not None and runner.win.playback.is_live(runner.win.playback.current))
    QTest.qWait(1500)  # let the clip play a little
    case, block = runner.win.study.case, runner.block
    call = truth[case] if reader == "R01" or block.display == "ai" else "benign"
    QTest.keyClick(runner.win.ui.view, KEYS[call])
    wait(lambda: runner.dialog is not None)
    QTest.keyClicks(runner.dialog.input.spin, "85" if call == "malignant" else "20")
    if shot is not None:
        grab_with_dialog(runner.win, runner.dialog, shot)
    QTest.keyClick(runner.dialog.input.spin, Qt.Key.Key_Return)


def forms(runner) -> None:
    for _ in runner.wl.questionnaires:
        wait(lambda: runner.dialog is not None and hasattr(runner.dialog, "inputs"))
        d = runner.dialog
        for item in d.form.items:
            d.set_answer(item.key, item.low + item.step * ((item.high - item.low) // item.step // 2))
        QTest.mouseClick(d.ok_button, Qt.MouseButton.LeftButton)
        wait(lambda d=d: runner.dialog is not d)


def run_session(worklist: Path, logs: Path, truth: dict[str, str], shot: Path | None) -> None:
    wl = load_worklist(worklist)
    runner = StudyRunner(wl, logs, open_window=lambda o: create_window(o, "1280x800"))
    runner.start()
    while runner.finished_rc is None:
        if runner.queue:
            answer(runner, truth, wl.reader, shot)
            shot = None
        else:
            forms(runner)
        wait(lambda: runner.finished_rc is not None or (runner.win is not None and bool(runner.queue))
             or (runner.win is not None and runner.dialog is not None))
    if runner.finished_rc:
        sys.exit(f"session {wl.session_id} ended with {runner.finished_rc}")


def offscreen_1280x800() -> None:
    """Headless: an offscreen screen large enough for the 1280×800 window (the default one is 800×800)."""
    platform = os.environ.get("QT_QPA_PLATFORM") or ("" if os.environ.get("DISPLAY") else "offscreen")
    if platform != "offscreen":
        return
    conf = Path(tempfile.mkdtemp()) / "screens.json"
    conf.write_text(json.dumps({"screens": [{"name": "screen0", "x": 0, "y": 0, "width": 1280, "height": 800,
                                             "logicalDpi": 96, "physicalWidth": 340, "physicalHeight": 210}]}))
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={conf}"


def main() -> int:
    offscreen_1280x800()
    app = make_app()  # noqa: F841 - kept alive for the whole run
    with tempfile.TemporaryDirectory() as tmp:
        plan, logs, report = Path(tmp) / "plan", Path(tmp) / "logs", Path(tmp) / "report"
        study(["plan", str(REPO / "assets/study/example_protocol.yaml"), "--out", str(plan)])
        truth = {c["id"]: c["truth"] for c in json.loads((plan / "plan.json").read_text())["cases"]}
        shot: Path | None = HERE / "participant.png"
        for worklist in sorted(plan.glob("R*_s*.yaml")):
            run_session(worklist, logs, truth, shot)
            shot = None
        study(["report", str(plan), str(logs), "--out", str(report)])
        for name in ("accuracy_by_condition.png", "roc_by_reader.png"):
            shutil.copy(report / name, HERE / name)
    print(f"wrote {HERE / 'participant.png'} and the report's plots to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
