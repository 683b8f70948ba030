"""OpenIGTLink: live ultrasound frames from a PLUS server or 3D Slicer (OpenIGTLinkIF), as IMAGE messages.

``igtl://host:port[/device]`` (default port 18944) connects to the server as an OpenIGTLink client and keeps the
newest IMAGE message (of ``device``, when given: PLUS names its streams, e.g. ``Image_Reference``); other message
types (TRANSFORM, STATUS, …) are read and ignored. Needs the ``igtl`` extra (``pyigtl``, whose message classes parse
the bytes); the socket is our own, so a server that goes away is noticed at once (pyigtl's client thread would
reconnect silently and print tracebacks).

* ``open()`` raises ``SourceDisconnected`` when the server is not up yet (connection refused, no answer) or sends no
  image within ``first_frame_timeout_s``; ``frames()`` raises it when the connection closes or no message arrives
  for ``stall_timeout_s``. ``--reconnect`` reopens it (``pipeline.reconnect``): no retry loop here.
* ``pts_s`` is the sender's timestamp relative to the first image (never decreasing), or the arrival time when the
  sender stamps nothing. The source is ``live``: frames are never paced, only the newest is handed out, and every
  image overwritten before the pipeline took it is counted in ``frames_skipped``.
* Pixels: the first slice of the image (``[k, j, i, c]`` → ``[j, i, c]``); 1 component is grey, 3 RGB, 4 RGBA (alpha
  dropped); 16-bit and float images are scaled to uint8.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import SourceDisconnected, SourceError
from ..messages import RawFrame
from .base import Source, SourceInfo
from .live import LatestFrame, start_reader

log = logging.getLogger(__name__)

__all__ = ["IgtlSource", "parse_igtl_url", "DEFAULT_PORT", "image_to_uint8"]

DEFAULT_PORT = 18944
HEADER_SIZE = 58
MAX_BODY = 512 << 20  # a 4K RGBA volume slice is 33 MB; anything near this is a corrupt header
EXTRA_HINT = "install the 'igtl' extra: pip install 'sonolens[igtl]'"

_URL = re.compile(r"^igtl://(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>[^/]*))?(?:/(?P<device>.*))?$", re.IGNORECASE)


def parse_igtl_url(spec: str) -> tuple[str, int, str | None]:
    """``igtl://host[:port][/device]`` → ``(host, port, device or None)``; ``SourceError`` for anything else."""
    m = _URL.match(spec.strip())
    if not m:
        raise SourceError(f"{spec}: expected igtl://HOST[:PORT][/DEVICE], e.g. igtl://127.0.0.1:18944/Image_Reference")
    host = m.group("host").strip("[]")
    port_text = m.group("port")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise SourceError(f"{spec}: the port must be a number from 1 to 65535")
    device = (m.group("device") or "").strip("/") or None
    return host, port, device


def _import_messages() -> Any:
    try:
        from pyigtl import messages
    except ImportError:
        raise SourceError(f"OpenIGTLink needs pyigtl ({EXTRA_HINT})") from None
    return messages


def image_to_uint8(image: np.ndarray) -> np.ndarray:
    """An IMAGE message's voxels ``[k, j, i]`` or ``[k, j, i, c]`` → uint8 grey ``[j, i]`` or RGB ``[j, i, 3]``."""
    a = np.asarray(image)
    if a.ndim >= 3:
        a = a[0]  # the first slice (a 2-D ultrasound frame has exactly one)
    if a.ndim == 3:
        c = a.shape[2]
        a = a[:, :, 0] if c in (1, 2) else a[:, :, :3]
    if a.dtype != np.uint8:
        if a.dtype == np.uint16:
            a = (a >> 8).astype(np.uint8)
        elif a.dtype == np.int8:
            a = (a.astype(np.int16) + 128).astype(np.uint8)
        else:
            f = a.astype(np.float64)
            lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
            if a.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
                lo, hi = 0.0, 1.0
            elif a.dtype.kind in "ui" and lo >= 0 and hi <= 255:
                lo, hi = 0.0, 255.0
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            a = np.clip(np.nan_to_num((f - lo) * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


class IgtlSource(Source):
    """A live OpenIGTLink IMAGE stream (see the module docstring). ``device`` None takes every IMAGE message."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, device: str | None = None, *,
                 connect_timeout_s: float = 3.0, first_frame_timeout_s: float = 5.0,
                 stall_timeout_s: float = 5.0) -> None:
        self.host, self.port, self.device = host, int(port), device
        self.name = f"igtl://{host}:{self.port}" + (f"/{device}" if device else "")
        self.connect_timeout_s = connect_timeout_s
        self.first_frame_timeout_s = first_frame_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slot: LatestFrame | None = None
        self._counts_before = (0, 0)
        self.ignored_messages = 0  # other message types and other devices
        self.unreadable_images = 0  # IMAGE messages of the right device that could not be decoded
        self.unreadable_reason: str | None = None

    @classmethod
    def from_url(cls, spec: str, **kw: Any) -> IgtlSource:
        host, port, device = parse_igtl_url(spec)
        return cls(host, port, device, **kw)

    # ------------------------------------------------------------------ counters
    @property
    def frames_received(self) -> int:
        return self._counts_before[0] + (self._slot.frames_received if self._slot else 0)

    @property
    def frames_skipped(self) -> int:
        """Images received but never handed out (overwritten by a newer one before the pipeline took it)."""
        return self._counts_before[1] + (self._slot.frames_skipped if self._slot else 0)

    # ------------------------------------------------------------------ open / close
    def open(self) -> SourceInfo:
        self.close()
        messages = _import_messages()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except ConnectionRefusedError:
            raise SourceDisconnected(f"{self.name}: connection refused (is the OpenIGTLink server running?)") from None
        except TimeoutError:
            raise SourceDisconnected(f"{self.name}: no answer within {self.connect_timeout_s:g} s") from None
        except socket.gaierror as err:
            raise SourceError(f"{self.name}: unknown host ({err.strerror or err})") from None
        except OSError as err:
            raise SourceDisconnected(f"{self.name}: cannot connect ({err.strerror or err})") from None
        sock.settimeout(0.1)  # the reader checks for stop and stalls between reads
        self._sock = sock
        self._stop = threading.Event()
        self._slot = LatestFrame()
        what = f"IMAGE message from device {self.device}" if self.device else "IMAGE message"
        self._thread, first = start_reader(
            self._read_loop, (sock, self._stop, self._slot, messages), "sonolens-igtl", self._slot,
            self.first_frame_timeout_s, self.close,
            lambda: f"{self.name}: connected, but no {what} within {self.first_frame_timeout_s:g} s"
                    + (f"; {self.unreadable_images} IMAGE message(s) could not be read ({self.unreadable_reason})"
                       if self.unreadable_images else ""))
        height, width = first[0].shape[:2]
        self.info = SourceInfo(name=self.name, kind="igtl", width=width, height=height, fps=None,
                               frame_count=None, live=True)
        return self.info

    def close(self) -> None:
        self._stop.set()
        if self._slot is not None:
            self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:  # pragma: no cover
                pass
            self._sock = None
        if self._slot is not None:
            slot = self._slot
            self._counts_before = (self._counts_before[0] + slot.frames_received,
                                   self._counts_before[1] + slot.frames_skipped)
            self._slot = None

    # ------------------------------------------------------------------ reader thread
    def _recv_exact(self, sock: socket.socket, n: int, stop: threading.Event, deadline: float) -> bytes | None:
        """``n`` bytes, or None when stopping; raises ``SourceDisconnected`` on a closed connection or a stall."""
        chunks, got = [], 0
        while got < n:
            if stop.is_set():
                return None
            try:
                chunk = sock.recv(min(n - got, 1 << 20))
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise SourceDisconnected(f"{self.name}: no message for {self.stall_timeout_s:g} s") from None
                continue
            except OSError as err:
                raise SourceDisconnected(f"{self.name}: connection lost ({err.strerror or err})") from None
            if not chunk:
                raise SourceDisconnected(f"{self.name}: the server closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_loop(self, sock: socket.socket, stop: threading.Event, slot: LatestFrame, messages: Any) -> None:
        ts0: float | None = None
        t_first: float | None = None
        last_pts = 0.0
        try:
            while not stop.is_set():
                deadline = time.monotonic() + self.stall_timeout_s
                header = self._recv_exact(sock, HEADER_SIZE, stop, deadline)
                if header is None:
                    return
                try:
                    fields = messages.MessageBase.parse_header(header)
                except (ValueError, UnicodeDecodeError):
                    raise SourceError(f"{self.name}: not an OpenIGTLink stream (bad message header)") from None
                size = int(fields["body_size"])
                if size > MAX_BODY:
                    raise SourceError(f"{self.name}: not an OpenIGTLink stream (a {size}-byte message)")
                body = self._recv_exact(sock, size, stop, time.monotonic() + self.stall_timeout_s)
                if body is None:
                    return
                if fields["message_type"] != "IMAGE" or (self.device and fields["device_name"] != self.device):
                    self.ignored_messages += 1
                    continue
                msg = messages.ImageMessage()
                try:
                    msg.unpack(fields, body)
                    pixels = image_to_uint8(msg.image)
                except (ValueError, KeyError, IndexError, NotImplementedError, TypeError) as err:
                    log.debug("%s: unreadable IMAGE message skipped (%s)", self.name, err)
                    self.unreadable_images += 1
                    self.unreadable_reason = f"{type(err).__name__}: {str(err)[:80]}"
                    continue
                now = time.monotonic()
                ts = float(fields.get("timestamp") or 0.0)
                if ts > 0:
                    if ts0 is None:
                        ts0 = ts
                    pts = ts - ts0
                else:
                    if t_first is None:
                        t_first = now
                    pts = now - t_first
                pts = max(pts, last_pts)  # a sender's clock step must not make time run backwards
                last_pts = pts
                slot.put(pixels, pts)
        except SourceError as err:
            slot.fail(err)
        except Exception as err:  # anything unexpected still ends the stream with one line, never a silent hang
            slot.fail(SourceDisconnected(f"{self.name}: connection lost ({type(err).__name__}: {err})"))

    # ------------------------------------------------------------------ frames
    def frames(self, start_s: float = 0.0) -> Iterator[RawFrame]:
        slot = self._slot
        if slot is None:
            raise RuntimeError("IgtlSource.frames() called before open()")
        stop = self._stop
        while not stop.is_set():
            got = slot.take(self.stall_timeout_s + 1.0)
            if got is None:
                if stop.is_set():
                    return
                raise SourceDisconnected(f"{self.name}: no image for {self.stall_timeout_s + 1.0:g} s")
            yield RawFrame(got[0], got[1])
