"""Decode an MP4 clip for the simulator's tests (``test_simulate_cli``, ``test_videowriter``)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def decode_clip(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream, list[float]]:
    """Every frame of ``path`` as H×W×3 uint8 RGB, its video stream, and the frames' times in seconds."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time))
        return frames, stream, times
