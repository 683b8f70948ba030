"""Small helpers of the study files' schemas: unknown keys refused with a suggestion (one line)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from sonolens.pipeline.errors import ConfigError


def checked_keys(d: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    """``d`` when it is a mapping whose keys are all in ``allowed``; else ConfigError naming the closest key."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    allowed = tuple(allowed)
    for key in d:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(allowed)})"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    return dict(d)
