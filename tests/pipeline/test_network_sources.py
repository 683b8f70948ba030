"""Network streams (issue #13), served by Python's http.server on 127.0.0.1: a stream that delivers faster than real
time is held to its own rate with every frame the reader drops counted; an MP4 whose index is at its end, served
without range support, is one line and exit 2 every time (OpenCV aborted the process); disconnects are
``SourceDisconnected``; rotation metadata is applied here too."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, sonolens_proc

from sonolens.pipeline.errors import SourceDisconnected, SourceError
from sonolens.pipeline.sources import CameraSource, open_source


def write_clip(path: Path, n: int, rate: int, size=(64, 48), noise: bool = False, faststart: bool = False,
               rotation: float | None = None) -> Path:
    """Frame i carries i in its left half (steps of 8, mod 32) and i // 32 in its right half (steps of 25)."""
    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            if noise:
                a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                a = np.empty((height, width, 3), np.uint8)
                a[:, : width // 2] = 8 * (i % 32)
                a[:, width // 2 :] = 25 * (i // 32)
                if rotation is not None:
                    a[:8, :8] = (255, 0, 0)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def index_of(pixels: np.ndarray) -> int:
    w = pixels.shape[1]
    left = float(pixels[4:-4, 4 : w // 2 - 4].mean())
    right = float(pixels[4:-4, w // 2 + 4 : -4].mean())
    return int(round(left / 8)) + 32 * int(round(right / 25))


class Handler(http.server.BaseHTTPRequestHandler):
    """Files without range support (every GET answers 200 with the whole file), a multipart MJPEG burst, a 404."""

    root: Path = Path(".")

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        try:
            if self.path == "/burst.mjpeg":
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(60):  # sixty frames at once, then the camera goes away
                    ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), 4 * i, np.uint8))
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                     + jpg.tobytes() + b"\r\n")
                return
            path = self.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: fine
            pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    write_clip(root / "fast300.mp4", 300, rate=100, faststart=True)
    write_clip(root / "tail.mp4", 120, rate=25, size=(160, 120), noise=True)  # index at the end, ~1 MB
    write_clip(root / "phone.mp4", 3, rate=25, size=(80, 60), faststart=True, rotation=-90)
    (root / "text.mp4").write_text("not a video at all\n" * 100)
    handler = type("H", (Handler,), {"root": root})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def take_all(src) -> tuple[list, list[float], BaseException | None]:
    """Every frame ``frames()`` yields, the monotonic time each was taken, and how it ended."""
    frames, times, end = [], [], None
    try:
        for raw in src.frames():
            times.append(time.monotonic())
            frames.append(raw)
    except SourceError as exc:
        end = exc
    return frames, times, end


# ---------------------------------------------------------------------------------------------- pacing and drops
def test_mp4_over_http_is_held_to_its_rate_and_every_drop_is_counted(server):
    src = open_source(f"{server}/fast300.mp4")
    assert isinstance(src, CameraSource)
    info = src.open()
    assert info.live and info.fps == pytest.approx(100.0)
    frames, times, end = take_all(src)
    src.close()
    assert end is None  # a file served over HTTP ends by itself: not an error
    assert len(frames) + src.frames_skipped == src.frames_received == 300
    indices = [index_of(f.pixels) for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 299
    assert [f.pts_s for f in frames] == pytest.approx([i / 100 for i in indices], abs=1e-3)  # the stream's clock
    fps_in = (len(times) - 1) / (times[-1] - times[0])
    assert fps_in <= 100 * 1.05  # not the download speed


def test_run_of_a_stream_faster_than_real_time(server, tmp_path):
    report = tmp_path / "r.json"
    proc = sonolens_proc("run", f"{server}/fast300.mp4", "--model", "off", "--json", str(report), "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert 0 < r["frames_in"] <= 300 and r["fps_in"] <= 100 * 1.05


def test_mjpeg_burst_is_held_to_the_stream_rate(server):
    """Sixty frames at once, without timestamps of their own: what arrives faster than the stream's rate is
    discarded and counted; then the camera's connection closes, which is a disconnect."""
    src = open_source(f"{server}/burst.mjpeg")
    info = src.open()
    rate = info.fps
    assert rate and rate > 0
    frames, times, end = take_all(src)
    src.close()
    assert isinstance(end, SourceDisconnected) and "\n" not in str(end)
    assert len(frames) >= 1 and len(frames) + src.frames_skipped == src.frames_received == 60
    if len(frames) > 1:
        assert (len(times) - 1) / (times[-1] - times[0]) <= rate * 1.12
    levels = [int(f.pixels.mean()) for f in frames]
    assert levels == sorted(levels)  # never an older frame after a newer one


# ---------------------------------------------------------------------------------------------- errors
def test_mp4_with_its_index_at_the_end_without_range_support_is_one_line_every_time(server):
    """OpenCV's FFmpeg backend aborted the process here ("terminate called without an active exception")."""
    for _ in range(5):
        proc = sonolens_proc("run", f"{server}/tail.mp4", "--model", "off", "--quiet", timeout=60)
        line = assert_one_line_error(proc, "tail.mp4", "range requests")
        assert "faststart" in line


def test_not_found_and_not_video_are_errors_not_disconnects(server):
    with pytest.raises(SourceError) as err:
        open_source(f"{server}/missing.mp4").open()
    assert not isinstance(err.value, SourceDisconnected) and "\n" not in str(err.value)
    with pytest.raises(SourceError) as err:
        open_source(f"{server}/text.mp4").open()
    assert not isinstance(err.value, SourceDisconnected) and "\n" not in str(err.value)


def test_nothing_listening_is_a_disconnect():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceDisconnected) as err:
        open_source(f"http://127.0.0.1:{port}/live.mp4").open()
    assert "\n" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)
    proc = sonolens_proc("run", f"rtsp://127.0.0.1:{port}/live", "--model", "off")
    assert_one_line_error(proc, f"127.0.0.1:{port}")


def test_rotation_is_applied_to_streams_too(server):
    src = open_source(f"{server}/phone.mp4")
    info = src.open()
    frames, _, end = take_all(src)
    src.close()
    assert end is None and (info.width, info.height) == (60, 80)
    assert frames[0].pixels.shape == (80, 60, 3)
    top_right = frames[0].pixels[2:6, -6:-2].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[1] < 80  # the red corner, turned clockwise
