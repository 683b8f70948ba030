"""Frames without a prediction in the window (#12): the state text instead of bars and heat map, the out-of-domain
score in the HUD, ``--no-gate``, the pipeline's warnings in the window and in a recording, and the state in the
study log.

``FakeEngine(ood_threshold=T)`` scores a frame by the mean grey of its model input; the harness clip's frames
average about 127, so T=50 puts every frame outside the domain and T=250 none."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")
pytest.register_assert_rewrite("viewer_harness")

from fakes import FakeEngine  # noqa: E402
from PyQt6.QtCore import Qt  # noqa: E402
from viewer_harness import H, W, grab_view, opts, wait_frames  # noqa: E402

from sonolens.app.main import options_from_args, parser  # noqa: E402
from sonolens.app.options import StudyOptions  # noqa: E402
from sonolens.pipeline.messages import STATE_TEXT  # noqa: E402
from sonolens.study.export import analyse, format_summary  # noqa: E402
from sonolens.study.log import read_log  # noqa: E402

pytest_plugins = ("viewer_harness",)  # clip, make_window, gated


def _trained(engine: FakeEngine) -> FakeEngine:
    engine.meta = dataclasses.replace(engine.meta, trained=True)
    return engine


def test_out_of_domain_frames_show_the_state_text_instead_of_bars_and_heat_map(qtbot, make_window, clip):
    win = make_window(opts(clip, loop=True), engine=_trained(FakeEngine(ood_threshold=50.0)))
    view = win.ui.view
    view.setFixedSize(W, H + view.STRIP_H)  # the frame is shown 1:1
    pb = win.playback
    qtbot.waitUntil(lambda: pb.current is not None and pb.current.area == (W, H), timeout=8000)
    wait_frames(qtbot, win, win.stats.frames_displayed + 1)
    df = pb.current
    r = df.result
    assert r.state == "out_of_domain" and r.ood_score > 50 and r.probs.size == 3  # the model ran: logged, not shown
    bars = win.ui.bars
    assert bars.hidden_text == STATE_TEXT["out_of_domain"] and bars.probs.size == 0 and bars.top_text == ""
    assert view.chip[0] == "no prediction: outside the domain"
    assert win.settings.heatmap and not df.heatmap  # the heat map is on, and still not drawn
    img = grab_view(win)
    x, y, w, h = view.image_rect(df)
    rx, ry, rw, rh = r.roi
    painted = img[y + ry : y + ry + rh, x + rx : x + rx + rw]
    assert np.array_equal(painted[2:-2, 2:-2], r.frame[ry : ry + rh, rx : rx + rw][2:-2, 2:-2])
    win.presenter.refresh_hud()
    line = next(ln for ln in win.ui.hud.text().splitlines() if ln.startswith("ood score"))
    assert re.fullmatch(r"ood score \d+\.\d\d / 50\.00  out_of_domain", line), line
    assert win.ui.warnings == []  # a trained model with a gate that is on: nothing to warn about


def test_in_domain_frames_show_bars_and_the_score(qtbot, make_window, clip):
    win = make_window(opts(clip, loop=True), engine=_trained(FakeEngine(ood_threshold=250.0)))
    wait_frames(qtbot, win, 3)
    r = win.playback.current.result
    assert r.state == "ok" and win.ui.bars.hidden_text is None and win.ui.bars.probs.size == 3
    assert win.playback.current.heatmap
    win.presenter.refresh_hud()
    assert f"ood score {r.ood_score:.2f} / 250.00  ok" in win.ui.hud.text()


def test_no_gate_predicts_on_every_frame_and_the_window_says_so(qtbot, make_window, clip):
    args = parser().parse_args([str(clip), "--no-gate", "--exit-after-frames", "3"])
    o = options_from_args(args)
    assert o.gate is False and o.pipeline_config(str(clip)).gate is False
    assert options_from_args(parser().parse_args([str(clip)])).pipeline_config(str(clip)).gate is True
    win = make_window(opts(clip, loop=True, gate=False), engine=_trained(FakeEngine(ood_threshold=50.0)))
    wait_frames(qtbot, win, 3)
    r = win.playback.current.result
    assert win.playback.pipe.cfg.gate is False
    assert r.state == "ok" and r.ood_score > 50 and win.ui.bars.probs.size == 3  # predicted although out of domain
    assert any("--no-gate" in w for w in win.ui.warnings) and win.ui.warnings_label.isVisibleTo(win)
    assert "--no-gate" in win.ui.warnings_label.text()
    win.presenter.refresh_hud()
    hud = win.ui.hud.text()
    assert "⚠ the out-of-domain gate is off (--no-gate)" in hud.replace("\n  ", " ") and "(gate off)" in hud


def test_an_untrained_model_says_so_in_the_hud_and_in_a_recording(qtbot, make_window, clip, tmp_path):
    win = make_window(opts(clip, loop=True, record_dir=str(tmp_path)), engine=FakeEngine())  # trained=False
    wait_frames(qtbot, win, 2)
    assert win.ui.warnings == win.playback.pipe.warnings()
    assert any("untrained" in w for w in win.ui.warnings) and any("no out-of-domain gate" in w for w in win.ui.warnings)
    win.presenter.refresh_hud()
    hud = win.ui.hud.text()
    assert hud.replace("\n  ", " ").startswith("⚠ the model is untrained (random weights)\n")  # first, wrapped
    assert max(len(ln) for ln in hud.splitlines()) <= 38  # fits the panel
    assert "UNTRAINED" in win.ui.model_label.text() and "untrained" in win.ui.warnings_label.text()
    qtbot.keyClick(win.ui.view, Qt.Key.Key_R)
    rec = win.recording.recorder
    assert rec.style.warning == "THE MODEL IS UNTRAINED (RANDOM WEIGHTS): ITS PREDICTIONS MEAN NOTHING"
    qtbot.keyClick(win.ui.view, Qt.Key.Key_R)
    # a trained model: no such line in the recording
    trained = make_window(opts(clip, loop=True, record_dir=str(tmp_path)), engine=_trained(FakeEngine()))
    wait_frames(qtbot, trained, 1)
    trained.recording.toggle()
    assert trained.recording.recorder.style.warning is None
    trained.recording.toggle()


def test_study_log_has_each_frames_state_and_score_and_export_excludes_those_calls(qtbot, make_window, clip,
                                                                                   tmp_path):
    log = tmp_path / "s.jsonl"
    win = make_window(opts(clip, loop=True, study=StudyOptions("P07", "ai", str(log))),
                      engine=_trained(FakeEngine(ood_threshold=50.0)))
    wait_frames(qtbot, win, 3)
    qtbot.keyClick(win.ui.view, Qt.Key.Key_2)
    win.finish(0)
    recs = read_log(log)
    assert recs.header["gate"] is True
    assert recs.frames and all(f["state"] == "out_of_domain" and f["ood_score"] > 50 and not f["shown"]
                               and len(f["probs"]) == 3 for f in recs.frames)
    call = next(e for e in recs.events if e["kind"] == "call")
    assert call["model_state"] == "out_of_domain" and call["model_label"] is not None
    _, s = analyse(recs)
    assert s["calls"] == 1 and s["calls_with_model"] == 0 and s["agreement"] is None
    assert s["calls_without_prediction"] == {"out_of_domain": 1}
    assert "1 call on frames without a prediction (out_of_domain 1) excluded from agreement and kappa" \
        in format_summary(s)


def test_presentation_mode_shows_the_prediction_without_the_engineering_panel(make_window, clip, qtbot):
    """``view --present`` (first-hour issue): image, class bars, heat map and state; no HUD, no overlay controls,
    no latency stamp strip, even with --report."""
    win = make_window(opts(clip, loop=True, present=True))
    wait_frames(qtbot, win, 3)
    assert not win.ui.engineering.isVisible() and win.ui.bars.isVisible()
    normal = make_window(opts(clip, loop=True))
    wait_frames(qtbot, normal, 3)
    assert normal.ui.engineering.isVisible()
    args = options_from_args(parser().parse_args([str(clip), "--present", "--report", "r.json"]))
    assert args.present and args.selfcheck is False
