"""``pipeline.videoio.VideoWriter``, the MP4 writer that ``sonolens simulate`` and the recorder share."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.videoio import VideoWriter

from decode_clip import decode_clip


@pytest.mark.parametrize("fps,codec", [(12.69, None), (30.0, None), (25.0, "mpeg4")])
def test_videowriter_round_trip(tmp_path, fps, codec):
    path = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps, codec=codec) as w:
        for i in range(15):
            frame = np.full((121, 161, 3), 8 * i, np.uint8)   # odd size: padded to even
            frame[:20, :20] = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            w.write(frame)
    frames, stream, times = decode_clip(path)
    assert len(frames) == 15
    assert frames[0].shape == (122, 162, 3)
    assert stream.average_rate == Fraction(fps).limit_denominator(1001)
    assert times == pytest.approx([i / fps for i in range(15)], abs=1e-3)
    assert abs(float(frames[10][60:100, 60:140].mean()) - 80) < 6   # the content survived


def test_videowriter_keeps_frames_when_the_caller_crashes(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 30) as w:
            for _ in range(5):
                w.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert len(decode_clip(path)[0]) == 5


def test_videowriter_fragmented_is_readable_and_gray_accepted(tmp_path):
    path = tmp_path / "frag.mp4"
    with VideoWriter(path, 30, size=(64, 48), fragmented=True) as w:
        for i in range(12):
            w.write(np.full((48, 64), 10 * i, np.uint8))
        with pytest.raises(ConfigError):
            w.write(np.zeros((50, 64, 3), np.uint8))  # size changed mid-stream
    assert len(decode_clip(path)[0]) == 12


def test_videowriter_unwritable_path(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "v.mp4", 30)
    with pytest.raises(ConfigError):
        VideoWriter(tmp_path, 30)
    with pytest.raises(ConfigError):
        VideoWriter(tmp_path / "v.mp4", 0)
