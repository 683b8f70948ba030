"""A reader study end to end under the offscreen platform: plan → each reader's sessions in the viewer with key
presses (calls, ratings, questionnaires, a pause, a window closed mid-block and resumed) → report → iMRMC file.
The readers' answers are scripted from the ground truth, so every figure of the report is known in advance."""

from __future__ import annotations

import csv
import json

import cv2
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from fakes import FakeEngine  # noqa: E402
from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import REPO, frames  # noqa: E402

from sonolens.app.study_run import StudyRunner  # noqa: E402
from sonolens.app.window import ViewerWindow  # noqa: E402
from sonolens.study.cli import cli_main as study  # noqa: E402
from sonolens.study.imrmc import read_imrmc  # noqa: E402
from sonolens.study.log import read_sessions  # noqa: E402
from sonolens.study.worklist import load_worklist  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip
KEY = {"normal": Qt.Key.Key_1, "benign": Qt.Key.Key_2, "malignant": Qt.Key.Key_3}


def _write_protocol(path, readers, cases) -> None:
    lines = ["study: demo", "seed: 3", f"readers: [{', '.join(readers)}]", "conditions: [ai, 'off']",
             "rating: {low: 0, high: 100, step: 1}", "questionnaires: [nasa_tlx, sus]", "cases:"]
    lines += [f"  - {{id: {cid}, path: '{p}', truth: {truth}}}" for cid, p, truth in cases]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def small_study(tmp_path, clip):
    """Six cases (a folder of two images, four stills, one clip), two readers, conditions ai / off, two sessions,
    both questionnaires."""
    data = tmp_path / "data"
    (data / "c0").mkdir(parents=True)
    still = list(frames(6, seed=3))
    cv2.imwrite(str(data / "c0" / "view2.png"), still[5])
    cases = []
    for i, truth in enumerate(["normal", "normal", "benign", "benign", "malignant", "malignant"]):
        path = clip if i == 5 else data / "c0" if i == 0 else data / f"case{i}.png"
        if 0 < i < 5:
            cv2.imwrite(str(path), still[i])
        if i == 0:
            cv2.imwrite(str(path / "view1.png"), still[0])
        cases.append((f"c{i}", path, truth))
    _write_protocol(tmp_path / "protocol.yaml", ["R1", "R2"], cases)
    return tmp_path / "protocol.yaml"


@pytest.fixture
def busi_study(tmp_path, busi_dir):
    """The issue's study: 3 readers × 12 cases of BUSI's leak-free test split (4 per class), ai / off."""
    split = csv.DictReader(open(REPO / "training" / "split_csv" / "busi.csv"))
    test = sorted((r["label"], r["file"]) for r in split if r["split"] == "test")
    cases = []
    for label in ("normal", "benign", "malignant"):
        files = [f for lab, f in test if lab == label][:4]
        cases += [(f"{label[0]}{k}", busi_dir / f, label) for k, f in enumerate(files)]
    _write_protocol(tmp_path / "protocol.yaml", ["R1", "R2", "R3"], cases)
    return tmp_path / "protocol.yaml"


def _window_factory(qtbot):
    def open_window(opts):
        win = ViewerWindow(opts, engine=FakeEngine() if opts.model is not None else None)  # the runner deletes it
        win.resize(900, 600)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=2000)
        return win
    return open_window


def _answer_case(qtbot, runner, call: str, rating: int) -> str:
    """Wait for the case's first frame, press the call key, type the rating, Enter. Returns the case id."""
    qtbot.waitUntil(lambda: runner.win is not None and runner.win.study.case is not None
                    and runner.win.playback.current is not None
                    and runner.win.playback.is_live(runner.win.playback.current), timeout=8000)
    case = runner.win.study.case
    qtbot.keyClick(runner.win.ui.view, KEY[call])
    qtbot.waitUntil(lambda: runner.dialog is not None, timeout=3000)
    dialog = runner.dialog
    assert not dialog.ok_button.isEnabled()  # no anchor: nothing entered yet
    qtbot.keyClicks(dialog.input.spin, str(rating))
    with qtbot.waitSignal(runner.win.study.answered, timeout=3000):
        qtbot.keyClick(dialog.input.spin, Qt.Key.Key_Return)
    return case


def _fill_forms(qtbot, runner) -> None:
    for _ in range(2):
        qtbot.waitUntil(lambda: runner.dialog is not None and hasattr(runner.dialog, "inputs"), timeout=5000)
        dialog = runner.dialog
        for item in dialog.form.items:
            dialog.set_answer(item.key, item.low + item.step * ((item.high - item.low) // item.step // 2))
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda d=dialog: runner.dialog is not d, timeout=3000)


def _script(reader: str, condition: str, truth: str) -> tuple[str, int]:
    """R1 is always right; the others are right with AI and call every case benign without. Rating: 90 for a
    malignant call, 10 otherwise."""
    call = truth if reader == "R1" or condition == "ai" else "benign"
    return call, 90 if call == "malignant" else 10


def _run_session(qtbot, worklist, logs, truth, stop_after: int | None = None) -> StudyRunner:
    wl = load_worklist(worklist)
    runner = StudyRunner(wl, logs, model="fake", open_window=_window_factory(qtbot))
    runner.start()
    answered = 0
    while runner.finished_rc is None:
        if runner.queue:
            block = runner.block
            call, rating = _script(wl.reader, block.condition, truth[runner.queue[0].id])
            _answer_case(qtbot, runner, call, rating)
            answered += 1
            if stop_after is not None and answered == stop_after:
                runner.win.close()  # the reader closes the window mid-block
                qtbot.waitUntil(lambda: runner.finished_rc is not None, timeout=5000)
                return runner
        else:
            _fill_forms(qtbot, runner)
            qtbot.waitUntil(lambda: runner.finished_rc is not None or (runner.win is not None and bool(runner.queue)),
                            timeout=8000)
    return runner


@pytest.mark.parametrize("study_fixture", ["small_study", pytest.param("busi_study", marks=pytest.mark.shared)])
def test_study_planned_run_by_keys_resumed_and_reported(qtbot, study_fixture, request, tmp_path, capsys):
    protocol = request.getfixturevalue(study_fixture)
    plan, logs, report = tmp_path / "plan", tmp_path / "logs", tmp_path / "report"
    assert study(["plan", str(protocol), "--out", str(plan)]) == 0
    assert "ai" in capsys.readouterr().out
    p = json.loads((plan / "plan.json").read_text())
    truth = {c["id"]: c["truth"] for c in p["cases"]}
    readers, n = p["readers"], len(truth)
    # R1's first session is interrupted after 2 cases (the window closed) and resumed; the rest run straight through
    first = _run_session(qtbot, plan / "R1_s1.yaml", logs, truth, stop_after=2)
    assert first.finished_rc == 0 and first.remaining() == n - 2
    for reader in readers:
        for s in (1, 2):
            runner = _run_session(qtbot, plan / f"{reader}_s{s}.yaml", logs, truth)
            assert runner.finished_rc == 0 and runner.remaining() == 0
    assert len(sorted(logs.glob("demo_R1_s1_*.jsonl"))) == 3  # block 1 (closed), block 1 resumed, block 2
    for path in logs.glob("*.jsonl"):
        (sess,) = read_sessions(path)
        assert sess.complete and sess.header["session_id"].startswith("demo_R")
        assert "truth" not in path.read_text()  # the participant's screen never had the ground truth
    assert study(["report", str(plan), str(logs), "--out", str(report), "--bootstrap", "200"]) == 0
    rows = list(csv.DictReader(open(report / "readings.csv")))
    assert len(rows) == len(readers) * n * 2 and all(r["answered"] == "1" for r in rows)
    assert all(float(r["rt_s"]) >= 0 and r["confidence"] in ("10.0", "90.0") for r in rows)
    summary = json.loads((report / "summary.json").read_text())
    ai, off = summary["conditions"]["ai"], summary["conditions"]["off"]
    # by the script: ai all right; off: R1 right, the others call everything benign
    share_benign = sum(t == "benign" for t in truth.values()) / n
    off_acc = (1 + (len(readers) - 1) * share_benign) / len(readers)
    assert ai["pooled"]["accuracy"]["value"] == pytest.approx(1.0)
    assert off["per_reader"]["R2"]["accuracy"]["value"] == pytest.approx(share_benign)
    assert off["pooled"]["accuracy"]["value"] == pytest.approx(off_acc)
    assert off["pooled"]["sensitivity"]["value"] == pytest.approx(1 / len(readers))
    assert off["per_reader"]["R2"]["specificity"]["value"] == pytest.approx(1.0)
    assert ai["fleiss_kappa"] == pytest.approx(1.0)
    assert summary["reference"] == "off"
    assert summary["differences"][0]["accuracy"]["value"] == pytest.approx(1 - off_acc)
    q = summary["questionnaires"]
    assert set(q) == {"nasa_tlx", "sus"} and q["sus"]["ai"]["n"] == 2 * len(readers)  # a form per block
    assert (report / "report.html").read_text().count("<img") == 3
    data = read_imrmc(report / "study.imrmc")
    assert len(data.scores) == len(rows) and set(data.modalities) == {"ai", "off"}
    assert sum(data.truth.values()) == sum(t == "malignant" for t in truth.values())
