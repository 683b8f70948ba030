"""``pipeline.videoio.VideoWriter``, the MP4 writer that ``sonolens simulate`` and the recorder share."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from decode_clip import decode_clip

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.videoio import VideoWriter


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


_KILLED_WRITER = """
import os, sys
import numpy as np
from sonolens.pipeline.videoio import VideoWriter
n, path = int(sys.argv[1]), sys.argv[2]
w = VideoWriter(path, 25, size=(960, 720), fragmented=True)
for i in range(n):
    img = np.zeros((720, 960, 3), np.uint8)
    img[:, :, 0] = (np.arange(960)[None, :] + i) % 256
    img[100:200, 100 + i:200 + i] = 255
    w.write(img)
os._exit(0)  # like kill -9: no close, no flush from Python
"""


def _decodable_frames(path) -> int:
    import av

    n = 0
    try:
        with av.open(str(path)) as c:
            for _ in c.decode(video=0):
                n += 1
    except av.FFmpegError:
        pass  # the fragment being written when the process died is cut: count what decodes before it
    return n


def test_fragmented_recording_survives_a_killed_process(tmp_path):
    """Every finished fragment is on disk when the process dies: at most one fragment (2 s = 50 frames at 25 fps)
    plus the encoder's look-ahead is lost — not the whole file (a compressible 960x720 clip used to stay in
    FFmpeg's 256 KiB write buffer: a 28-byte file)."""
    import subprocess
    import sys

    from conftest import NEUTRAL_CWD

    path = tmp_path / "killed.mp4"
    n = 150
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(n), str(path)], check=True, cwd=NEUTRAL_CWD,
                   timeout=120)
    decoded = _decodable_frames(path)
    assert n - 50 - 40 <= decoded <= n, decoded
