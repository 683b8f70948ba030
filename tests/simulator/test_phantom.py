"""The B-mode phantom (renderer, source, CLI), the shared VideoWriter, and the committed sample clips."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from sonolens.pipeline.errors import ConfigError, SourceError
from sonolens.pipeline.phantom import KINDS, SAMPLES, Phantom, PhantomSource, cli_main
from sonolens.pipeline.videoio import VideoWriter

REPO = Path(__file__).resolve().parents[2]
SMALL = (320, 240)


def _decode(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream, list[float]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time))
        return frames, stream, times


# --------------------------------------------------------------------------------------------------- renderer
def test_same_seed_same_frames_any_order_and_other_seed_differs():
    a = Phantom("cyst", seed=3, size=SMALL, seconds=4.0)
    b = Phantom("cyst", seed=3, size=SMALL, seconds=4.0)
    c = Phantom("cyst", seed=4, size=SMALL, seconds=4.0)
    later = a.render(90)                      # render out of order: frames are random-access
    for i in (0, 37, 60):
        assert np.array_equal(a.render(i), b.render(i))
    assert np.array_equal(later, b.render(90))
    img_a, img_c = a.render_bmode(60).astype(float), c.render_bmode(60).astype(float)
    assert np.abs(img_a - img_c).mean() > 10


@pytest.mark.parametrize("size", [(640, 480), (321, 241)])
def test_frame_shape_dtype_and_black_surround(size):
    ph = Phantom("benign", seed=0, size=size, seconds=2.0)
    frame = ph.render(30)
    assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
    x, y, w, h = ph.layout.image_rect
    assert 0 < x and x + w < size[0] and 0 < y and y + h <= size[1]
    image = frame[y:y + h, x:x + w]
    assert image.mean() > 40                                   # tissue is shown...
    assert np.array_equal(image[..., 0], image[..., 1])        # ...in grey
    assert frame[y + h // 2: y + h // 2 + 20, : max(1, x // 4)].max() == 0  # black left margin
    assert frame[: y, :].max() > 100                           # the label bar has text for the ROI step


def test_cyst_appears_peaks_and_vanishes():
    ph = Phantom("cyst", seed=1, size=SMALL, seconds=6.0)
    n = ph.frame_count
    assert n == 180
    scales = [t[0].scale if (t := ph.truth(i)) else 0.0 for i in range(0, n, 10)]
    assert scales[0] == 0.0 and scales[-1] == 0.0 and max(scales) > 0.95
    peak = int(np.argmax(scales))
    assert all(np.diff(scales[: peak + 1]) >= 0) and all(np.diff(scales[peak:]) <= 0)

    x, y, w, h = ph.truth(n // 2)[0].bbox
    box = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    before, mid, after = (ph.render(i)[box][..., 0].mean() for i in (0, n // 2, n - 1))
    assert mid < 0.25 * before          # anechoic cyst fills the box at its peak
    assert after > 3 * mid              # tissue is back once the probe has passed


def _below_vs_beside(kind: str, seed: int) -> float:
    """Mean grey 1–6 mm below the lesion over its central half, divided by the same depth beside it."""
    ph = Phantom(kind, seed=seed, seconds=6.0)
    mid = ph.frame_count // 2
    x, y, w, h = ph.truth(mid)[0].bbox
    lay = ph.layout
    r0, r1 = y + h + round(1.0 / lay.mm_per_px), y + h + round(6.0 / lay.mm_per_px)
    c0, c1 = x + w // 4, x + 3 * w // 4
    below, beside = [], []
    for i in range(mid - 6, mid + 7, 6):
        img = ph.render(i)[..., 0].astype(float)
        below.append(img[r0:r1, c0:c1].mean())
        for off in (-w, w):
            if c0 + off >= lay.img_x and c1 + off <= lay.img_x + lay.img_w:
                beside.append(img[r0:r1, c0 + off:c1 + off].mean())
    assert beside, "no room beside the lesion"
    return float(np.mean(below) / np.mean(beside))


def test_posterior_enhancement_for_cyst_and_shadowing_for_malignant():
    cyst = _below_vs_beside("cyst", seed=2)
    malignant = _below_vs_beside("malignant", seed=2)
    assert cyst > 1.1, cyst
    assert malignant < 0.8, malignant


def test_speckle_decorrelates_as_probe_moves():
    ph = Phantom("normal", seed=5, size=SMALL, seconds=4.0)
    lay = ph.layout
    region = (slice(lay.img_h // 4, lay.img_h // 2), slice(lay.img_w // 4, 3 * lay.img_w // 4))

    def corr(i: int, j: int) -> float:
        a, b = ph.render_bmode(i)[region].ravel(), ph.render_bmode(j)[region].ravel()
        return float(np.corrcoef(a.astype(float), b.astype(float))[0, 1])

    consecutive = [corr(i, i + 1) for i in (10, 40, 70)]
    assert all(0.5 < r < 0.99 for r in consecutive), consecutive
    assert corr(40, 70) < min(consecutive) - 0.2   # a second later the speckle is new


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(SourceError) as err:
        Phantom("tumour")
    assert all(k in str(err.value) for k in KINDS)
    with pytest.raises(SourceError):
        PhantomSource("tumour")


# ----------------------------------------------------------------------------------------------------- source
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


def test_live_source_paces_itself_and_skips_when_the_reader_lags():
    src = PhantomSource("cyst", seed=0, fps=40.0, size=(96, 96), seconds=2.0)
    assert src.open().live                       # the capture thread leaves live sources unpaced
    frames = src.frames()
    t0 = time.perf_counter()
    first = [next(frames) for _ in range(6)]
    assert time.perf_counter() - t0 >= 5 / 40 - 1e-3   # delivered on the 40 Hz clock, not as fast as possible
    assert [f.pts_s for f in first] == pytest.approx([i / 40 for i in range(6)])
    time.sleep(0.2)                                # a reader that stalls for 8 frame periods...
    late = next(frames)
    assert late.pts_s >= 0.3 and src.frames_skipped >= 6   # ...gets the frame due now, like a live probe
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


def test_phantom_module_stays_light():
    code = ("import sys, sonolens.pipeline.phantom as p; p.PhantomSource('cyst', size=(96, 96)).open(); "
            "bad = [m for m in ('torch', 'tqdm', 'PyQt6', 'timm') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------------------------------------ VideoWriter
@pytest.mark.parametrize("fps,codec", [(12.69, None), (30.0, None), (25.0, "mpeg4")])
def test_videowriter_round_trip(tmp_path, fps, codec):
    path = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps, codec=codec) as w:
        for i in range(15):
            frame = np.full((121, 161, 3), 8 * i, np.uint8)   # odd size: padded to even
            frame[:20, :20] = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            w.write(frame)
    frames, stream, times = _decode(path)
    assert len(frames) == 15
    assert frames[0].shape == (122, 162, 3)
    assert stream.average_rate == Fraction(fps).limit_denominator(1001)
    assert times == pytest.approx([i / fps for i in range(15)], abs=1e-3)
    assert abs(float(frames[10][60:100, 60:140].mean()) - 80) < 6   # the content survived


def test_videowriter_keeps_frames_when_the_caller_crashes(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 30) as w:
            for _ in range(5):
                w.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert len(_decode(path)[0]) == 5


def test_videowriter_fragmented_is_readable_and_gray_accepted(tmp_path):
    path = tmp_path / "frag.mp4"
    with VideoWriter(path, 30, size=(64, 48), fragmented=True) as w:
        for i in range(12):
            w.write(np.full((48, 64), 10 * i, np.uint8))
        with pytest.raises(ConfigError):
            w.write(np.zeros((50, 64, 3), np.uint8))  # size changed mid-stream
    assert len(_decode(path)[0]) == 12


def test_videowriter_unwritable_path(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "v.mp4", 30)
    with pytest.raises(ConfigError):
        VideoWriter(tmp_path, 30)
    with pytest.raises(ConfigError):
        VideoWriter(tmp_path / "v.mp4", 0)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_simulate_cli_writes_a_clip(tmp_path):
    out = tmp_path / "sub" / "cyst.mp4"
    assert cli_main(["cyst", "--seconds", "1", "--out", str(out), "--size", "160x120", "--fps", "15",
                     "--quiet"]) == 0
    frames, stream, _ = _decode(out)
    assert len(frames) == 15 and frames[0].shape == (120, 160, 3) and stream.average_rate == 15


def test_simulate_cli_errors_are_one_line(tmp_path, capsys):
    from sonolens.cli import main

    assert main(["simulate", "tumour", "--out", str(tmp_path / "x.mp4")]) == 2
    assert main(["simulate", "cyst", "--out", str(tmp_path / "x.mp4"), "--size", "big"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("sonolens: error:") for line in err)


# ----------------------------------------------------------------------------------------------- sample clips
def test_committed_sample_clips_match_the_recipe():
    folder = REPO / "assets" / "sample_videos"
    total = 0
    for name, (kind, _, seconds) in SAMPLES.items():
        path = folder / name
        assert path.exists(), f"{path} missing: run sonolens simulate --samples {folder}"
        total += path.stat().st_size
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert (s.width, s.height, s.average_rate) == (640, 480, 30)
            assert s.frames == round(seconds * 30)
    assert total < 10e6
    readme = (folder / "README.md").read_text()
    assert "SIMULATION" in readme.upper() and "sonolens simulate --samples" in readme
