"""``simulator.stills.StillsPan``: a probe-like clip over still images (the bundled demo's generator)."""

from __future__ import annotations

import numpy as np
import pytest

from sonolens.simulator.errors import PhantomError
from sonolens.simulator.stills import StillsPan


def _stills() -> list[np.ndarray]:
    yy, xx = np.mgrid[0:200, 0:300]
    a = ((xx // 20 + yy // 20) % 2 * 200 + 20).astype(np.uint8)            # a checkerboard
    b = np.clip(255 - np.hypot(xx - 150, yy - 100), 0, 255).astype(np.uint8)  # a bright disc
    return [a, b]


def test_frames_count_size_letterbox_and_still_order():
    clip = StillsPan(_stills(), dwell_s=1.0, fps=10, size=(320, 240), seed=1)
    assert clip.frame_count == 20 and [clip.still_of(i) for i in (0, 9, 10, 19)] == [0, 0, 1, 1]
    frame = clip.render(5)
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame[..., 0], frame[..., 1])                  # grey
    assert frame[:, :10].max() == 0 and frame[:5].max() == 0             # black surround: a screen to crop
    assert frame[60:180, 80:240].mean() > 40                             # the still is there


def test_fresh_speckle_per_frame_slow_motion_and_determinism():
    clip = StillsPan(_stills(), dwell_s=2.0, fps=30, size=(320, 240), seed=3)
    still = StillsPan(_stills(), dwell_s=2.0, fps=30, size=(320, 240), speckle=0.0)
    moved = np.abs(still.render(90).astype(float) - still.render(91)).mean()    # the smooth disc, 1/30 s apart
    assert 0 < moved < 2                                                         # slow motion
    assert not np.array_equal(clip.render(90), still.render(90))                 # speckle...
    a, b = clip.render(90).astype(float), clip.render(91).astype(float)
    assert np.abs(a - b).mean() > 5 * moved                                      # ...fresh on every frame
    assert np.array_equal(clip.render(8), StillsPan(_stills(), dwell_s=2.0, fps=30, size=(320, 240),
                                                     seed=3).render(8))
    other = StillsPan(_stills(), dwell_s=2.0, fps=30, size=(320, 240), seed=4).render(8)
    assert not np.array_equal(clip.render(8), other)
    quiet = StillsPan(_stills(), dwell_s=2.0, fps=10, size=(320, 240), speckle=0.0, zoom=0.0, pan=0.0, fade_s=0.0)
    assert np.array_equal(quiet.render(3), quiet.render(4))              # nothing moves when told not to


def test_fades_between_stills():
    clip = StillsPan(_stills(), dwell_s=1.0, fps=10, size=(320, 240), fade_s=0.2)
    assert clip.render(0).mean() < 0.5 * clip.render(5).mean()
    assert clip.render(9).mean() < 0.5 * clip.render(5).mean()


@pytest.mark.parametrize("kwargs, words", [({"dwell_s": 0}, "positive"), ({"fps": float("nan")}, "positive"),
                                           ({"size": (32, 240)}, "64x64")])
def test_bad_parameters(kwargs, words):
    with pytest.raises(PhantomError, match=words):
        StillsPan(_stills(), **kwargs)
    with pytest.raises(PhantomError, match="no still"):
        StillsPan([])
    with pytest.raises(PhantomError, match="uint8"):
        StillsPan([np.zeros((10, 10), np.float32)])
