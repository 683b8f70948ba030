"""Orientation (issue #13): EXIF orientation of stills and the display matrix of videos give the same upright pixels
on every path — ``run``, folders, the training/evaluation loader — checked against OpenCV's own EXIF handling and
(when the binary is installed) against ``ffmpeg``."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import sonolens_proc

from sonolens.pipeline.orientation import (
    apply_orientation,
    display_matrix_orientation,
    exif_orientation,
    oriented_size,
    rotation_orientation,
)
from sonolens.pipeline.sources import FolderSource, ImageSource, VideoSource, open_source
from sonolens.pipeline.sources.stills import read_still


# ---------------------------------------------------------------------------------------------- helpers
def marker_image(width: int = 400, height: int = 300) -> np.ndarray:
    """RGB, distinct in every corner: a red block top-left, a green one top-right, blue bottom-left."""
    a = np.full((height, width, 3), 60, np.uint8)
    a[: height // 5, : width // 5] = (255, 0, 0)
    a[: height // 5, -width // 5 :] = (0, 255, 0)
    a[-height // 5 :, : width // 5] = (0, 0, 255)
    return a


def tiff_orientation_block(code: int, big_endian: bool = False) -> bytes:
    """A minimal TIFF structure (EXIF's format) whose IFD0 holds Orientation = ``code``."""
    e = ">" if big_endian else "<"
    head = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 8)
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", code, 0)
    return head + ifd + struct.pack(e + "I", 0)


def jpeg_with_exif(path: Path, rgb: np.ndarray, code: int, big_endian: bool = False) -> Path:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    payload = b"Exif\x00\x00" + tiff_orientation_block(code, big_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path.write_bytes(data[:2] + app1 + data[2:])
    return path


def png_with_exif(path: Path, rgb: np.ndarray, code: int) -> Path:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    data = buf.tobytes()
    body = tiff_orientation_block(code)
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    path.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    return path


def rotated_clip(path: Path, degrees: float, hflip: bool = False, vflip: bool = False, n: int = 4,
                 size: tuple[int, int] = (480, 360)) -> Path:
    """An H.264 MP4 of ``marker_image`` frames with a display matrix, as a phone writes it."""
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for _ in range(n):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(marker_image(width, height), format="rgb24")))
        out.mux(stream.encode(None))
    return path


def corners(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """The dominant channel (0 R, 1 G, 2 B, -1 grey) at the four corners: TL, TR, BL, BR."""
    h, w = rgb.shape[:2]
    out = []
    for y, x in ((5, 5), (5, w - 6), (h - 6, 5), (h - 6, w - 6)):
        px = rgb[y, x].astype(int)
        out.append(int(np.argmax(px)) if px.max() - px.min() > 100 else -1)
    return tuple(out)


# ---------------------------------------------------------------------------------------------- the helpers themselves
def test_the_eight_orientations_match_opencvs_exif_handling(tmp_path):
    """OpenCV applies EXIF orientation in IMREAD_COLOR (its own implementation): ours must agree for all 8 codes,
    in both byte orders."""
    rgb = marker_image(40, 30)
    for code in range(1, 9):
        for big in (False, True):
            path = jpeg_with_exif(tmp_path / f"o{code}{'b' if big else 'l'}.jpg", rgb, code, big)
            assert exif_orientation(path.read_bytes()) == code
            ours = read_still(path)
            theirs = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert ours.shape == theirs.shape, code
            np.testing.assert_array_equal(ours, theirs)
            assert ours.shape[1::-1] == oriented_size(40, 30, code)


def test_pillow_agrees_where_installed(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    from PIL import ImageOps

    rgb = marker_image(40, 30)
    for code in range(1, 9):
        path = jpeg_with_exif(tmp_path / f"p{code}.jpg", rgb, code)
        with pil.open(path) as im:
            theirs = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        assert corners(read_still(path)) == corners(theirs), code


def test_png_exif_chunk_and_broken_exif(tmp_path):
    rgb = marker_image(40, 30)
    got = read_still(png_with_exif(tmp_path / "p.png", rgb, 8))
    np.testing.assert_array_equal(got, np.rot90(rgb, 1))  # 8: rotate 90° counter-clockwise
    assert corners(got) == (1, -1, 0, 2)
    broken = bytearray(jpeg_with_exif(tmp_path / "b.jpg", rgb, 6).read_bytes())
    broken[30:34] = b"\xff\xff\xff\xff"  # an IFD offset far outside the block
    (tmp_path / "b.jpg").write_bytes(bytes(broken))
    assert exif_orientation(bytes(broken)) == 1
    assert read_still(tmp_path / "b.jpg").shape == (30, 40, 3)  # still readable, just not turned


def test_display_matrix_rules():
    def matrix(a, b, c, d):
        return [int(a * 65536), int(b * 65536), 0, int(c * 65536), int(d * 65536), 0, 0, 0, 1 << 30]

    assert display_matrix_orientation(matrix(1, 0, 0, 1)) == 1
    assert display_matrix_orientation(matrix(0, 1, -1, 0)) == 6  # what av_display_rotation_set(-90) writes
    assert display_matrix_orientation(matrix(0, -1, 1, 0)) == 8
    assert display_matrix_orientation(matrix(-1, 0, 0, -1)) == 3
    assert display_matrix_orientation(matrix(1, 0, 0, -1)) == 4
    assert rotation_orientation(-90) == 6 and rotation_orientation(90) == 8 and rotation_orientation(180) == 3
    assert apply_orientation(np.zeros((3, 5)), 6).shape == (5, 3)


# ---------------------------------------------------------------------------------------------- the cases
def test_exif_6_jpeg_is_upright_on_every_path(tmp_path):
    """Stored 400×300 with orientation 6: 300 wide, 400 high in run, folders, eval and audit-data alike."""
    from sonolens.pipeline.preprocess import preprocess_image, to_gray
    from sonolens.training.data import load_gray

    folder = tmp_path / "data" / "benign"
    folder.mkdir(parents=True)
    path = jpeg_with_exif(folder / "scan.jpg", marker_image(400, 300), 6)
    assert corners(read_still(path)) == (2, 0, -1, 1)  # turned clockwise: red top-right, blue top-left

    with ImageSource(path) as src:
        run_pixels = next(src.frames()).pixels
        assert (src.info.width, src.info.height) == (300, 400)
    folder_src = FolderSource(tmp_path / "data")
    folder_src.open()
    np.testing.assert_array_equal(next(folder_src.frames()).pixels, run_pixels)
    gray = load_gray(path)  # what eval, audit-data and training read
    np.testing.assert_array_equal(gray, to_gray(run_pixels))

    from sonolens.pipeline.modelfile import ModelSpec
    from sonolens.training.evaluate import runtime_input

    spec = ModelSpec(arch="test", class_names=("benign", "malignant"), input_size=(64, 48),
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_array_equal(runtime_input(path, spec), preprocess_image(run_pixels, spec))  # eval's input

    report = tmp_path / "r.json"
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report), "--quiet")
    assert proc.returncode == 0, proc.stderr
    source = json.loads(report.read_text())["source"]
    assert (source["width"], source["height"]) == (300, 400)


def test_rotated_phone_clip_is_processed_upright(tmp_path):
    """A 480×360 H.264 clip with rotation −90: 360 wide, 480 high, turned clockwise, in the source and in run."""
    path = rotated_clip(tmp_path / "phone.mp4", -90)
    with VideoSource(path) as src:
        frames = list(src.frames())
        assert (src.info.width, src.info.height) == (360, 480)
    assert len(frames) == 4
    assert frames[0].pixels.shape == (480, 360, 3) and corners(frames[0].pixels) == (2, 0, -1, 1)
    report = tmp_path / "r.json"
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report), "--quiet")
    assert proc.returncode == 0, proc.stderr
    source = json.loads(report.read_text())["source"]
    assert (source["width"], source["height"]) == (360, 480)


ROTATIONS = [(0, False, False, (0, 1, 2, -1)), (-90, False, False, (2, 0, -1, 1)),
             (90, False, False, (1, -1, 0, 2)), (180, False, False, (-1, 2, 1, 0)),
             (0, True, False, (1, 0, -1, 2)), (0, False, True, (2, -1, 0, 1)),
             (-90, True, False, (0, 2, 1, -1)), (90, True, False, (-1, 1, 2, 0))]


@pytest.mark.parametrize("degrees,hflip,vflip,expected", ROTATIONS)
def test_every_display_matrix_orientation(tmp_path, degrees, hflip, vflip, expected):
    """All eight: rotation counter-clockwise by ``degrees`` (−90: a quarter turn clockwise), then the mirroring
    PyAV's ``set_display_rotation`` documents; the corners land where that puts them."""
    path = rotated_clip(tmp_path / "clip.mp4", degrees, hflip, vflip, n=2, size=(80, 60))
    with VideoSource(path) as src:
        first = next(src.frames()).pixels
    assert corners(first) == expected


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg binary is not installed")
@pytest.mark.parametrize("degrees", [0, -90, 90, 180])
def test_rotation_matches_what_ffmpeg_shows(tmp_path, degrees):
    path = rotated_clip(tmp_path / "clip.mp4", degrees, n=2, size=(80, 60))
    with VideoSource(path) as src:
        ours = next(src.frames()).pixels
    h, w = ours.shape[:2]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True, timeout=60).stdout
    assert len(raw) == w * h * 3  # ffmpeg's frame has our (rotated) size
    theirs = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    assert np.abs(theirs.astype(int) - ours.astype(int)).mean() < 2.0


def test_open_source_of_a_rotated_clip_in_a_folder_of_stills_is_unaffected(tmp_path):
    """Folders hold stills; a clip next to them is not part of the slideshow, and stills keep their EXIF turn."""
    jpeg_with_exif(tmp_path / "a.jpg", marker_image(40, 30), 8)
    rotated_clip(tmp_path / "b.mp4", -90, n=2, size=(80, 60))
    src = open_source(str(tmp_path))
    src.open()
    frames = list(src.frames())
    assert len(frames) == 1 and frames[0].pixels.shape == (40, 30, 3)
