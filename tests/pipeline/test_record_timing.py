"""Recordings keep each frame's time: a variable-frame-rate source is recorded at its own times, not at one rate."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
from conftest import sonolens_proc


def _vfr_clip(path, times):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        rng = np.random.default_rng(0)
        for t in times:
            img = np.full((240, 320, 3), 10, np.uint8)
            img[40:200, 60:260] = rng.rayleigh(60, (160, 200, 1)).clip(0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _frame_times(path):
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def test_variable_frame_rate_source_is_recorded_at_its_own_times(tmp_path):
    times = [i / 30 for i in range(30)] + [1 + i / 5 for i in range(30)]  # 30 fps for 1 s, then 5 fps: 6.8 s
    clip, rec, rep = tmp_path / "vfr.mp4", tmp_path / "o.mp4", tmp_path / "r.json"
    _vfr_clip(clip, times)
    source_times = _frame_times(clip)
    proc = sonolens_proc("run", str(clip), "--model", "off", "--max-rate", "--record", str(rec), "--json", str(rep))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(rep.read_text())["recording"]["frames_written"] == len(source_times) == 60
    got = _frame_times(rec)
    assert len(got) == 60
    # the recording starts at 0 and keeps every interval of the source (to the 90 kHz clock), so it lasts 6.8 s
    expect = [t - source_times[0] for t in source_times]
    assert np.allclose(got, expect, atol=2e-3), (got[:3], got[-3:])
