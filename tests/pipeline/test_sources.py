"""Frame sources: good files decode with the right size, count and timestamps; bad input is a one-line
SourceError naming the file; a camera that disappears ends in a SourceError, never a hang."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import shared_path

from sonolens.pipeline.errors import SonolensError, SourceError
from sonolens.pipeline.sources import (
    CameraSource,
    FolderSource,
    ImageSource,
    OpenCVVideoSource,
    RawFrame,
    Source,
    SourceInfo,
    VideoSource,
    open_source,
)
from sonolens.pipeline.sources import video as video_module

SONOSITE = ("videos", "itkpocus_sonosite-anon-eye1-video.mp4")
BUTTERFLY = ("videos", "itkpocus_butterfly-ocular-phantom.mp4")


# ---------------------------------------------------------------------------------------------- helpers
def make_video(
    path: Path,
    n: int = 30,
    size: tuple[int, int] = (64, 48),
    rate: int | Fraction = 25,
    codec: str = "libx264",
    options: dict | None = None,
    noise: bool = False,
) -> Path:
    """A small video whose frame i has brightness 8*i (so decoded order and content can be checked)."""
    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"g": "10"}  # keyframes every 10 frames, so seeking has to decode forward
        for i in range(n):
            pixels = np.full((height, width, 3), 8 * i % 256, np.uint8)
            if noise:
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def make_empty_video(path: Path, codec: str) -> Path:
    """A container whose header declares a video stream but which holds no frames."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def decode_all(source: Source, start_s: float = 0.0) -> list[RawFrame]:
    return list(source.frames(start_s))


def assert_one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "small.mp4")


# ---------------------------------------------------------------------------------------------- video: good
def test_small_video_decodes_every_frame_in_order(small_video):
    with VideoSource(small_video) as src:
        info = src.info
        frames = decode_all(src)
    assert isinstance(info, SourceInfo)
    assert (info.kind, info.width, info.height, info.fps, info.frame_count, info.live) == (
        "video", 64, 48, 25.0, 30, False
    )
    assert info.name == "small.mp4" and src.backend == "pyav"
    assert len(frames) == 30
    assert all(f.pixels.shape == (48, 64, 3) and f.pixels.dtype == np.uint8 for f in frames)
    pts = [f.pts_s for f in frames]
    assert pts[0] == pytest.approx(0.0)
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts == pytest.approx([i / 25 for i in range(30)], abs=1e-6)
    # Content follows the frame number: arrays are distinct frames, not one buffer reused.
    means = [float(f.pixels.mean()) for f in frames]
    assert means == pytest.approx([8 * i for i in range(30)], abs=3)


def test_seek_starts_at_the_requested_time_and_restarts(small_video):
    with VideoSource(small_video) as src:
        first_pass = decode_all(src)
        from_half = decode_all(src, start_s=0.6)  # frame 15, two keyframes (g=10) in
        again = decode_all(src)
    assert len(from_half) == 15
    assert from_half[0].pts_s == pytest.approx(0.6)
    assert float(from_half[0].pixels.mean()) == pytest.approx(8 * 15, abs=3)
    assert len(again) == 30
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(first_pass, again))


@pytest.mark.parametrize("start_s, first_index", [(1.0, 25), (0.63, 15), (0.01, 0), (0.0, 0), (1.17, 29)])
def test_first_call_with_start_offset_lands_on_the_frame_on_screen(small_video, start_s, first_index):
    with VideoSource(small_video) as src:
        frames = decode_all(src, start_s=start_s)
    assert len(frames) == 30 - first_index
    assert frames[0].pts_s == pytest.approx(first_index / 25)
    assert float(frames[0].pixels.mean()) == pytest.approx(8 * first_index, abs=3)


def test_start_after_the_end_yields_nothing(small_video):
    with VideoSource(small_video) as src:
        assert decode_all(src, start_s=5.0) == []
        assert len(decode_all(src)) == 30  # and the source still works


def test_non_integer_frame_rate_is_kept(tmp_path):
    path = make_video(tmp_path / "odd_rate.mp4", n=12, rate=Fraction(4428, 349))
    with VideoSource(path) as src:
        frames = decode_all(src)
        assert src.info.fps == pytest.approx(12.6877, abs=1e-3)
    assert len(frames) == 12
    assert frames[-1].pts_s == pytest.approx(11 * 349 / 4428, abs=1e-3)


def test_opencv_fallback_used_only_when_pyav_fails(small_video, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(video_module.av, "open", refuse)
    with VideoSource(small_video) as src:
        assert src.backend == "opencv"
        assert (src.info.width, src.info.height, src.info.fps) == (64, 48, 25.0)
        frames = decode_all(src)
        later = decode_all(src, start_s=0.4)
    assert len(frames) == 30 and frames[0].pixels.shape == (48, 64, 3)
    assert [f.pts_s for f in frames] == pytest.approx([i / 25 for i in range(30)])
    assert len(later) == 20 and later[0].pts_s == pytest.approx(0.4)

    # A file OpenCV cannot read either keeps PyAV's reason.
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    with pytest.raises(SourceError) as err:
        VideoSource(text).open()
    assert_one_line(err, "notes.mp4", "Invalid data")


def test_opencv_video_source_directly(small_video):
    with OpenCVVideoSource(small_video) as src:
        assert src.info.frame_count == 30
        assert len(decode_all(src)) == 30


# ---------------------------------------------------------------------------------------------- video: bad
def test_missing_file(tmp_path):
    with pytest.raises(SourceError) as err:
        VideoSource(tmp_path / "gone.mp4").open()
    assert_one_line(err, "no such file", "gone.mp4")


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(SourceError) as err:
        VideoSource(tmp_path).open()
    assert_one_line(err, "directory", tmp_path.name)


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "readme.mp4"
    path.write_text("this is a text file, not a video\n" * 50)
    with pytest.raises(SourceError) as err:
        VideoSource(path).open()
    assert_one_line(err, "readme.mp4", "not a readable video")


def test_truncated_mp4_without_moov_fails_at_open(tmp_path):
    whole = make_video(tmp_path / "whole.mp4", n=40, size=(160, 120), noise=True)  # moov at the end
    cut = tmp_path / "cut_head.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(SourceError) as err:
        VideoSource(cut).open()
    assert_one_line(err, "cut_head.mp4")


@pytest.mark.parametrize(
    "name, options",
    [("faststart.mp4", {"movflags": "faststart"}), ("stream.mkv", None)],
)
def test_file_cut_mid_stream_ends_cleanly_or_raises_source_error(tmp_path, name, options):
    whole = make_video(tmp_path / name, n=40, size=(160, 120), noise=True, options=options)
    cut = tmp_path / f"cut_{name}"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    src = VideoSource(cut)
    src.open()  # the index (moov / header) is intact, so the first frame decodes
    try:
        frames = decode_all(src)
    except SourceError as err:
        assert "cut_" in str(err)
    else:
        assert 0 < len(frames) < 40
    finally:
        src.close()


def test_zero_frame_video_fails_at_open(tmp_path):
    path = make_empty_video(tmp_path / "empty.avi", "mpeg4")
    assert len(av.open(str(path)).streams.video) == 1  # the stream is there, the frames are not
    with pytest.raises(SourceError) as err:
        VideoSource(path).open()
    assert_one_line(err, "empty.avi", "no video frames")


def test_empty_mp4_fails_at_open(tmp_path):
    path = make_empty_video(tmp_path / "empty.mp4", "libx264")
    with pytest.raises(SourceError) as err:
        VideoSource(path).open()
    assert_one_line(err, "empty.mp4")


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "beep.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())
    with pytest.raises(SourceError) as err:
        VideoSource(path).open()
    assert_one_line(err, "beep.wav", "no video stream", "audio")


def test_frames_before_open_is_a_programming_error(small_video):
    with pytest.raises(RuntimeError):
        next(VideoSource(small_video).frames())


# ---------------------------------------------------------------------------------------------- video: shared
@pytest.mark.shared
def test_real_sonosite_clip():
    path = shared_path(*SONOSITE)
    with VideoSource(path) as src:
        info = src.info
        frames = decode_all(src)
        tail = decode_all(src, start_s=2.0)
    assert (info.width, info.height, info.fps, info.frame_count) == (960, 720, 25.0, 100)
    assert len(frames) == 100
    assert frames[0].pixels.shape == (720, 960, 3)
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[-1] == pytest.approx(99 / 25)
    assert len(tail) == 50 and tail[0].pts_s == pytest.approx(2.0)
    assert np.array_equal(tail[0].pixels, frames[50].pixels)


@pytest.mark.shared
def test_real_butterfly_clip_portrait_non_integer_rate():
    path = shared_path(*BUTTERFLY)
    with VideoSource(path) as src:
        info = src.info
        head = [f for _, f in zip(range(20), src.frames())]
        on_screen, after = [f for _, f in zip(range(2), src.frames(start_s=10.0))]
    assert (info.width, info.height, info.frame_count) == (776, 1080, 369)
    assert info.fps == pytest.approx(12.69, abs=0.01)
    assert head[0].pixels.shape == (1080, 776, 3)
    assert all(b.pts_s > a.pts_s for a, b in zip(head, head[1:]))
    # Variable frame rate: the seek lands on the frame on screen at 10 s, the last one stamped <= 10 s.
    assert on_screen.pts_s <= 10.0 < after.pts_s
    assert after.pts_s - on_screen.pts_s < 0.2


@pytest.mark.shared
def test_real_clip_cut_to_30_percent_fails_at_open(tmp_path):
    data = shared_path(*SONOSITE).read_bytes()
    cut = tmp_path / "sonosite_head.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(SourceError) as err:
        VideoSource(cut).open()
    assert_one_line(err, "sonosite_head.mp4")


# ---------------------------------------------------------------------------------------------- camera
class FakeCapture:
    """Stands in for cv2.VideoCapture: ``n`` BGR frames, then read() fails (or blocks, if ``block``)."""

    def __init__(self, n: int = 5, opened: bool = True, block: bool = False) -> None:
        self.n, self.opened, self.block = n, opened, block
        self.reads = 0
        self.props: dict[int, float] = {}
        self.released = threading.Event()
        self.unblock = threading.Event()

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def read(self):
        if self.reads < self.n:
            self.reads += 1
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[..., 0] = 200  # blue in BGR
            frame[..., 2] = self.reads  # red carries the frame number
            time.sleep(0.002)
            return True, frame
        if self.block:
            self.unblock.wait(10)
        return False, None

    def release(self) -> None:
        self.released.set()


def test_camera_yields_frames_then_reports_disappearance():
    fake = FakeCapture(n=5)
    src = CameraSource(0, capture_factory=lambda spec: fake)
    info = src.open()
    assert (info.kind, info.width, info.height, info.live, info.frame_count) == ("camera", 64, 48, True, None)
    assert fake.props[cv2.CAP_PROP_BUFFERSIZE] == 1
    frames = []
    with pytest.raises(SourceError) as err:
        for raw in src.frames():
            frames.append(raw)
    assert_one_line(err, "camera 0 stopped delivering frames")
    src.close()
    assert fake.released.wait(2)
    # Only the newest frame is kept, so a slow consumer may see fewer, but never stale or out of order.
    assert 1 <= len(frames) <= 5
    reds = [int(f.pixels[0, 0, 0]) for f in frames]
    assert reds == sorted(set(reds)) and reds[-1] == 5
    assert all(int(f.pixels[0, 0, 2]) == 200 for f in frames)  # converted to RGB
    pts = [f.pts_s for f in frames]
    assert pts[0] >= 0.0 and all(b > a for a, b in zip(pts, pts[1:]))


def test_camera_whose_read_blocks_times_out_instead_of_hanging():
    fake = FakeCapture(n=2, block=True)
    src = CameraSource(0, capture_factory=lambda spec: fake, stall_timeout_s=0.3)
    src.open()
    with pytest.raises(SourceError) as err:
        for _ in src.frames():
            pass
    assert_one_line(err, "camera 0 stopped delivering frames")
    fake.unblock.set()
    src.close()
    assert fake.released.wait(2)


def test_camera_that_cannot_be_opened():
    fake = FakeCapture(opened=False)
    with pytest.raises(SourceError) as err:
        CameraSource(0, capture_factory=lambda spec: fake).open()
    assert_one_line(err, "camera 0 could not be opened")


def test_camera_that_opens_but_never_delivers():
    fake = FakeCapture(n=0)
    with pytest.raises(SourceError) as err:
        CameraSource("/dev/video7", capture_factory=lambda spec: fake, first_frame_timeout_s=1.0).open()
    assert_one_line(err, "camera /dev/video7")


def test_absent_real_camera_index():
    if Path("/dev/video63").exists():
        pytest.skip("this machine has a /dev/video63")
    with pytest.raises(SourceError) as err:
        CameraSource(63).open()
    assert_one_line(err, "camera 63 could not be opened")


def test_camera_name_hides_stream_password():
    src = CameraSource("rtsp://admin:secret@10.0.0.5/live", capture_factory=lambda s: FakeCapture(opened=False))
    assert "secret" not in src.name
    with pytest.raises(SourceError) as err:
        src.open()
    assert "secret" not in str(err.value)


# ---------------------------------------------------------------------------------------------- stills
def write_png(path: Path, image: np.ndarray) -> Path:
    """Write ``image`` (OpenCV channel order) in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def test_image_color_png_is_rgb(tmp_path):
    bgr = np.zeros((30, 40, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    with ImageSource(write_png(tmp_path / "blue.png", bgr)) as src:
        info = src.info
        frames = decode_all(src)
    assert (info.kind, info.width, info.height, info.fps, info.frame_count, info.live) == (
        "image", 40, 30, None, 1, False
    )
    assert len(frames) == 1 and frames[0].pts_s == 0.0
    assert frames[0].pixels.shape == (30, 40, 3)
    assert frames[0].pixels[0, 0].tolist() == [0, 0, 255]


def test_image_gray_png_stays_gray(tmp_path):
    gray = np.arange(30 * 40, dtype=np.uint32).reshape(30, 40).astype(np.uint8)
    with ImageSource(write_png(tmp_path / "gray.png", gray)) as src:
        (frame,) = decode_all(src)
    assert frame.pixels.shape == (30, 40) and frame.pixels.dtype == np.uint8
    assert np.array_equal(frame.pixels, gray)


def test_image_16bit_png_is_scaled_to_uint8(tmp_path):
    gray8 = np.linspace(0, 255, 30 * 40).reshape(30, 40).astype(np.uint8)
    gray16 = gray8.astype(np.uint16) * 257
    with ImageSource(write_png(tmp_path / "deep.png", gray16)) as src:
        (frame,) = decode_all(src)
    assert frame.pixels.dtype == np.uint8
    assert np.array_equal(frame.pixels, gray8)


def test_image_rgba_png_drops_alpha(tmp_path):
    bgra = np.zeros((10, 12, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[..., 3] = 128
    with ImageSource(write_png(tmp_path / "alpha.png", bgra)) as src:
        (frame,) = decode_all(src)
    assert frame.pixels.shape == (10, 12, 3)
    assert frame.pixels[0, 0].tolist() == [255, 0, 0]


def test_image_corrupt_or_missing(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(SourceError) as err:
        ImageSource(bad).open()
    assert_one_line(err, "broken.png")
    with pytest.raises(SourceError) as err:
        ImageSource(tmp_path / "nothere.jpg").open()
    assert_one_line(err, "no such file", "nothere.jpg")


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """benign/{1,2,10}.png, malignant/{1.jpg, broken.png}, a mask, a text file."""
    root = tmp_path / "dataset"
    for i in (1, 2, 10):
        write_png(root / "benign" / f"img{i}.png", np.full((20, 30), i * 10, np.uint8))
    write_png(root / "benign" / "img1_mask.png", np.zeros((20, 30), np.uint8))
    write_png(root / "malignant" / "img1.jpg", np.full((25, 35, 3), 99, np.uint8))
    (root / "malignant" / "img2.png").write_bytes(b"not a png at all")
    (root / "README.txt").write_text("labels")
    return root


def test_folder_slideshow_recurses_sorts_and_skips_unreadable(class_folder, caplog):
    src = FolderSource(class_folder, fps=2.0)
    with caplog.at_level(logging.WARNING):
        info = src.open()
        frames = decode_all(src)
    names = [p.relative_to(class_folder).as_posix() for p in src.paths]
    assert names == ["benign/img1.png", "benign/img2.png", "benign/img10.png", "malignant/img1.jpg",
                     "malignant/img2.png"]
    assert (info.kind, info.fps, info.frame_count, info.width, info.height) == ("folder", 2.0, 5, 30, 20)
    assert len(frames) == 4
    assert [f.pts_s for f in frames] == [0.0, 0.5, 1.0, 1.5]
    assert frames[3].pixels.shape == (25, 35, 3)  # stills may differ in size
    assert src.skipped == 1 and src.skipped_paths[0].name == "img2.png"
    assert "img2.png" in caplog.text
    assert src.current_path is not None and src.current_path.name == "img1.jpg"
    # Looping does not count the same bad file twice; start_s picks the frame shown at that time.
    again = decode_all(src, start_s=1.0)
    assert [f.pts_s for f in again] == [1.0, 1.5]
    assert float(again[0].pixels.mean()) == pytest.approx(100)
    assert src.skipped == 1
    src.close()


def test_folder_first_file_unreadable_is_skipped(tmp_path):
    (tmp_path / "a.png").write_bytes(b"broken")
    write_png(tmp_path / "b.png", np.full((8, 8), 7, np.uint8))
    with FolderSource(tmp_path) as src:
        frames = decode_all(src)
        assert src.skipped == 1
    assert len(frames) == 1 and frames[0].pts_s == 1.0


def test_folder_empty_or_unreadable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(SourceError) as err:
        FolderSource(empty).open()
    assert_one_line(err, "empty", "no images")
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("a.png", "b.jpg"):
        (junk / name).write_bytes(b"junk")
    with pytest.raises(SourceError) as err:
        FolderSource(junk).open()
    assert_one_line(err, "junk", "could be read")


@pytest.mark.shared
def test_busi_folder_per_class():
    busi = shared_path("datasets", "busi")
    with FolderSource(busi, fps=5.0) as src:
        head = [f for _, f in zip(range(3), src.frames())]
        classes = {p.parent.name for p in src.paths}
    assert classes == {"benign", "malignant", "normal"}
    assert src.info.frame_count == len(src.paths) > 100
    assert [f.pts_s for f in head] == [0.0, 0.2, 0.4]


# ---------------------------------------------------------------------------------------------- open_source
def test_open_source_routes_each_kind(tmp_path, small_video):
    still = write_png(tmp_path / "scan.PNG", np.zeros((4, 4), np.uint8))
    cam = open_source("camera:2", fps=1.0)
    assert isinstance(cam, CameraSource) and cam.spec == 2 and cam.requested_fps is None
    assert isinstance(open_source("/dev/video1"), CameraSource)
    assert isinstance(open_source("rtsp://scanner.local/stream"), CameraSource)
    assert isinstance(open_source("https://example.org/live.m3u8"), CameraSource)
    assert isinstance(open_source("udp://0.0.0.0:5000"), CameraSource)
    folder = open_source(str(tmp_path), fps=4.0)
    assert isinstance(folder, FolderSource) and folder.fps == 4.0
    assert isinstance(open_source(str(still)), ImageSource)
    video = open_source(str(small_video))
    assert isinstance(video, VideoSource)
    assert not hasattr(video, "info")  # returned un-opened
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path / "missing.mp4"))
    assert_one_line(err, "no such file", "missing.mp4")
    with pytest.raises(SourceError) as err:
        open_source("0")
    assert "camera:0" in str(err.value)


def test_open_source_phantom(monkeypatch):
    monkeypatch.setitem(sys.modules, "sonolens.pipeline.sources.phantom", None)  # import fails
    with pytest.raises(SourceError) as err:
        open_source("phantom:cyst")
    assert_one_line(err, "phantom sources are not available")

    fake = types.ModuleType("sonolens.pipeline.sources.phantom")

    class PhantomSource:
        def __init__(self, kind: str, seed: int = 0, fps: float = 30.0, size=(256, 256)):
            self.kind, self.fps = kind, fps

    fake.PhantomSource = PhantomSource
    monkeypatch.setitem(sys.modules, "sonolens.pipeline.sources.phantom", fake)
    src = open_source("phantom:cyst", fps=1.0)  # a slideshow rate must not slow a phantom down
    assert isinstance(src, PhantomSource) and (src.kind, src.fps) == ("cyst", 30.0)


def test_source_errors_are_sonolens_errors():
    assert issubclass(SourceError, SonolensError)


def test_open_source_real_phantom_when_present():
    pytest.importorskip("sonolens.pipeline.sources.phantom")
    src = open_source("phantom:cyst", fps=1.0)
    assert isinstance(src, Source)
    assert src.open().kind == "phantom"
    src.close()
