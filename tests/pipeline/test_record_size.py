"""Legible recordings (first-hour issue, item 8): at c28fbd5 the burned-in panel of a 256×256 source was drawn at
256×256 (text about 6 px high, unreadable). The frame is now scaled before the overlay is drawn: small sources by
a whole multiple (short side ≥ 480 px), any size with ``--record-size WxH``."""

from __future__ import annotations

import json

import av
import numpy as np
from conftest import assert_one_line_error, sonolens_proc

from sonolens.pipeline.messages import Result, Timings
from sonolens.pipeline.record import MIN_SHORT_SIDE, record_scale, scaled_result
from sonolens.pipeline.videoio import VideoWriter


def small_clip(path, w=256, h=256, n=12):
    rng = np.random.default_rng(0)
    with VideoWriter(path, 30.0) as writer:
        for _ in range(n):
            writer.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def recorded_size(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.width, s.height


def test_a_small_source_is_recorded_at_a_legible_size(tmp_path):
    clip, out, rep = small_clip(tmp_path / "small.mp4"), tmp_path / "o.mp4", tmp_path / "r.json"
    proc = sonolens_proc("run", str(clip), "--max-rate", "--record", str(out), "--json", str(rep))
    assert proc.returncode == 0, proc.stderr
    assert recorded_size(out) == (512, 512)
    rec = json.loads(rep.read_text())["recording"]
    assert rec["size"] == [512, 512] and rec["scale"] == 2.0


def test_record_size_sets_the_recording_and_fits_the_image(tmp_path):
    clip, out = small_clip(tmp_path / "small.mp4"), tmp_path / "o.mp4"
    proc = sonolens_proc("run", str(clip), "--max-rate", "--record", str(out), "--record-size", "1280x720")
    assert proc.returncode == 0, proc.stderr
    assert recorded_size(out) == (1280, 720)


def test_record_size_mistakes_are_one_line(tmp_path):
    clip = small_clip(tmp_path / "small.mp4")
    assert_one_line_error(sonolens_proc("run", str(clip), "--record-size", "1280x720"), "--record")
    proc = sonolens_proc("run", str(clip), "--record", str(tmp_path / "o.mp4"), "--record-size", "12x9")
    assert proc.returncode == 2 and "64..7680" in proc.stderr


def test_the_scale_rule_and_the_scaled_result():
    assert record_scale(960, 720) == 1.0 and record_scale(256, 256) == 2.0 and record_scale(300, 100) == 5.0
    assert record_scale(256, 256, (1280, 720)) == 720 / 256
    assert min(256, 256) * record_scale(256, 256) >= MIN_SHORT_SIDE
    frame = np.zeros((100, 200, 3), np.uint8)
    timings = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                      t_delivered_ns=0)
    r = Result(index=0, frame=frame, roi=(10, 20, 30, 40), timings=timings)
    scaled = scaled_result(r, 3.0)
    assert scaled.frame.shape == (300, 600, 3) and scaled.roi == (30, 60, 90, 120)
