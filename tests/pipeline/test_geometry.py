"""A stream whose frame size changes mid-way (an MPEG-TS cut from 640x480 to 320x240): the ROI is found again at the
new size, every decodable frame is processed and recorded, and a failing sink ends the run with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from conftest import assert_one_line_error, sonolens_proc


def _ts_part(path: Path, size: tuple[int, int], box: tuple[int, int, int, int], n: int, seed: int) -> bytes:
    w, h = size
    x, y, bw, bh = box
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("mpeg2video", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(n):
            img = np.full((h, w, 3), 10, np.uint8)
            img[y:y + bh, x:x + bw] = rng.rayleigh(60, (bh, bw, 1)).clip(0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path.read_bytes()


def _two_sizes(tmp_path: Path) -> Path:
    a = _ts_part(tmp_path / "a.ts", (640, 480), (60, 40, 520, 400), 40, 1)
    b = _ts_part(tmp_path / "b.ts", (320, 240), (20, 20, 140, 200), 40, 2)
    out = tmp_path / "cut.ts"
    out.write_bytes(a + b)  # MPEG-TS concatenates byte-wise, as a broadcast switching resolution does
    return out


def test_roi_follows_a_size_change_and_every_frame_is_recorded(tmp_path, random_student):
    clip = _two_sizes(tmp_path)
    rep, rec = tmp_path / "r.json", tmp_path / "o.mp4"
    proc = sonolens_proc("run", str(clip), "--model", str(random_student), "--max-rate", "--json", str(rep),
                         "--record", str(rec))
    assert proc.returncode == 0, proc.stderr
    assert "changed size from 640x480 to 320x240" in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads(rep.read_text())
    with av.open(str(clip)) as c:
        decodable = sum(1 for _ in c.decode(video=0))  # FFmpeg drops one frame at the splice: 79
    assert report["frames_in"] == report["frames_processed"] == decodable >= 78
    x, y, w, h = report["roi"]  # the ROI of the last frames: found again at the new size
    ix = max(0, min(x + w, 160) - max(x, 20)) * max(0, min(y + h, 220) - max(y, 20))
    iou = ix / (w * h + 140 * 200 - ix)
    assert iou > 0.8, report["roi"]
    assert report["recording"]["frames_written"] == decodable and report["recording"]["dropped"] == 0
    with av.open(str(rec)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == decodable and {f.shape for f in frames} == {(480, 640, 3)}  # letterboxed into the first size


def test_user_roi_outside_the_frame_is_one_line(tmp_path, random_student):
    clip = _two_sizes(tmp_path)
    proc = sonolens_proc("run", str(clip), "--model", str(random_student), "--max-rate", "--roi", "5000,5000,10,10")
    assert_one_line_error(proc, "--roi 5000,5000,10,10 lies outside")


def test_user_roi_that_is_clamped_says_so(tmp_path, random_student):
    clip = _two_sizes(tmp_path)
    proc = sonolens_proc("run", str(clip), "--model", str(random_student), "--max-rate", "--frames", "5",
                         "--roi", "10,10,5000,5000")
    assert proc.returncode == 0, proc.stderr
    assert "sonolens: warning: --roi 10,10,5000,5000 does not fit the 640x480 frame: using 10,10,630,470" \
        in proc.stderr
