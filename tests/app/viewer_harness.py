"""What the viewer tests share: a short clip, a window factory, and doubles the test steps by hand.

``GatedSource`` yields a frame only when the test releases one, and ``GatedEngine`` answers only when the test
lets it, so pause/step, drops and a blocked worker are checked with exact counts instead of sleeps. Both are
installed in place of ``pipeline.stream.open_source`` / the engine for the source spec ``gated:``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import FakeEngine

from sonolens.app.options import ViewerOptions
from sonolens.app.selfcheck import qimage_to_array
from sonolens.app.window import ViewerWindow
from sonolens.pipeline import stream
from sonolens.pipeline.messages import RawFrame, Result, Timings
from sonolens.pipeline.sources.base import Source, SourceInfo
from sonolens.pipeline.videoio import VideoWriter

REPO = Path(__file__).resolve().parents[2]
NEUTRAL_CWD = REPO / "tests"  # subprocesses run here: the repository's sonolens/ folder would shadow the install
W, H = 192, 144
GATED = "gated:"


def frames(n: int, w: int = W, h: int = H, seed: int = 0):
    """Speckle-like noise with a dark disc moving across: every frame differs, the ROI detector has texture."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w), dtype=np.uint8), (3, 3), 0)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        g = np.roll(base, i * 2, axis=1).astype(np.int16)
        cx = 30 + (i * 3) % (w - 60)
        g[(xx - cx) ** 2 + (yy - h // 2) ** 2 < 18 ** 2] //= 4
        yield np.repeat(np.clip(g, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """45 frames at 30 fps, W×H."""
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with VideoWriter(out, 30.0, crf=18) as vw:
        for f in frames(45):
            vw.write(f)
    return out


def opts(source, **kw) -> ViewerOptions:
    kw.setdefault("model", "fake")
    kw.setdefault("automation", True)  # no modal dialogs in tests
    return ViewerOptions(source=str(source), **kw)


@pytest.fixture
def make_window(qtbot):
    """``make(opts, engine=None, size=(900, 600), start=True)``: a shown, active window with a fake engine whose
    exit goes to ``win.exit_codes`` instead of leaving the event loop; finished at teardown."""
    windows = []

    def make(options: ViewerOptions, engine=None, size=(900, 600), start=True) -> ViewerWindow:
        win = ViewerWindow(options, engine=engine if engine is not None else FakeEngine())
        win.exit_codes = []
        win.exit_hook = win.exit_codes.append  # don't leave pytest-qt's event loop
        qtbot.addWidget(win)
        win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()  # shortcuts are window shortcuts: they need the active window
        qtbot.waitUntil(win.isActiveWindow, timeout=2000)
        if start:
            assert win.start()
        windows.append(win)
        return win

    yield make
    for win in windows:
        if not win.automation.finishing:
            win.finish(0)


def grab_view(win) -> np.ndarray:
    return qimage_to_array(win.ui.view.grab().toImage())[:, :, [2, 1, 0]]  # BGRX -> RGB


def wait_frames(qtbot, win, n, timeout=8000) -> None:
    qtbot.waitUntil(lambda: win.stats.frames_displayed >= n, timeout=timeout)


def make_result(index: int, frame: np.ndarray, class_names=("normal", "benign", "malignant")) -> Result:
    """A result as the worker would deliver it, built by keyword."""
    now = time.perf_counter_ns()
    h, w = frame.shape[:2]
    probs = np.full(len(class_names), 1.0 / len(class_names), np.float32)
    probs[-1] += 0.1
    probs /= probs.sum()
    t = Timings(t_captured_ns=now, t_enqueued_ns=now, t_dequeued_ns=now, t_preprocessed_ns=now, t_inferred_ns=now,
                t_delivered_ns=now, pts_s=index / 30)
    return Result(index=index, frame=frame, roi=(0, 0, w, h), timings=t, class_names=tuple(class_names),
                  probs=probs, raw_probs=probs, cam=np.ones((4, 4), np.float32), cam_class=len(class_names) - 1)


class GatedSource(Source):
    """Up to ``n`` frames, each yielded only after ``release()``; ``close()`` (or the window stopping the
    pipeline, see ``install``) ends it."""

    def __init__(self, n: int = 100, size=(W, H), live: bool = True) -> None:
        self.n, self.size, self.live = n, size, live
        self._gate = threading.Semaphore(0)
        self._closed = threading.Event()
        self.yielded = 0
        self._frames = list(frames(8, *size))

    def open(self) -> SourceInfo:
        w, h = self.size
        self.info = SourceInfo("gated", "video", w, h, 30.0, self.n, self.live)
        return self.info

    def release(self, k: int = 1) -> None:
        for _ in range(k):
            self._gate.release()

    def frames(self, start_s: float = 0.0):
        for i in range(self.n):
            while not self._gate.acquire(timeout=0.02):
                if self._closed.is_set():
                    return
            self.yielded += 1
            yield RawFrame(self._frames[i % len(self._frames)], i / 30)

    def close(self) -> None:
        self._closed.set()


class GatedEngine(FakeEngine):
    """``FakeEngine`` whose ``run`` waits until ``go`` is set; ``entered`` counts calls that started."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.entered = 0

    def run(self, x: np.ndarray, want_cam: bool = True):
        self.entered += 1
        self.go.wait()
        return super().run(x, want_cam)


@pytest.fixture
def gated(monkeypatch):
    """``install(win_source)``: ``pipeline.stream.open_source("gated:")`` returns that source."""
    original = stream.open_source

    def install(src: GatedSource) -> GatedSource:
        monkeypatch.setattr(stream, "open_source",
                            lambda spec, fps=1.0, **kw: src if spec == GATED else original(spec, fps=fps, **kw))
        return src

    return install


def release_on_stop(win, *things) -> None:
    """Unblock gated doubles when the window stops its pipeline (else the threads could not be joined)."""
    def unblock(_pipe) -> None:
        for t in things:
            t.close() if isinstance(t, GatedSource) else t.go.set()

    win.playback.stopping.connect(unblock)


def subprocess_env() -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env["PYTHONPATH"] = str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env
