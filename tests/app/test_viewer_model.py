"""The Qt-free viewer model (``app.model``): its event, the controller attributes that live in it, the playback
counts; and, with a window, that the status bar follows the model, not the controllers."""

from __future__ import annotations

import types

import pytest

from sonolens.app.model import Event, PlaybackState, ViewerModel, state_field


def test_event_calls_each_callback_in_order_and_disconnects():
    ev, got = Event(), []
    first = lambda x: got.append(("a", x))  # noqa: E731
    ev.connect(first)
    ev.connect(lambda x: got.append(("b", x)))
    ev.emit(1)
    ev.disconnect(first)
    ev.emit(2)
    assert got == [("a", 1), ("b", 1), ("b", 2)]


def test_a_controller_attribute_is_the_models_field():
    model = ViewerModel()

    class Controller:
        paused = state_field("paused")

        def __init__(self):
            self.state = model.playback

    c = Controller()
    c.paused = True
    assert model.playback.paused is True and c.paused is True
    model.playback.paused = False
    assert c.paused is False


def test_notify_names_the_part_and_refuses_an_unknown_one():
    model, parts = ViewerModel(), []
    model.changed.connect(parts.append)
    model.notify("recording")
    assert parts == ["recording"]
    with pytest.raises(ValueError, match="unknown part"):
        model.notify("recordings")


def test_playback_counts_add_the_replaced_pipelines_to_the_current_one():
    pb = PlaybackState(skipped_other=2, skipped_bridges=3, dropped_old=4)
    assert pb.still and pb.frames_skipped == 5 and pb.frames_dropped_queue == 4 and pb.source_label is None
    pb.bridge = types.SimpleNamespace(skipped=10, generation=7)
    info = types.SimpleNamespace(name="a.mp4", kind="file", width=64, height=48, fps=30.0)
    pb.pipe = types.SimpleNamespace(queue=types.SimpleNamespace(dropped=6), info=info)
    assert not pb.still and pb.frames_skipped == 15 and pb.frames_dropped_queue == 10
    assert pb.source_label == "a.mp4 (file, 64×48, 30 fps)"
    assert pb.is_live(types.SimpleNamespace(generation=7)) and not pb.is_live(types.SimpleNamespace(generation=6))


def test_the_status_bar_follows_the_model(qtbot, make_window, clip):
    pytest.importorskip("pytestqt")
    from viewer_harness import opts, wait_frames

    win = make_window(opts(clip, loop=True))
    wait_frames(qtbot, win, 2)
    win.model.study.case_label = "case 3 of 12"  # written by its owner in a study; here by hand
    win.model.notify("study")
    assert win.ui.status_label.text().startswith("case 3 of 12")
    assert "clip.mp4" not in win.ui.status_label.text()


pytest_plugins = ("viewer_harness",)
