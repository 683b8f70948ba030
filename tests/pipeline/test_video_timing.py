"""Timing from the frames, not container guesses (issue #13): raw H.264 at its codec rate, Matroska stream-copy cuts
without the hidden pre-roll and with pts that never decrease, edit-list MP4 cuts counted as shown, the measured mean
rate of a variable-rate file, and ``frame_count`` None rather than a guess."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import sonolens_proc

from sonolens.pipeline.sources import VideoSource
from sonolens.pipeline.sources import video as video_module


def level_frames(n: int, size=(64, 48)) -> list[np.ndarray]:
    """Frame i names its source index in two grey halves (i mod 32 in steps of 8, i // 32 in steps of 64), coarse
    enough to survive lossy coding."""
    width, height = size
    frames = []
    for i in range(n):
        a = np.empty((height, width, 3), np.uint8)
        a[:, : width // 2] = 8 * (i % 32)
        a[:, width // 2 :] = 64 * (i // 32)
        frames.append(a)
    return frames


def level_of(pixels: np.ndarray) -> int:
    w = pixels.shape[1]
    left = float(pixels[4:-4, 4 : w // 2 - 4].mean())
    right = float(pixels[4:-4, w // 2 + 4 : -4].mean())
    return int(round(left / 8)) + 32 * int(round(right / 64))


def write(path: Path, frames, rate=30, fmt: str | None = None, options: dict | None = None,
          pts: list[int] | None = None, time_base: Fraction | None = None, codec_options=None) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = codec_options or {"g": "30", "bf": "2"}
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], time_base
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


def stream_copy_cut(src: Path, dst: Path, cut_s: float, options: dict | None = None) -> Path:
    """What ``ffmpeg -ss CUT -i SRC -c copy DST`` does: copy from the keyframe before the cut, timestamps shifted
    so the cut is 0 (the pre-roll before it gets negative times). Matroska cannot store those with
    ``avoid_negative_ts=disabled``: its pre-roll packets come out *without timestamps*. MP4 hides them in an edit
    list (flagged *discard*)."""
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        packets = [p for p in inp.demux(stream) if p.dts is not None]
        cut = int(cut_s / stream.time_base)
        key = max(p.pts for p in packets if p.is_keyframe and p.pts <= cut)
        first = next(i for i, p in enumerate(packets) if p.pts == key)
        with av.open(str(dst), "w", options=options or {}) as out:
            ostream = out.add_stream_from_template(stream)
            for p in packets[first:]:
                p.pts -= cut
                p.dts -= cut
                p.stream = ostream
                out.mux(p)
    return dst


def decode_all(path: Path, start_s: float = 0.0) -> tuple[VideoSource, list]:
    src = VideoSource(path)
    src.open()
    return src, list(src.frames(start_s))


# ---------------------------------------------------------------------------------------------- raw H.264
def test_raw_annexb_h264_is_paced_at_its_codec_rate(tmp_path):
    """FFmpeg's raw H.264 demuxer reports 25 fps and invents timestamps at that rate; the SPS says 30."""
    path = write(tmp_path / "clip.h264", level_frames(45), rate=30, fmt="h264")
    with av.open(str(path)) as c:
        assert float(c.streams.video[0].average_rate or 25) == 25.0  # the container's guess (the old bug)
    src, frames = decode_all(path)
    assert src.info.fps == pytest.approx(30.0)
    assert src.info.frame_count == 45 and len(frames) == 45
    assert [f.pts_s for f in frames] == pytest.approx([i / 30 for i in range(45)])
    assert [level_of(f.pixels) for f in frames] == list(range(45))
    report, csv_path = tmp_path / "r.json", tmp_path / "c.csv"
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report), "--csv",
                         str(csv_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["source"]["fps"] == pytest.approx(30.0) and r["frames_in"] == 45


def test_raw_h264_seek_and_loop_keep_the_codec_rate(tmp_path):
    path = write(tmp_path / "clip.264", level_frames(30), rate=30, fmt="h264")
    src, _ = decode_all(path)
    again = list(src.frames(0.5))
    assert again[0].pts_s == pytest.approx(0.5) and level_of(again[0].pixels) == 15
    assert len(list(src.frames())) == 30


# ---------------------------------------------------------------------------------------------- stream-copy cuts
@pytest.fixture(scope="module")
def source_clip(tmp_path_factory) -> Path:
    """90 frames at 30 fps with B-frames and a keyframe every 30 (at 0, 1 and 2 s)."""
    return write(tmp_path_factory.mktemp("cut") / "src.mp4", level_frames(90))


def test_matroska_cut_hides_untimestamped_preroll_and_never_goes_back(tmp_path, source_clip):
    cut = stream_copy_cut(source_clip, tmp_path / "cut.mkv", 1.5, {"avoid_negative_ts": "disabled"})
    with av.open(str(cut)) as c:  # the file really has pre-roll packets without timestamps
        stamps = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    with av.open(str(source_clip)) as c:
        key = max(p.pts * c.streams.video[0].time_base for p in c.demux(c.streams.video[0])
                  if p.is_keyframe and p.pts is not None and p.pts * c.streams.video[0].time_base <= 1.5)
    preroll = 45 - round(key * 30)  # frames from the keyframe before the cut up to it
    assert stamps[0] is None and stamps.count(None) == preroll > 0
    src, frames = decode_all(cut)
    assert len(frames) == 45 and src.info.frame_count == 45
    assert [level_of(f.pixels) for f in frames] == list(range(45, 90))  # from the cut on: what a player shows
    pts = [f.pts_s for f in frames]
    assert pts[0] == 0.0 and all(b >= a for a, b in zip(pts, pts[1:]))
    assert pts == pytest.approx([i / 30 for i in range(45)], abs=1e-3)
    for start in (0.0, 0.2, 1.0):  # seeking and looping show the same frames
        again = list(src.frames(start))
        assert level_of(again[0].pixels) == 45 + round(start * 30)
        assert again[0].pts_s == pytest.approx(start, abs=1e-3)
        got = [f.pts_s for f in again]
        assert all(b >= a for a, b in zip(got, got[1:]))


def test_matroska_cut_runs_with_increasing_pts(tmp_path, source_clip):
    cut = stream_copy_cut(source_clip, tmp_path / "cut.mkv", 1.5, {"avoid_negative_ts": "disabled"})
    report, csv_path = tmp_path / "r.json", tmp_path / "c.csv"
    proc = sonolens_proc("run", str(cut), "--model", "off", "--max-rate", "--json", str(report), "--csv",
                         str(csv_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = csv_path.read_text().splitlines()
    col = rows[0].split(",").index("pts_s")
    pts = [float(r.split(",")[col]) for r in rows[1:]]
    assert len(pts) == 45 and all(b >= a for a, b in zip(pts, pts[1:]))


def test_edit_list_mp4_cut_counts_the_frames_it_shows(tmp_path, source_clip):
    """The MP4 of the same cut keeps the pre-roll behind an edit list: more samples than the 45 shown. Counting the
    samples made the file look truncated ("ends after 45 of its 58 frames")."""
    cut = stream_copy_cut(source_clip, tmp_path / "cut.mp4", 1.5)
    with av.open(str(cut)) as c:
        samples = c.streams.video[0].frames
        assert samples > 45  # the pre-roll is in the file
    src, frames = decode_all(cut)
    assert src.info.frame_count == 45 and len(frames) == 45
    assert [level_of(f.pixels) for f in frames] == list(range(45, 90))


# ---------------------------------------------------------------------------------------------- rates and counts
def test_variable_rate_file_reports_its_measured_mean_rate(tmp_path):
    """10 frames 10 ms apart, then 10 frames 50 ms apart (Matroska, 1 ms clock): the mean rate of its frames is
    20 frames / 0.6 s, not whatever rate the container header guesses."""
    pts = [10 * i for i in range(10)] + [100 + 50 * i for i in range(10)]
    path = write(tmp_path / "vfr.mkv", level_frames(20), rate=30, pts=pts, time_base=Fraction(1, 1000),
                 codec_options={"g": "5", "bf": "0"})
    src, frames = decode_all(path)
    assert [f.pts_s for f in frames] == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    assert src.info.frame_count == 20
    measured = 19 / ((pts[-1] - pts[0]) / 1000)  # 34.5 frames/s on average; the header says 30, the start 100
    assert src.info.fps == pytest.approx(measured, rel=0.02)


def test_constant_rate_keeps_the_exact_nominal_rate(tmp_path):
    path = write(tmp_path / "ntsc.mkv", level_frames(30), rate=Fraction(30000, 1001))
    src, frames = decode_all(path)
    assert src.info.fps == pytest.approx(29.97, abs=0.01) and src.info.frame_count == 30 == len(frames)


def test_frame_count_is_none_when_it_cannot_be_counted(tmp_path, monkeypatch):
    path = write(tmp_path / "long.mkv", level_frames(20))
    monkeypatch.setattr(video_module, "SCAN_BUDGET", 5)  # a file too long to count at open()
    src, frames = decode_all(path)
    assert src.info.frame_count is None and len(frames) == 20  # unknown, not guessed; every frame still plays
    assert src.info.fps == pytest.approx(30.0)
