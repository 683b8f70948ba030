"""Decode an MP4 clip for the simulator's tests (``test_simulate_cli``, ``test_videowriter``)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class StreamFacts:
    """What the tests read of the video stream, copied while the container is open.

    PyAV ≥ 18.1.1 refuses to read a stream's attributes once its container is closed.
    """

    average_rate: Fraction | None
    codec: str


def decode_clip(path: Path) -> tuple[list[np.ndarray], StreamFacts, list[float]]:
    """Every frame of ``path`` as H×W×3 uint8 RGB, its video stream's facts, and the frames' times in seconds."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time))
        facts = StreamFacts(average_rate=stream.average_rate, codec=stream.codec_context.name)
    return frames, facts, times
