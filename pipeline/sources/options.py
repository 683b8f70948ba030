"""Options a source takes beside its spec (``source.options`` in a configuration file): what each kind of source
accepts, checked in one line each before anything is opened.

* network streams (``rtsp://``, ``http(s)://``, ``udp://``…): ``transport`` (``tcp`` | ``udp`` | ``http``: RTSP's
  lower transport, FFmpeg's ``rtsp_transport``), ``username`` and ``password`` (put into the URL when it is opened,
  never into a name, a report or a log: ``pipeline.redact``), ``open_timeout_s`` and ``read_timeout_s``;
* OpenIGTLink (``igtl://``): ``device``, the IMAGE device name to take (PLUS names its streams, e.g.
  ``Image_Reference``), instead of writing it into the URL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..errors import ConfigError

TRANSPORTS = ("tcp", "udp", "http")
_ACCEPTS: dict[str, dict[str, str]] = {
    "stream": {"transport": "choice", "username": "str", "password": "str", "open_timeout_s": "seconds",
               "read_timeout_s": "seconds"},
    "igtl": {"device": "str"},
}


def source_kind(spec: str, stream_prefixes: tuple[str, ...]) -> str:
    lower = spec.lower()
    if lower.startswith("igtl://"):
        return "igtl"
    if lower.startswith(stream_prefixes):
        return "stream"
    return "other"


def check_options(spec: str, options: Mapping[str, Any] | None, stream_prefixes: tuple[str, ...]) -> dict[str, Any]:
    """``options`` checked against what ``spec``'s kind accepts; one-line ``ConfigError`` otherwise."""
    if not options:
        return {}
    kind = source_kind(spec, stream_prefixes)
    accepts = _ACCEPTS.get(kind, {})
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in accepts:
            what = {"stream": "a network stream", "igtl": "an OpenIGTLink source"}.get(kind, "this source")
            allowed = ", ".join(accepts) or "no options"
            raise ConfigError(f"source option {key!r} does not apply to {what} (it takes {allowed})")
        out[key] = _checked(key, value, accepts[key])
    return out


def _checked(key: str, value: Any, kind: str) -> Any:
    if kind == "choice":
        if value not in TRANSPORTS:
            raise ConfigError(f"source option transport expects one of {', '.join(TRANSPORTS)}, got {value!r}")
        return value
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ConfigError(f"source option {key} expects a positive number of seconds, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"source option {key} expects text, got {value!r}")
    return value


def url_with_credentials(url: str, options: Mapping[str, Any]) -> str:
    """``url`` with ``username``/``password`` from ``options`` as its user info (percent-encoded); unchanged
    without them."""
    user, password = options.get("username"), options.get("password")
    if not user:
        return url
    scheme, rest = url.split("://", 1)
    info = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"{scheme}://{info}@{rest.split('@', 1)[-1]}"


def ffmpeg_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The FFmpeg open options of a stream's source options (``transport`` → ``rtsp_transport``)."""
    return {"rtsp_transport": options["transport"]} if "transport" in options else {}


__all__ = ["TRANSPORTS", "check_options", "url_with_credentials", "ffmpeg_options", "source_kind"]
