"""What the study files' schemas share: a YAML file read in one line of error, unknown keys refused with the
suggestion ``sonolens run``'s configuration gives (``pipeline.errors.suggest``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sonolens.pipeline.errors import ConfigError, suggest


def checked_keys(d: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    """``d`` when it is a mapping whose keys are all in ``allowed``; else ConfigError naming the closest key."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    allowed = tuple(allowed)
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{suggest(str(key), allowed)}")
    return dict(d)


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML of ``path`` (``what``: "protocol", "worklist"), or a one-line ConfigError."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no such {what} file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
