"""The ``phantom:KIND`` source: the thin ``Source`` adapter over the simulator (``pipeline/sources/phantom.py``)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from sonolens.pipeline.errors import SourceError
from sonolens.pipeline.sources import open_source
from sonolens.pipeline.sources.phantom import PhantomSource
from sonolens.simulator import KINDS, Phantom


def test_source_interface_finite():
    src = PhantomSource("malignant", seed=1, fps=10.0, size=(160, 120), seconds=1.0, realtime=False)
    with src:
        info = src.info
        assert (info.kind, info.live, info.fps, info.frame_count) == ("phantom", False, 10.0, 10)
        assert (info.width, info.height) == (160, 120)
        frames = list(src.frames())
        assert len(frames) == 10
        assert [f.pts_s for f in frames] == pytest.approx([i / 10 for i in range(10)])
        assert frames[0].pixels.shape == (120, 160, 3) and frames[0].pixels.dtype == np.uint8
        again = list(src.frames(start_s=0.5))     # restart part-way, as the capture thread does to loop
        assert [f.pts_s for f in again] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
        assert np.array_equal(again[0].pixels, frames[5].pixels)
    src.close()  # twice is fine


def test_source_frames_are_the_simulators_frames():
    src = PhantomSource("cyst", seed=4, fps=15.0, size=(160, 120), seconds=2.0, realtime=False)
    ph = Phantom("cyst", seed=4, fps=15.0, size=(160, 120), seconds=2.0)
    with src:
        frames = list(src.frames())
    assert len(frames) == ph.frame_count == 30
    for i in (0, 15, 29):
        assert np.array_equal(frames[i].pixels, ph.render(i))


class _FakeTime:
    """Stands in for the ``time`` module of the phantom source: the clock moves only when the source sleeps or the
    test says so, so pacing is checked exactly, without depending on the machine's speed."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_live_source_paces_itself_and_skips_when_the_reader_lags(monkeypatch):
    import sonolens.pipeline.sources.phantom as phantom_source

    clock = _FakeTime()
    monkeypatch.setattr(phantom_source, "time", clock)
    src = PhantomSource("cyst", seed=0, fps=40.0, size=(96, 96), seconds=2.0)
    assert src.open().live                       # the capture thread leaves live sources unpaced
    frames = src.frames()
    first = [next(frames) for _ in range(6)]
    assert [f.pts_s for f in first] == pytest.approx([i / 40 for i in range(6)])
    assert clock.now - 100.0 == pytest.approx(5 / 40)  # delivered on the 40 Hz clock, not as fast as possible
    clock.now += 0.21                            # a reader that stalls for 8.4 frame periods...
    late = next(frames)  # ...gets the frame on screen now: t = 0.335 s lies in frame 13's period [0.325, 0.35)
    assert late.pts_s == pytest.approx(13 / 40) and src.frames_skipped == 7
    src.close()


def test_source_endless_sweep():
    src = PhantomSource("sweep", seed=0, size=(160, 120), realtime=False)
    info = src.open()
    assert info.frame_count is None
    frames = list(itertools.islice(src.frames(), 3))
    assert len(frames) == 3 and frames[2].pts_s == pytest.approx(2 / 30)
    kinds = {t.kind for i in range(0, 30 * 13, 15) for t in src.phantom.truth(i)}
    assert kinds == {"cyst", "benign", "malignant"}    # the sweep passes every lesion kind
    src.close()


def test_simulator_errors_become_source_errors():
    with pytest.raises(SourceError) as err:
        PhantomSource("tumour")
    assert all(k in str(err.value) for k in KINDS)
    with pytest.raises(SourceError, match="fps"):
        PhantomSource("cyst", fps=0)
    for kwargs, words in (({"size": (32, 32)}, "64x64"), ({"seconds": 0.0}, "seconds")):
        src = PhantomSource("cyst", **kwargs)     # the renderer is built on open()
        with pytest.raises(SourceError, match=words):
            src.open()


def test_open_source_gives_a_phantom_source():
    src = open_source("phantom:benign", fps=1.0)   # a slideshow rate must not slow a phantom down
    assert isinstance(src, PhantomSource) and (src.kind, src.fps) == ("benign", 30.0)
    with pytest.raises(SourceError, match="unknown phantom kind"):
        open_source("phantom:tumour")


def test_phantom_source_stays_light():
    code = ("import sys, sonolens.pipeline.sources.phantom as p; p.PhantomSource('cyst', size=(96, 96)).open(); "
            "bad = [m for m in ('torch', 'tqdm', 'PyQt6', 'timm') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
