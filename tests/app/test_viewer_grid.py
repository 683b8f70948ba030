"""Several streams in one window (``sonolens view SRC1 … SRC4``, ``app.grid``): frames, overlay and state in every
cell, one stream's failure or end leaving the others playing, the scripted run's report per stream, the refusals on
the command line, and one source still opening the classic window.

Every wait is an event with a generous deadline (``waitUntil``); doubles (``GatedSource``, ``ScriptedSource``)
make the failing and the never-ending stream exact."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from fakes import FakeEngine, ScriptedSource  # noqa: E402
from PyQt6.QtCore import QPoint, Qt  # noqa: E402
from viewer_harness import NEUTRAL_CWD, GatedSource, frames, opts, subprocess_env  # noqa: E402

from sonolens.app.grid import GridWindow  # noqa: E402
from sonolens.app.main import create_window, options_from_args, parser  # noqa: E402
from sonolens.app.window import ViewerWindow  # noqa: E402
from sonolens.pipeline.videoio import VideoWriter  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """6 frames: a stream that ends almost at once."""
    out = tmp_path_factory.mktemp("short") / "short.mp4"
    with VideoWriter(out, 30.0, crf=18) as vw:
        for f in frames(6):
            vw.write(f)
    return out


def grid_opts(*sources, **kw):
    return opts(sources[0], sources=tuple(str(s) for s in sources), **kw)


@pytest.fixture
def make_grid(qtbot):
    """``make(opts, engine=None, size=(1100, 760), start=True)``: a shown, active grid window with a fake engine
    (one for every stream) whose exit goes to ``win.exit_codes``; finished at teardown."""
    windows = []

    def make(options, engine=None, size=(1100, 760), start=True) -> GridWindow:
        win = GridWindow(options, engine=engine if engine is not None else FakeEngine())
        win.exit_codes = []
        win.exit_hook = win.exit_codes.append  # don't leave pytest-qt's event loop
        qtbot.addWidget(win)
        win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=2000)
        windows.append(win)
        if start:
            win.start()
        return win

    yield make
    for win in windows:
        if not win.automation.finishing:
            win.finish(0)


def wait_cells(qtbot, win, n, cells=None, timeout=10000) -> None:
    """Until every cell (or those of ``cells``, 0-based) has displayed ``n`` frames."""
    chosen = [win.cells[i] for i in cells] if cells is not None else win.cells
    qtbot.waitUntil(lambda: all(c.stats.frames_displayed >= n for c in chosen), timeout=timeout)


def origin(win, cell) -> tuple[int, int]:
    p = cell.widget.mapTo(win, QPoint(0, 0))
    return p.x(), p.y()


def test_two_streams_show_their_frames_side_by_side_with_one_engine(qtbot, make_grid, clip):
    engine = FakeEngine()
    win = make_grid(grid_opts(clip, clip, loop=True), engine=engine)
    wait_cells(qtbot, win, 3)
    a, b = win.cells
    assert origin(win, a)[1] == origin(win, b)[1] and origin(win, a)[0] < origin(win, b)[0]  # 2×1
    for cell in win.cells:
        df = cell.view.frame
        assert df is not None and df.generation == cell.playback.bridge.generation
        assert cell.playback.engine is engine and df.heatmap  # one model for both; each frame has its heat map
        assert cell.view.chip is not None and cell.view.chip[0].split()[0] in engine.meta.class_names
        img = cell.view.grab().toImage()
        assert not img.isNull() and img.width() == cell.view.width()
    assert a.playback.pipe is not b.playback.pipe and a.playback.bridge is not b.playback.bridge
    assert win.model.streams[0] is a.playback.state and win.model.streams[1] is b.playback.state
    assert win.stats.frames_displayed == sum(c.stats.frames_displayed for c in win.cells)


def test_four_streams_fill_a_2x2_grid_each_with_its_line(qtbot, make_grid, clip):
    win = make_grid(grid_opts(clip, clip, clip, clip, loop=True))
    wait_cells(qtbot, win, 3)
    xs = sorted({origin(win, c)[0] for c in win.cells})
    ys = sorted({origin(win, c)[1] for c in win.cells})
    assert len(xs) == 2 and len(ys) == 2  # 2×2
    assert [origin(win, c) for c in win.cells] == [(xs[0], ys[0]), (xs[1], ys[0]), (xs[0], ys[1]), (xs[1], ys[1])]
    qtbot.waitUntil(lambda: all("fps" in c.widget.line_text for c in win.cells), timeout=5000)
    for k, cell in enumerate(win.cells, start=1):
        line = cell.widget.line_text
        assert line.startswith(f"{k} · clip.mp4 · ") and "dropped" in line and "capture→result p99" in line, line
        assert cell.view.frame is not None
    hud = win.ui.hud.text()
    assert all(f"{k} clip.mp4" in hud for k in range(1, 5)) and hud.count("capture→result") == 4


def test_a_stream_that_cannot_be_opened_says_so_in_its_cell_and_the_others_play(qtbot, make_grid, clip, tmp_path,
                                                                               capsys):
    missing = tmp_path / "missing.mp4"
    win = make_grid(grid_opts(clip, missing, clip, loop=True))
    wait_cells(qtbot, win, 5, cells=[0, 2])
    bad = win.cells[1]
    assert bad.playback.pipe is None and bad.view.frame is None
    assert bad.view.state_text.startswith("cannot open:") and "missing.mp4" in bad.view.state_text
    assert bad.view.placeholder.startswith(f"Could not open {missing}")
    qtbot.waitUntil(lambda: bad.widget.line_text == "2 · missing.mp4 · could not open", timeout=5000)
    assert win.exit_code == 2 and win.exit_codes == []  # a scripted run will end with 2; the others play on
    assert win.automation.errors and win.automation.errors[0].startswith("stream 2: ")
    assert win.automation.error_box is not None and win.automation.error_box.text().startswith("stream 2: ")
    assert capsys.readouterr().err.strip().startswith("sonolens: error: stream 2: ")


def test_an_interactive_error_dialog_comes_after_every_stream_was_opened(qtbot, make_grid, clip, tmp_path,
                                                                        monkeypatch):
    from PyQt6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text: shown.append(text))
    win = make_grid(grid_opts(tmp_path / "missing.mp4", clip, loop=True, automation=False), start=False)
    assert win.start() is True and shown == []  # the modal box waits until every stream was opened
    assert win.cells[1].playback.pipe is not None
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=5000)
    assert shown[0].startswith("stream 1: ")
    wait_cells(qtbot, win, 3, cells=[1])


def test_no_stream_that_opens_ends_a_scripted_run_with_exit_code_2(qtbot, make_grid, tmp_path, capsys):
    win = make_grid(grid_opts(tmp_path / "a.mp4", tmp_path / "b.mp4"), start=False)
    assert win.start() is False
    qtbot.waitUntil(lambda: win.exit_codes == [2], timeout=5000)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln[:26] for ln in lines] == ["sonolens: error: stream 1:", "sonolens: error: stream 2:"]


def test_a_stream_that_ends_says_so_and_the_others_play_on(qtbot, make_grid, short_clip, gated):
    src = gated(GatedSource(n=1000))
    win = make_grid(grid_opts(short_clip, "gated:"))
    short, live = win.cells
    live.playback.stopping.connect(lambda _pipe: src.close())
    src.release()
    qtbot.waitUntil(lambda: short.playback.is_ended and live.stats.frames_displayed >= 1, timeout=10000)
    assert short.view.state_text == "■ end of stream" and short.view.frame is not None  # the last frame stays
    assert live.view.state_text == "" and not live.playback.is_ended
    seen = live.stats.frames_displayed
    for k in range(1, 4):  # one at a time: the live queue keeps only the newest frame
        src.release()
        qtbot.waitUntil(lambda k=k: live.stats.frames_displayed >= seen + k, timeout=10000)
    assert win.exit_codes == []  # a scripted run waits for the last stream


def test_a_stream_that_fails_shows_its_error_and_the_others_play_on(qtbot, make_grid, clip, gated):
    gated(ScriptedSource(n=100, fps=30.0, size=(192, 144), fail_after=3, live=True))
    win = make_grid(grid_opts("gated:", clip, loop=True))
    failing, other = win.cells
    qtbot.waitUntil(lambda: failing.playback.is_ended, timeout=10000)
    assert failing.view.state_text == "source error: scripted source vanished"
    assert win.automation.errors == ["stream 1: scripted source vanished"]
    seen = other.stats.frames_displayed
    wait_cells(qtbot, win, seen + 5, cells=[1])
    assert other.view.state_text == "" and win.exit_codes == []


def test_space_pauses_and_resumes_every_stream_each_with_its_state(qtbot, make_grid, clip):
    win = make_grid(grid_opts(clip, clip, clip, loop=True))
    wait_cells(qtbot, win, 2)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    for cell in win.cells:
        assert cell.playback.paused and cell.playback.pipe.capture.paused
        assert cell.view.state_text == "❚❚ PAUSED"
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert all(not c.playback.paused and c.view.state_text == "" for c in win.cells)
    seen = [c.stats.frames_displayed for c in win.cells]
    qtbot.waitUntil(lambda: all(c.stats.frames_displayed > n for c, n in zip(win.cells, seen)), timeout=10000)


def test_each_cell_shows_the_state_of_a_frame_without_a_prediction(qtbot, make_grid, clip):
    win = make_grid(grid_opts(clip, clip, loop=True), engine=FakeEngine(ood_threshold=50.0))
    wait_cells(qtbot, win, 3)
    for cell in win.cells:
        df = cell.view.frame
        assert df.result.state == "out_of_domain" and not df.heatmap  # no heat map without a prediction
        assert cell.view.chip[0] == "no prediction: outside the domain"


def test_h_hides_the_heat_map_in_every_cell(qtbot, make_grid, clip):
    win = make_grid(grid_opts(clip, clip, loop=True))
    wait_cells(qtbot, win, 2)
    qtbot.keyClick(win, Qt.Key.Key_Space)  # still frames: re-rendered in place
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert not win.settings.heatmap and all(not c.settings.heatmap for c in win.cells)
    assert all(not c.view.frame.heatmap for c in win.cells)


def test_f1_lists_the_grid_keys_and_esc_quits(qtbot, make_grid, clip):
    win = make_grid(grid_opts(clip, clip, loop=True))
    wait_cells(qtbot, win, 1)
    qtbot.keyClick(win, Qt.Key.Key_F1)
    assert "pause / resume every stream" in win.ui.help_box.text() and "Esc" in win.ui.help_box.text()
    win.ui.help_box.close()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    qtbot.keyClick(win, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: win.exit_codes != [], timeout=5000)
    assert win.exit_codes == [0] and all(c.playback.pipe is None for c in win.cells)


def test_exit_after_frames_writes_a_report_with_a_section_per_stream(qtbot, make_grid, clip, tmp_path):
    rep, shot = tmp_path / "rep.json", tmp_path / "shot.png"
    win = make_grid(grid_opts(clip, clip, clip, exit_after_frames=5, report=str(rep), screenshot=str(shot)))
    qtbot.waitUntil(lambda: win.exit_codes == [0], timeout=15000)
    report = json.loads(rep.read_text())
    assert report["errors"] == [] and len(report["streams"]) == 3
    assert report["frames_displayed"] == sum(s["frames_displayed"] for s in report["streams"])
    for k, s in enumerate(report["streams"], start=1):
        assert s["stream"] == k and s["source"] == str(clip) and s["opened"] and s["error"] is None
        assert s["frames_displayed"] >= 5 and s["pipeline"]["frames_processed"] >= 5
        assert s["frames_dropped"] == s["frames_dropped_queue"] + s["frames_skipped_display"]
        assert s["latency_ms"]["capture_to_paint"]["n"] == s["frames_displayed"]
    assert all(c.playback.pipe is None for c in win.cells)  # every pipeline stopped
    assert cv2.imread(str(shot)).shape[:2] == (win.height(), win.width())


def _view(*args):
    return subprocess.run([sys.executable, "-m", "sonolens", "view", *args], env=subprocess_env(), cwd=NEUTRAL_CWD,
                          capture_output=True, text=True, timeout=120)


def test_cli_grid_run_exits_0_with_a_summary_and_csvs_per_stream(clip, tmp_path):
    rep, csv = tmp_path / "rep.json", tmp_path / "f.csv"
    r = _view(str(clip), str(clip), "--model", "off", "--exit-after-frames", "5", "--report", str(rep),
              "--csv", str(csv), "--size", "1000x700")
    assert r.returncode == 0, r.stderr
    assert "sonolens view: 2 streams" in r.stderr and "stream 1 (" in r.stderr and "stream 2 (" in r.stderr
    report = json.loads(rep.read_text())
    assert [s["stream"] for s in report["streams"]] == [1, 2]
    assert all(s["frames_displayed"] >= 5 and s["pipeline"] is not None for s in report["streams"])
    for k in (1, 2):
        assert (tmp_path / f"f_{k}.csv").is_file() and (tmp_path / f"f_{k}_display.csv").is_file()


def test_five_sources_and_a_grid_study_are_refused_in_one_line(clip, capsys):
    from sonolens.cli import main

    assert main(["view", *[str(clip)] * 5]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "at most 4 streams" in err
    assert main(["view", str(clip), str(clip), "--study", "--participant", "p", "--condition", "ai"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--study" in err


def test_options_of_a_grid_and_of_one_source(clip, short_clip):
    o = options_from_args(parser().parse_args([str(clip), str(short_clip), "--model", "off"]))
    assert o.grid and o.sources == (str(clip), str(short_clip)) and o.source == str(clip)
    assert o.pipeline_config(str(short_clip), 2).source == str(short_clip)
    one = options_from_args(parser().parse_args([str(clip), "--model", "off"]))
    assert not one.grid and one.sources == () and one.source == str(clip)


def test_one_source_still_builds_the_classic_window_and_several_the_grid(qtbot, clip):
    for options, kind in ((opts(clip), ViewerWindow), (grid_opts(clip, clip), GridWindow)):
        win = create_window(options, "1000x700")
        qtbot.addWidget(win)
        win.exit_hook = lambda rc: None
        assert type(win) is kind
        if kind is ViewerWindow:
            assert win.ui.bars is not None and not hasattr(win, "cells")
        else:
            assert len(win.cells) == 2 and win.ui.view is win.cells[0].view
        win.finish(0)
