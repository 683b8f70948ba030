"""Test doubles for the pipeline: a scripted source and an engine with a known answer."""

from __future__ import annotations

import time

import numpy as np

from sonolens.pipeline.engines import EngineOutput
from sonolens.pipeline.errors import SourceError
from sonolens.pipeline.messages import RawFrame
from sonolens.pipeline.modelfile import ModelSpec
from sonolens.pipeline.sources.base import Source, SourceInfo


class ScriptedSource(Source):
    """``n`` frames of noise at ``fps``; optionally fails with SourceError after ``fail_after`` frames."""

    def __init__(self, n: int = 20, fps: float = 100.0, size=(64, 48), fail_after: int | None = None,
                 live: bool = False):
        self.n, self.fps, self.size, self.fail_after, self.live = n, fps, size, fail_after, live
        self.closed = False
        self.opened = 0

    def open(self) -> SourceInfo:
        self.opened += 1
        w, h = self.size
        self.info = SourceInfo("scripted", "video", w, h, self.fps, self.n, self.live)
        return self.info

    def frames(self, start_s: float = 0.0):
        rng = np.random.default_rng(0)
        w, h = self.size
        for i in range(self.n):
            if self.fail_after is not None and i >= self.fail_after:
                raise SourceError("scripted source vanished")
            if self.live:
                time.sleep(1.0 / self.fps)
            yield RawFrame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), i / self.fps)

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    """Returns logits that depend on the input's mean, so EMA and probabilities are checkable; optional delay."""

    def __init__(self, delay_s: float = 0.0, classes=("normal", "benign", "malignant"), ood_threshold=None,
                 temperature: float = 1.0):
        """With ``ood_threshold`` the engine has an out-of-domain gate whose score is the input's mean grey level
        (0..255): a bright image is "outside the domain"."""
        ood = {"method": "mean-grey", "threshold": float(ood_threshold)} if ood_threshold is not None else {}
        self.meta = ModelSpec(arch="fake", class_names=tuple(classes), input_size=(32, 32),
                              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), cam_layer="x", has_cam=True,
                              temperature=temperature, ood=ood)
        self.delay_s = delay_s
        self.calls = 0

    def infer(self, x: np.ndarray, want_cam: bool = True) -> EngineOutput:
        logits, cam = self.run(x, want_cam)
        grey = float((x[0, 0] * 0.25 + 0.5).mean() * 255.0)
        return EngineOutput(logits=logits, cam=cam, ood_score=grey if self.meta.ood else None)

    def run(self, x: np.ndarray, want_cam: bool = True):
        assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        m = float(x.mean())
        logits = np.array([m, 0.0, -m], dtype=np.float32)
        cam = np.stack([self.cam_of(c) for c in range(len(self.meta.class_names))])
        return logits, (cam if want_cam else None)

    @staticmethod
    def cam_of(c: int) -> np.ndarray:
        """The [4, 4] raw CAM this engine returns for class ``c``: rows 0, 1, 2, 3 times (c + 1)."""
        return (np.outer(np.arange(4), np.ones(4)) * (c + 1)).astype(np.float32)
