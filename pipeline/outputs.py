"""Output files of a run (report JSON, per-frame CSV, recording): checked before the run, written safely after it.

A report that can only fail after an hour of processing is a report lost: ``check_writable`` opens every output
path before the first frame (a missing folder, a folder given as a file name, a read-only or full disk all fail
there, in one line), and ``write_text_atomic`` writes the JSON to a temporary file in the same folder and renames it,
so a crash or a full disk leaves either the old file or the new one, never half of one. ``refuse_inputs_as_outputs``
is the rule every command applies before it starts: no output may be the same file as one of its inputs (source,
model, config, log…), compared by device and inode after links are resolved, so ``--json SOURCE`` cannot replace
the recording it reads.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, SonolensError, reason


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Raise a one-line ``ConfigError`` unless ``path`` can be created or overwritten; return it as a Path.

    Creates missing parent folders (``--record out/overlay.mp4`` makes ``out/``); leaves no file behind: an existing
    file is opened for appending (not truncated), a new one is tried as a temporary file in its folder and removed.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"cannot write the {what} to {p}: it is a folder")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cannot write the {what} to {p}: {parent} is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} to {p}: cannot create folder {parent} ({reason(exc)})") from None
    probe = p if p.exists() else parent / f".{p.name}.probe-{os.getpid()}"
    try:
        with open(probe, "ab"):
            pass
        if probe != p:
            probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} to {p}: {reason(exc)}") from None
    return p


def write_text_atomic(path: str | os.PathLike, text: str, what: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename; one-line ``SonolensError`` on failure."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise SonolensError(f"writing the {what} to {p} failed: {reason(exc)}") from None


def strict_json(obj: Any, indent: int | None = 2) -> str:
    """``json.dumps`` that every JSON parser reads: NaN and infinities (a missing statistic) become ``null``, never
    the bare ``NaN`` Python writes by default."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=indent, allow_nan=False)


def unlinked(fd: int) -> bool:
    """The open file ``fd`` has no name left: it (or its folder) was removed while it was written. The one check
    every streaming output (run CSV, display CSV, study log) makes periodically and at close."""
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return False


def vanished_message(what: str, path: str | os.PathLike, lost: str) -> str:
    """The one line for an output removed under a running session."""
    return f"the {what} {path} vanished while it was written (the file or its folder was removed): {lost}"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: device and inode when both exist (hard links, symbolic links, ``..``), else
    the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def refuse_inputs_as_outputs(outputs: Mapping[str, str | os.PathLike | None],
                             inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """A one-line ``ConfigError`` when an output (``{what: path}``; ``None`` = not given) is the same file as an input
    or as another output. Inputs that are not local files (a camera, a stream URL, a bundled model name the caller
    has not resolved) are skipped."""
    _refuse(list(outputs.items()), list(inputs.items()))


def _refuse(outputs: Sequence[tuple[str, str | os.PathLike | None]],
            inputs: Sequence[tuple[str, str | os.PathLike | None]]) -> None:
    given_in = [(w, p) for w, p in inputs if p and Path(p).is_file()]
    given_out = [(w, p) for w, p in outputs if p]
    for i, (what, out) in enumerate(given_out):
        for other, path in given_in:
            if same_file(out, path):
                raise ConfigError(f"the {what} {out} is the {other} this command reads: refusing to overwrite an "
                                  f"input (choose another output path)")
        for other, path in given_out[:i]:
            if same_file(out, path):
                raise ConfigError(f"the {what} and the {other} are the same file: {Path(out).resolve()}")


# Flags whose value is a file a command writes, in every ``sonolens`` command; ``guard_command_line`` reads these.
OUTPUT_FLAGS = ("--out", "--json", "--csv", "--md", "--png", "--summary", "--record", "--report", "--screenshot",
                "--log", "--int8")
# Documented in-place updates: ``sonolens fit-ood --model M --out M`` replaces the gate of M (written atomically).
IN_PLACE = {("fit-ood", "--out", "--model")}


def guard_command_line(command: str, argv: list[str]) -> None:
    """The rule for every command, before it starts: the value of an output flag (``OUTPUT_FLAGS``) may not be the
    same file as any other existing file named on the command line (its inputs: source, model, config, logs, plan),
    nor the same as another output; one-line ``ConfigError`` otherwise. Commands add the inputs the command line does
    not name (the bundled sample, a bundled model) themselves (``refuse_inputs_as_outputs``)."""
    outputs: list[tuple[str, str]] = []
    inputs: list[tuple[str, str]] = []
    flag: str | None = None
    for token in argv:
        if token.startswith("--"):  # a new flag (a boolean flag before it takes no value)
            name, eq, value = token.partition("=")
            if not eq:
                flag = name
                continue
            flag, token = name, value
        target = outputs if flag in OUTPUT_FLAGS else inputs
        target.append((f"{flag} file" if flag else "input file", token))
        flag = None
    in_place = {i for c, o, i in IN_PLACE if c == command and any(w == f"{o} file" for w, _ in outputs)}
    inputs = [(w, p) for w, p in inputs if w.split(" ")[0] not in in_place]
    _refuse(outputs, inputs)


__all__ = ["check_writable", "write_text_atomic", "same_file", "refuse_inputs_as_outputs", "guard_command_line",
           "OUTPUT_FLAGS"]
