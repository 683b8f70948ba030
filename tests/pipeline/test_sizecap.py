"""The frame-size cap (reliability issue, item 9): frames over 4096 px on the long side are downscaled as they arrive.

At c28fbd5 a 10000×10000 PNG ran at 1.9 GB resident (2.2 GB with ``--record``; 0.67 GB now) and every stage
carried the full frame. Resident memory is not asserted here (it depends on the allocator); what the cap promises
is: each stage gets frames of at most 4096 px, one warning says so, and ROI boxes follow the frames.
"""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
from conftest import sonolens_proc
from fakes import ScriptedSource

from sonolens.pipeline.messages import RawFrame
from sonolens.pipeline.sources.base import SourceInfo
from sonolens.pipeline.sources.sizecap import MAX_SIDE, SizeCappedSource, cap_scale, scale_box


def big_png(path, width=8192, height=3072):
    """A wide grey still with a bright square at a known place (so the ROI's scaling shows)."""
    image = np.full((height, width), 60, np.uint8)
    image[1024:2048, 4096:5120] = 220
    cv2.imwrite(str(path), image)
    return path


def test_a_large_still_is_downscaled_once_with_one_warning_and_its_roi_follows(tmp_path):
    still = big_png(tmp_path / "wide.png")
    report, video = tmp_path / "r.json", tmp_path / "r.mp4"
    proc = sonolens_proc("run", str(still), "--model", "off", "--max-rate", "--frames", "3", "--roi",
                         "4096,1024,1024,1024", "--json", str(report), "--record", str(video))
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "downscaled as they arrive" in ln]
    assert len(warnings) == 1 and "8192×3072" in warnings[0] and "4096" in warnings[0], proc.stderr
    result = json.loads(report.read_text())
    assert (result["source"]["width"], result["source"]["height"]) == (4096, 1536)
    assert result["roi"] == [2048, 512, 512, 512]  # the user's box, in the capped frame's pixels
    with av.open(str(video)) as container:  # the recorder got the capped frames too
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (4096, 1536)


def test_frames_that_fit_pass_untouched_and_larger_ones_are_capped_one_by_one():
    class Growing(ScriptedSource):
        """A stream whose frames change size (an OpenIGTLink sender switching resolution)."""

        def frames(self, start_s=0.0):
            for w, h in ((640, 480), (8000, 8000), (5000, 100)):
                yield RawFrame(np.zeros((h, w, 3), np.uint8), None)

    src = SizeCappedSource(Growing(size=(640, 480)))
    info = src.open()
    assert (info.width, info.height, src.scale) == (640, 480, 1.0)
    shapes = [raw.pixels.shape for raw in src.frames()]
    assert shapes == [(480, 640, 3), (MAX_SIDE, MAX_SIDE, 3), (82, MAX_SIDE, 3)]
    assert src.closed is False and src.opened == 1  # the inner source's attributes are read through the wrapper
    src.close()
    assert src.inner.closed


def test_the_source_region_hint_is_scaled_with_the_frames():
    class Huge(ScriptedSource):
        def open(self):
            self.info = SourceInfo("huge", "video", 10000, 5000, 30.0, 1, False, roi_hint=(1000, 500, 8000, 4000))
            return self.info

    info = SizeCappedSource(Huge()).open()
    assert (info.width, info.height) == (4096, 2048)
    assert info.roi_hint == (410, 205, 3277, 1638)


def test_scale_helpers():
    assert cap_scale(4096, 100) == 1.0 and cap_scale(8192, 100) == 0.5
    assert scale_box((10, 20, 30, 40), 1.0) == (10, 20, 30, 40)
    assert scale_box((10, 20, 3, 40), 0.1) == (1, 2, 1, 4)  # never an empty box
    assert scale_box(None, 0.5) is None
