"""Credentials never reach a report, a log line or an error message: the one redaction every source uses."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def redact_credentials(text: str) -> str:
    """``text`` with the ``user[:password]@`` of every URL in it removed (``rtsp://admin:pw@host/live`` →
    ``rtsp://host/live``); anything else unchanged."""
    return _USERINFO.sub(r"\1", str(text))


__all__ = ["redact_credentials"]
