"""Decoded pictures are freed as soon as the pipeline drops them, not when Python's cycle collector happens to run.

PyAV's ``VideoFrame.side_data`` builds a container that points back at the frame: a frame whose side data was read
is part of a reference cycle, and its picture (~1 MB at 960×720) stays alive until the cyclic garbage collector
runs. Read on every frame (to find the display matrix), that kept 100–200 MB of dead pictures in a 300-frame
``sonolens run`` (peak RSS 324 MB; 189 MB once the side data is read once per decoding pass). The display matrix is
now read through ``FrameOrientation``; these tests check that frames are released without the collector, that RSS
stays flat over passes, and that the cached orientation is still applied to every frame of every pass.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import av
import numpy as np
from conftest import NEUTRAL_CWD, REPO

from sonolens.pipeline.orientation import FrameOrientation, frame_orientation
from sonolens.pipeline.sources import VideoSource

SWEEP = REPO / "assets" / "sample_videos" / "sweep.mp4"  # 360 frames of 640x480 H.264


def _live_video_frames() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is av.VideoFrame)


def test_decoded_frames_are_freed_without_the_cycle_collector():
    """With the cycle collector off, two passes over a 360-frame clip leave a handful of frames alive, not 720."""
    with VideoSource(SWEEP) as src:
        gc.collect()
        before = _live_video_frames()
        gc.disable()
        try:
            n = 0
            for _ in range(2):
                for frame in src.frames(0.0):
                    n += frame.pixels.shape[0] > 0
            alive = _live_video_frames() - before
        finally:
            gc.enable()
            gc.collect()
    assert n == 720
    assert alive <= 10, f"{alive} decoded frames wait for the garbage collector after {n} frames"  # before: ~720


def test_looping_does_not_leave_a_frame_per_pass_for_the_collector():
    """Twelve passes over the clip with the cycle collector off: the display matrix is read once per open, so no
    picture per pass waits in a reference cycle (before: one per pass; +55 MB over a 30-minute looped soak)."""
    with VideoSource(SWEEP) as src:
        gc.collect()
        before = _live_video_frames()
        gc.disable()
        try:
            for _ in range(12):
                for _frame in src.frames(0.0):
                    pass
            alive = _live_video_frames() - before
        finally:
            gc.enable()
            gc.collect()
    assert alive <= 2, f"{alive} decoded frames wait for the garbage collector after 12 passes"  # before: 12


_DECODE = """
import json, sys
from sonolens.cli import tune_process
tune_process()  # the malloc settings the sonolens command runs with
from sonolens.pipeline.sources import VideoSource

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

src = VideoSource(sys.argv[1])
src.open()
samples = [rss_mb()]
for _ in range(int(sys.argv[2])):
    for frame in src.frames(0.0):
        pass
    samples.append(rss_mb())
src.close()
print(json.dumps(samples))
"""


def test_decoding_a_looped_clip_keeps_rss_flat():
    """Decoding only (no threads, no timing): 3 passes of the sample grow RSS by a few MB (before: ~100 MB, the
    dead pictures of the first pass)."""
    out = subprocess.run([sys.executable, "-c", _DECODE, str(SWEEP), "3"], capture_output=True, text=True,
                         timeout=300, cwd=NEUTRAL_CWD, check=True)
    samples = json.loads(out.stdout.strip().splitlines()[-1])
    growth = max(samples) - samples[0]
    assert growth < 40, f"RSS {samples[0]:.0f} MB after open, {samples} MB after each pass"


class _FakeFrame:
    """What ``frame_orientation`` reads from an ``av.VideoFrame``, counting reads of ``side_data``."""

    def __init__(self, rotation: int, log: list[int]) -> None:
        self.rotation, self._log = rotation, log

    @property
    def side_data(self):
        self._log.append(self.rotation)
        return None


def test_frame_orientation_reads_side_data_only_when_it_can_have_changed():
    log: list[int] = []
    orient = FrameOrientation()
    codes = [orient(_FakeFrame(r, log)) for r in (0, 0, 0, -90, -90, 0)]
    assert codes == [1, 1, 1, 6, 6, 1]
    assert log == [0, -90, 0]  # first frame and each change of rotation, not every frame
    orient.reset()
    assert orient(_FakeFrame(0, log)) == 1 and log == [0, -90, 0, 0]  # a new pass reads it again


def _flipped_clip(path, n: int = 12):
    """An H.264 clip of distinct-cornered frames with a display matrix: −90° and a horizontal mirror."""
    a = np.full((60, 80, 3), 60, np.uint8)
    a[:12, :16] = (255, 0, 0)
    a[:12, -16:] = (0, 255, 0)
    a[-12:, :16] = (0, 0, 255)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 80, 60, "yuv444p"
        stream.set_display_rotation(-90, hflip=True)
        for _ in range(n):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def test_display_matrix_applies_to_every_frame_of_every_pass(tmp_path):
    """The orientation read once per pass still turns every frame: first pass, a second pass and a seek."""
    path = _flipped_clip(tmp_path / "clip.mp4")
    with av.open(str(path)) as c:
        expected = frame_orientation(next(c.decode(video=0)))
    assert expected == 5  # transpose: both the rotation and the mirror matter
    with VideoSource(path) as src:
        passes = [list(src.frames(0.0)), list(src.frames(0.0)), list(src.frames(0.2))]
    assert [len(p) for p in passes] == [12, 12, 6]
    reference = passes[0][0].pixels
    assert reference.shape[:2] == (80, 60)  # turned: 60 wide, 80 high
    # transposed: red stays top-left, green (top-right) goes bottom-left, blue (bottom-left) top-right
    assert tuple(int(np.argmax(reference[y, x])) for y, x in ((3, 3), (3, 56), (76, 3))) == (0, 2, 1)
    for frames in passes:
        for f in frames:
            assert f.pixels.shape == reference.shape
            assert np.abs(f.pixels.astype(int) - reference.astype(int)).mean() < 2.0
