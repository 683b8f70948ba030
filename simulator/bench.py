"""How fast the phantom renders: milliseconds per frame on one OpenCV thread (``sonolens simulate --bench``)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from .render import Phantom

__all__ = ["bench"]


def bench(kind: str = "sweep", frames: int = 150, size: tuple[int, int] = (640, 480)) -> dict[str, float]:
    """Render ``frames`` consecutive frames of an endless ``kind`` phantom at ``size`` (W, H) on one OpenCV thread.

    Returns milliseconds: ``init_ms`` (building the phantom) and ``median_ms``/``p90_ms``/``max_ms``/``mean_ms``
    per frame. Raises ``PhantomError`` for an unknown kind or a size under 64×64.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        t0 = time.perf_counter()
        phantom = Phantom(kind, seed=0, size=size, seconds=None)
        init_ms = (time.perf_counter() - t0) * 1e3
        times = []
        for i in range(frames):
            t = time.perf_counter()
            phantom.render(i)
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        cv2.setNumThreads(threads)
    ms = np.array(times)
    return {"init_ms": init_ms, "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}
