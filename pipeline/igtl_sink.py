"""``--igtl-send HOST:PORT``: every result back over OpenIGTLink, so 3D Slicer shows it next to the live image.

Per result, two messages go to the server (e.g. Slicer's OpenIGTLinkIF with a connector in *server* mode):

* a STRING message, device ``SonolensResult``: JSON ``{"frame", "pts_s", "top_class", "top_prob", "probs": {class:
  p}}`` (``top_class`` null and ``probs`` empty when no model runs);
* an IMAGE message, device ``SonolensHeatmap``: the Grad-CAM heat map as uint8 (0–255) on the frame's own pixel
  grid (zero outside the ROI the model saw), so it overlays the incoming image one to one. Not sent when the CAM is
  off.

Several streams in one run (``pipeline.multi``) share the one connection: stream N's results go under the devices
``SonolensResult_N`` and ``SonolensHeatmap_N`` (``for_stream``, ``stream_devices``).

The worker thread only queues the result (``__call__`` is cheap); a sender thread builds and sends the messages.
When the sender falls behind, the oldest waiting result is dropped and counted (``dropped``): a live overlay wants
the newest answer, not a backlog. The connection is made when the sink is created, so a wrong address fails before
the first frame; a connection lost mid-run makes the next ``__call__`` raise a one-line ``SonolensError`` (the run
ends with exit 2, its reports written), like the recorder's disk errors.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections import deque
from typing import Any

import numpy as np

from .cam import heatmap
from .errors import ConfigError, SonolensError
from .messages import Result

log = logging.getLogger(__name__)

__all__ = ["IgtlSink", "parse_address", "RESULT_DEVICE", "HEATMAP_DEVICE", "heatmap_image", "result_text",
           "stream_devices"]

RESULT_DEVICE = "SonolensResult"
HEATMAP_DEVICE = "SonolensHeatmap"
EXTRA_HINT = "install the 'igtl' extra: pip install 'sonolens[igtl]'"


def stream_devices(suffix: str) -> tuple[str, str]:
    """The device names of one stream of a several-stream run: ``SonolensResult`` and ``SonolensHeatmap`` with the
    stream's suffix (``_1``, ``_2``…), within OpenIGTLink's 20-byte device name."""
    return f"{RESULT_DEVICE}{suffix}"[:20], f"{HEATMAP_DEVICE}{suffix}"[:20]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) → ``(host, port)``; ``ConfigError`` otherwise."""
    value = str(text).strip()
    if value.lower().startswith("igtl://"):
        value = value[7:].rstrip("/")
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 < port < 65536:
        raise ConfigError(f"--igtl-send needs HOST:PORT (e.g. 127.0.0.1:18944), got {text!r}")
    return host, port


def result_text(result: Result) -> str:
    """The STRING message's JSON for ``result``."""
    probs = {name: round(float(p), 6) for name, p in zip(result.class_names, result.probs)}
    top = result.top_class
    top_prob = result.top_prob
    return json.dumps({
        "frame": int(result.index),
        "pts_s": result.timings.pts_s,
        "top_class": result.label if top >= 0 else None,
        "top_prob": round(top_prob, 6) if top >= 0 and math.isfinite(top_prob) else None,
        "probs": probs,
    }, separators=(",", ":"))


def heatmap_image(result: Result) -> np.ndarray | None:
    """The heat map as uint8 ``[H, W]`` on the frame's grid (zero outside the ROI); None without a CAM."""
    if result.cam is None:
        return None
    height, width = result.frame.shape[:2]
    x, y, w, h = (int(v) for v in result.roi)
    out = np.zeros((height, width), np.uint8)
    if w <= 0 or h <= 0:
        return out
    heat = heatmap(result.cam, (h, w))
    out[y : y + h, x : x + w] = np.clip(np.rint(heat * 255.0), 0, 255).astype(np.uint8)
    return out


class IgtlSink:
    """A pipeline sink sending results to an OpenIGTLink server at ``address`` (``HOST:PORT``)."""

    def __init__(self, address: str, *, connect_timeout_s: float = 3.0, max_pending: int = 2) -> None:
        self.host, self.port = parse_address(address)
        self.address = f"{self.host}:{self.port}"
        try:
            from pyigtl import messages
        except ImportError:
            raise ConfigError(f"--igtl-send needs pyigtl ({EXTRA_HINT})") from None
        self._messages: Any = messages
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=connect_timeout_s)
        except ConnectionRefusedError:
            raise ConfigError(f"--igtl-send {self.address}: connection refused (is an OpenIGTLink server, e.g. a "
                              "Slicer connector in server mode, listening there?)") from None
        except TimeoutError:
            raise ConfigError(f"--igtl-send {self.address}: no answer within {connect_timeout_s:g} s") from None
        except OSError as err:
            raise ConfigError(f"--igtl-send {self.address}: cannot connect ({err.strerror or err})") from None
        self._sock.settimeout(5.0)  # a receiver that stops reading must not hang the sender for ever
        self.max_pending = max(1, int(max_pending))
        self._pending: deque[tuple[Result, tuple[str, str]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.sent = 0
        self.dropped = 0
        self.error: SonolensError | None = None
        self._thread = threading.Thread(target=self._run, name="sonolens-igtl-send", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ worker thread
    def __call__(self, result: Result) -> None:
        self.send(result)

    def send(self, result: Result, devices: tuple[str, str] = (RESULT_DEVICE, HEATMAP_DEVICE)) -> None:
        """Queue ``result`` for the server under ``devices`` (the STRING's and the IMAGE's device names)."""
        if self.error is not None:
            raise self.error
        with self._cond:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((result, devices))
            self._cond.notify()

    def for_stream(self, suffix: str) -> StreamSender:
        """A sink for one stream of a several-stream run: its results go over this connection under the stream's
        own device names (``stream_devices``)."""
        return StreamSender(self, stream_devices(suffix))

    # ------------------------------------------------------------------ sender thread
    def _pack(self, result: Result, devices: tuple[str, str]) -> bytes:
        m = self._messages
        parts = [m.StringMessage(result_text(result), device_name=devices[0]).pack()]
        heat = heatmap_image(result)
        if heat is not None:
            parts.append(m.ImageMessage(heat[None], device_name=devices[1]).pack())
        return b"".join(parts)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                result, devices = self._pending.popleft()
            try:
                data = self._pack(result, devices)
                self._sock.sendall(data)
                self.sent += 1
            except OSError as err:
                reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
                self.error = SonolensError(f"--igtl-send {self.address}: connection lost ({reason}) after "
                                           f"{self.sent} results")
                log.debug("OpenIGTLink sender stopped", exc_info=True)
                with self._cond:
                    self.dropped += len(self._pending)
                    self._pending.clear()
                return

    def close(self) -> None:
        """Send what is waiting (up to a few seconds), then close the connection. Safe to call twice."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        try:
            self._sock.close()
        except OSError:  # pragma: no cover
            pass

    def stats(self) -> dict:
        """For the report: where results went, how many were sent and dropped, and the error if any."""
        return {"address": self.address, "sent": self.sent, "dropped": self.dropped,
                "error": str(self.error) if self.error else None}


class StreamSender:
    """``IgtlSink.for_stream``: one stream's sink, sending over the shared connection under the stream's devices."""

    def __init__(self, sink: IgtlSink, devices: tuple[str, str]) -> None:
        self.sink = sink
        self.devices = devices

    def __call__(self, result: Result) -> None:
        self.sink.send(result, self.devices)
