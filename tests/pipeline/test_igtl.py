"""OpenIGTLink (issue #13): IMAGE messages in from pyigtl's own server (as PLUS/Slicer send them), results back out
(STRING + heat-map IMAGE), disconnects as ``SourceDisconnected`` that ``--reconnect`` survives. Everything runs on
127.0.0.1 with bounded waits; servers stop by themselves."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import NEUTRAL_CWD, assert_one_line_error, bundled_student, sonolens_proc

pyigtl = pytest.importorskip("pyigtl")

from sonolens.pipeline.cam import heatmap  # noqa: E402
from sonolens.pipeline.errors import ConfigError, SonolensError, SourceDisconnected, SourceError  # noqa: E402
from sonolens.pipeline.igtl_sink import HEATMAP_DEVICE, RESULT_DEVICE, IgtlSink  # noqa: E402
from sonolens.pipeline.messages import Result, Timings  # noqa: E402
from sonolens.pipeline.sources import open_source  # noqa: E402
from sonolens.pipeline.sources.igtl import IgtlSource, image_to_uint8, parse_igtl_url  # noqa: E402

DEVICE = "Image_Reference"


# ---------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def igtl_server():
    """``start(port=None) -> server``: pyigtl's OpenIGTLinkServer on 127.0.0.1; every one started is stopped, and the
    SIGINT/SIGTERM handlers it installs are put back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    servers = []

    def start(port: int | None = None):
        server = pyigtl.OpenIGTLinkServer(port=port or free_port(), local_server=True)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def stop_server(server) -> None:
    if not getattr(server, "_sonolens_stopped", False):
        server._sonolens_stopped = True
        server.stop()


def wait_until(predicate, timeout_s: float = 10.0) -> bool:
    """Bounded polling on a condition (never a bare sleep as a synchronisation)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def image(i: int, rgb: bool = False, h: int = 30, w: int = 40) -> np.ndarray:
    """Frame ``i`` in pyigtl's axis order (k, j, i[, c]): a level of 10*i and a bright block top-left."""
    a = np.full((1, h, w, 3) if rgb else (1, h, w), 10 * i, np.uint8)
    a[0, :5, :8] = 250
    return a


def send_images(server, images, device: str = DEVICE, extra: bool = True) -> threading.Thread:
    """Once a client is connected, send ``images`` (plus a TRANSFORM and another device's IMAGE, which the source
    must ignore); a bounded background thread."""
    def run():
        if not wait_until(server.is_connected, 10.0):
            return
        for i, img in enumerate(images):
            if extra and i == 1:
                server.send_message(pyigtl.TransformMessage(np.eye(4), device_name="ProbeToReference"), wait=True)
                server.send_message(pyigtl.ImageMessage(np.zeros((1, 2, 2), np.uint8), device_name="Other"),
                                    wait=True)
            server.send_message(pyigtl.ImageMessage(img, device_name=device, timestamp=1000.0 + 0.05 * i), wait=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def make_result(index: int = 3) -> Result:
    rng = np.random.default_rng(index)
    timings = Timings(t_captured_ns=1, t_enqueued_ns=2, t_dequeued_ns=3, t_preprocessed_ns=4, t_inferred_ns=5,
                      t_delivered_ns=6, pts_s=0.125)
    return Result(index=index, frame=np.zeros((60, 80, 3), np.uint8), roi=(10, 5, 40, 30), timings=timings,
                  class_names=("normal", "benign", "malignant"), probs=np.array([0.1, 0.7, 0.2], np.float32),
                  raw_probs=np.array([0.1, 0.7, 0.2], np.float32),
                  cam=rng.random((7, 7)).astype(np.float32), cam_class=1)


# ---------------------------------------------------------------------------------------------- source
def test_url_parsing():
    assert parse_igtl_url("igtl://127.0.0.1:18945/Image_Reference") == ("127.0.0.1", 18945, "Image_Reference")
    assert parse_igtl_url("igtl://scanner.local") == ("scanner.local", 18944, None)
    for bad in ("igtl://host:port", "igtl://host:0", "igtl://"):
        with pytest.raises(SourceError) as err:
            parse_igtl_url(bad)
        assert "\n" not in str(err.value) and "igtl://" in str(err.value)
    assert isinstance(open_source("igtl://127.0.0.1:1/Image"), IgtlSource)


@pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
def test_source_receives_images_then_reports_the_server_going_away(igtl_server, rgb):
    server = igtl_server()
    images = [image(i, rgb) for i in range(6)]
    feeder = send_images(server, images)
    src = open_source(f"igtl://127.0.0.1:{server.port}/{DEVICE}")
    info = src.open()
    assert (info.kind, info.live, info.width, info.height, info.frame_count) == ("igtl", True, 40, 30, None)
    got = []
    with pytest.raises(SourceDisconnected) as err:
        for raw in src.frames():
            got.append(raw)
            if raw.pixels[10, 10].max() == 50:  # the last image has arrived
                feeder.join(10)
                stop_server(server)  # the server goes away: frames() must say so, not hang
    assert "\n" not in str(err.value) and f"igtl://127.0.0.1:{server.port}" in str(err.value)
    levels = [int(r.pixels[10, 10].max()) for r in got]
    assert levels == sorted(set(levels)) and levels[-1] == 50 and set(levels) <= {10 * i for i in range(6)}
    want = image_to_uint8(images[5])
    np.testing.assert_array_equal(got[-1].pixels, want)
    assert got[-1].pixels.shape == ((30, 40, 3) if rgb else (30, 40))
    pts = [r.pts_s for r in got]
    assert pts[-1] == pytest.approx(0.25) and all(b >= a for a, b in zip(pts, pts[1:]))  # the sender's clock
    assert len(got) + src.frames_skipped == src.frames_received == 6  # other devices/types are not frames
    assert src.ignored_messages == 2
    src.close()


def test_server_not_up_yet_is_a_disconnect(tmp_path):
    port = free_port()
    with pytest.raises(SourceDisconnected) as err:
        IgtlSource("127.0.0.1", port).open()
    assert "connection refused" in str(err.value) and "\n" not in str(err.value)
    proc = sonolens_proc("run", f"igtl://127.0.0.1:{port}", "--model", "off")
    assert_one_line_error(proc, f"igtl://127.0.0.1:{port}", "connection refused")


def test_server_that_sends_no_image_is_a_disconnect(igtl_server):
    server = igtl_server()
    src = IgtlSource("127.0.0.1", server.port, "Image_Reference", first_frame_timeout_s=0.5)
    with pytest.raises(SourceDisconnected) as err:
        src.open()
    assert "no IMAGE message from device Image_Reference" in str(err.value)


def test_run_waits_for_a_late_server_and_survives_a_restart(igtl_server, tmp_path):
    """--reconnect: the server starts after sonolens, then restarts mid-run; the run goes on and reports both."""
    port = free_port()
    report = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "run", f"igtl://127.0.0.1:{port}/{DEVICE}", "--model",
                             "off", "--reconnect", "30", "--frames", "8", "--json", str(report), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL_CWD)
    try:
        # "not up yet": the first attempt reaches a socket that closes at once (the accept proves sonolens tried)
        with socket.socket() as early:
            early.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            early.bind(("127.0.0.1", port))
            early.listen(1)
            early.settimeout(60)
            conn, _ = early.accept()
            conn.close()
        for session in range(2):  # pyigtl's server installs signal handlers: it must start on this thread
            if proc.poll() is not None:
                break
            server = igtl_server(port)
            if not wait_until(lambda srv=server: srv.is_connected() or proc.poll() is not None, 30.0):
                break
            for i in range(400 if session else 4):  # bounded: the second session outlasts --frames
                if proc.poll() is not None or not server.is_connected():
                    break
                server.send_message(pyigtl.ImageMessage(image(i % 20), device_name=DEVICE), wait=False)
                time.sleep(0.02)
            stop_server(server)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    r = json.loads(report.read_text())
    assert r["frames_in"] == 8 and r["source"]["kind"] == "igtl"
    assert r["connection"]["reconnects"] >= 2 and r["connection"]["disconnects"] >= 2  # late start + restart


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyigtl", None)
    with pytest.raises(SourceError) as err:
        IgtlSource("127.0.0.1", 1).open()
    assert "sonolens[igtl]" in str(err.value)


# ---------------------------------------------------------------------------------------------- sink
def test_sink_sends_probabilities_and_heat_map(igtl_server):
    server = igtl_server()
    sink = IgtlSink(f"127.0.0.1:{server.port}")
    result = make_result()
    sink(result)
    text = server.wait_for_message(RESULT_DEVICE, timeout=10)
    heat = server.wait_for_message(HEATMAP_DEVICE, timeout=10)
    sink.close()
    assert text is not None and heat is not None
    payload = json.loads(text.string)
    assert payload["frame"] == 3 and payload["pts_s"] == 0.125
    assert payload["top_class"] == "benign" and payload["top_prob"] == pytest.approx(0.7)
    assert payload["probs"] == pytest.approx({"normal": 0.1, "benign": 0.7, "malignant": 0.2})
    img = np.asarray(heat.image)
    assert img.dtype == np.uint8 and img.shape == (1, 60, 80)  # the frame's own grid
    x, y, w, h = result.roi
    want = np.clip(np.rint(heatmap(result.cam, (h, w)) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img[0, y : y + h, x : x + w], want)
    outside = img[0].copy()
    outside[y : y + h, x : x + w] = 0
    assert not outside.any() and want.max() == 255
    assert sink.stats() == {"address": f"127.0.0.1:{server.port}", "sent": 1, "dropped": 0, "error": None}


def test_sink_without_a_model_sends_the_frame_number_only(igtl_server):
    server = igtl_server()
    sink = IgtlSink(f"igtl://127.0.0.1:{server.port}")
    timings = make_result().timings
    sink(Result(index=0, frame=np.zeros((8, 8), np.uint8), roi=(0, 0, 8, 8), timings=timings))
    text = server.wait_for_message(RESULT_DEVICE, timeout=10)
    sink.close()
    assert json.loads(text.string) == {"frame": 0, "pts_s": 0.125, "top_class": None, "top_prob": None, "probs": {}}
    assert server.wait_for_message(HEATMAP_DEVICE, timeout=0.2) is None


def test_sink_address_errors_are_one_line():
    with pytest.raises(ConfigError) as err:
        IgtlSink("localhost")
    assert "HOST:PORT" in str(err.value)
    port = free_port()
    with pytest.raises(ConfigError) as err:
        IgtlSink(f"127.0.0.1:{port}")
    assert "connection refused" in str(err.value) and "\n" not in str(err.value)
    proc = sonolens_proc("run", "phantom:cyst", "--model", "off", "--frames", "2", "--igtl-send", f"127.0.0.1:{port}")
    assert_one_line_error(proc, "--igtl-send", "connection refused")


def test_sink_connection_lost_mid_run_is_one_error():
    """A receiver that accepts, then goes away: a later call raises a one-line error instead of hanging."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    sink = IgtlSink(f"127.0.0.1:{port}")
    conn, _ = listener.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with RST
    conn.close()
    listener.close()
    raised = None
    for i in range(200):
        try:
            sink(make_result(i))
        except SonolensError as exc:
            raised = exc
            break
        wait_until(lambda: not sink._pending or sink.error is not None, 5.0)
    sink.close()
    assert raised is not None and "\n" not in str(raised) and "connection lost" in str(raised)
    assert sink.stats()["error"] == str(raised)


def test_run_sends_every_result_to_slicer(igtl_server, tmp_path):
    model = bundled_student()
    server = igtl_server()
    clip = tmp_path / "clip.mp4"
    import av

    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 80, "yuv420p"
        for i in range(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((80, 96, 3), 40 * i, np.uint8), "rgb24")))
        out.mux(stream.encode(None))
    proc = sonolens_proc("run", str(clip), "--model", str(model), "--max-rate", "--igtl-send",
                         f"127.0.0.1:{server.port}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    text = server.wait_for_message(RESULT_DEVICE, timeout=10)
    heat = server.wait_for_message(HEATMAP_DEVICE, timeout=10)
    payload = json.loads(text.string)
    assert payload["frame"] == 3  # the latest of the 4 (the server keeps one message per device)
    assert set(payload["probs"]) == {"normal", "benign", "malignant"}
    assert sum(payload["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert np.asarray(heat.image).shape == (1, 80, 96)


def test_unreadable_image_messages_are_counted_and_named():
    """At c28fbd5 malformed IMAGE messages were dropped silently and the source said only "no IMAGE message within
    5 s"; now the timeout names how many could not be read, and why."""
    import socket

    good = pyigtl.ImageMessage(image(1), device_name=DEVICE).pack()
    header, body = good[:58], bytearray(good[58:])
    body[6:12] = b"\xff\xff\xff\xff\xff\xff"  # the image size fields: far more pixels than the body holds
    bad = header + bytes(body)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    done = threading.Event()

    def serve():
        conn, _ = srv.accept()
        with conn:
            for _ in range(3):
                conn.sendall(bad)
            done.wait(60)  # the connection stays open until the source has given up (bounded)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    src = IgtlSource("127.0.0.1", port, DEVICE, first_frame_timeout_s=0.8)
    try:
        with pytest.raises(SourceDisconnected) as err:
            src.open()
    finally:
        done.set()
        srv.close()
    assert "3 IMAGE message(s) could not be read" in str(err.value), str(err.value)
    assert src.unreadable_images == 3
