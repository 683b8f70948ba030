"""One configuration surface for ``run`` and ``view`` (and later ``batch``): a typed schema in sections, loaded the
same way everywhere — defaults (per mode) ← YAML file ← command-line flags — with every key and value checked.

The sections, one per operator of the pipeline (HoloHub's one-YAML-section-per-operator)::

    source:      spec, options, realtime, loop, start_s, speed, frames, roi, roi_frames, reconnect, slideshow_fps, hold
    queue:       policy (latest | block), capacity
    model:       path (file, bundled name, or none), threads, cam, cam_class, gate
    postprocess: ema, decision_s, decision_margin
    outputs:     csv, json, record, telemetry_window
    sources:     several streams in one process (``sonolens run``): a list of entries like the source section's,
                 ``spec`` plus optional ``options`` (a bare string is a spec); every other ``source:`` setting applies
                 to each stream, and an entry without ``options`` takes ``source.options``

An unknown key is refused with the closest valid key suggested; a value of the wrong type names the key, the value and
what is expected — a YAML 1.1 boolean written as a string (``loop: "false"``) is refused, never coerced; ranges are
checked by ``PipelineConfig`` itself. The flat files of earlier versions (``loop: true`` at the top level) still load,
with a one-line note pointing to the sectioned form. ``resolve`` also says where each value came from
(``sonolens config show``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, suggest
from .multi import StreamSpec
from .stream import PipelineConfig

MODES = ("run", "view")


@dataclass(frozen=True)
class Key:
    """One setting: ``section.name`` in a file; ``target``: the ``PipelineConfig`` field (or an ``outputs`` entry
    the command handles); ``kind``: bool | int | float | str | choice; ``optional``: None allowed."""

    section: str
    name: str
    target: str
    kind: str
    optional: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


SCHEMA: tuple[Key, ...] = (
    Key("source", "spec", "source", "str", help="file, folder, camera:N, URL, igtl://…"),
    Key("source", "options", "source_options", "mapping", optional=True,
        help="stream: transport, username, password, open_timeout_s, read_timeout_s; igtl: device"),
    Key("source", "realtime", "realtime", "bool", help="pace files at their timestamps"),
    Key("source", "loop", "loop", "bool"),
    Key("source", "start_s", "start_s", "float", help="start this many seconds into a file"),
    Key("source", "speed", "speed", "float", help="playback speed (1 = real time)"),
    Key("source", "frames", "frames", "int", optional=True, help="stop after this many frames"),
    Key("source", "roi", "roi", "str", optional=True, help="x,y,w,h; none = automatic"),
    Key("source", "roi_frames", "roi_frames", "int"),
    Key("source", "reconnect", "reconnect", "int", help="reopen a live source up to N times"),
    Key("source", "slideshow_fps", "slideshow_fps", "float", help="stills: images a second"),
    Key("source", "hold", "slideshow_hold", "bool",
        help="a folder of stills: hold each image until the viewer advances (Right or .)"),
    Key("queue", "policy", "queue", "choice", optional=True, choices=("latest", "block")),
    Key("queue", "capacity", "queue_capacity", "int", optional=True),
    Key("model", "path", "model", "str", optional=True, help="ONNX file or bundled name; none = no model"),
    Key("model", "threads", "threads", "int", help="ONNX Runtime threads (0 = its default; 1 by default with several "
                                                   "sources)"),
    Key("model", "cam", "cam", "bool"),
    Key("model", "cam_class", "cam_class", "int", optional=True),
    Key("model", "gate", "gate", "bool", help="the out-of-domain / input-health gate"),
    Key("model", "max_batch", "max_batch", "int",
        help="several sources: frames per engine call (0 = one from every stream)"),
    Key("postprocess", "ema", "ema", "float"),
    Key("postprocess", "decision_s", "decision_s", "float", help="video-level decision time constant (0 = off)"),
    Key("postprocess", "decision_margin", "decision_margin", "float"),
    Key("outputs", "csv", "csv", "str", optional=True),
    Key("outputs", "json", "json", "str", optional=True),
    Key("outputs", "record", "record", "str", optional=True),
    Key("outputs", "telemetry_window", "telemetry_window", "int"),
)
SECTIONS = tuple(dict.fromkeys(k.section for k in SCHEMA)) + ("sources",)
OUTPUT_TARGETS = ("json", "record")  # handled by the command, not by the pipeline
# One documented default per mode where the two differ: the viewer leaves a core to the GUI thread.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {"run": {"threads": 0}, "view": {"threads": 1}}
_BY_DOTTED = {k.dotted: k for k in SCHEMA}
_BY_TARGET = {k.target: k for k in SCHEMA}
_YAML11_BOOL_STRINGS = {"y", "yes", "n", "no", "true", "false", "on", "off"}
STREAM_KEYS = ("spec", "options")  # the keys of one ``sources:`` entry


@dataclass
class Resolved:
    """The resolved configuration: the pipeline's, the command's own outputs, where each value came from, notes."""

    pipeline: PipelineConfig
    outputs: dict[str, str | None]
    origin: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: list[StreamSpec] = field(default_factory=list)  # two or more: several streams (``pipeline.multi``)

    def show(self) -> str:
        """The resolved values in sections, each with its origin: what ``sonolens config show`` prints."""
        values = {**{f.name: getattr(self.pipeline, f.name) for f in fields(PipelineConfig)}, **self.outputs}
        lines = []
        for section in SECTIONS[:-1]:
            lines.append(f"{section}:")
            for k in (k for k in SCHEMA if k.section == section):
                v = values.get(k.target)
                shown = "none" if v is None else ("true" if v is True else "false" if v is False else v)
                lines.append(f"  {k.name}: {shown}".ljust(42) + f"  # {self.origin.get(k.dotted, 'default')}")
        if self.sources:
            lines.append("sources:")
            where = self.origin.get("sources", "default")
            lines += [f"  - spec: {s.spec}".ljust(42) + f"  # {where}" for s in self.sources]
        return "\n".join(lines)


def resolve(config: str | Path | None = None, flags: dict[str, Any] | None = None, *, mode: str = "run",
            source: str | None = None, default_source: str | None = None,
            sources: list[str] | None = None) -> Resolved:
    """Defaults of ``mode`` ← the YAML file ``config`` ← ``flags`` (``PipelineConfig`` field names or ``json`` /
    ``record``; None = not given) ← ``source`` (the positional SOURCE, when given) or ``sources`` (two or more
    positional SOURCEs: several streams, the file's ``sources:`` too); ``default_source`` (the bundled sample) when
    nothing names one. One-line ``ConfigError`` for any mistake."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    values: dict[str, Any] = dict(MODE_DEFAULTS[mode])
    origin = {_BY_TARGET[t].dotted: f"default for '{mode}'" for t in values}
    notes: list[str] = []
    file_streams: list[StreamSpec] | None = None
    if config is not None:
        from_file, notes = read_file(config)
        file_streams = from_file.pop("sources", None)
        values.update(from_file)
        origin.update({_BY_TARGET[t].dotted: f"{config}" for t in from_file})
    for target, value in (flags or {}).items():
        if value is not None:
            key = _BY_TARGET[target]
            values[target] = check_value(key, value, "command line")
            origin[key.dotted] = "command line"
    streams = _streams(values, origin, source, sources, file_streams, str(config))
    if streams and origin["model.threads"].startswith("default"):
        # one inference thread serves every stream; ONNX Runtime's own pool (one spinning thread a core) would take
        # the cores the streams' decoding needs ('sonolens bench --sections streams')
        values["threads"], origin["model.threads"] = 1, "default for several streams"
    if "source" not in values and default_source is not None:
        values["source"], origin["source.spec"] = default_source, "default (the bundled sample)"
    if "source" not in values:
        raise ConfigError("no source: give SOURCE on the command line or source.spec in the configuration file (no "
                          "bundled sample was found either)")
    if mode == "run" and values.get("slideshow_hold"):
        raise ConfigError(f"source.hold ({origin['source.hold']}) waits for a viewer to advance each image: nothing "
                          "advances a headless run (use --dwell S, or 'sonolens view --hold')")
    if mode != "run" and streams:
        raise ConfigError(f"several sources ({origin['sources']}) in a configuration file run in 'sonolens run'; "
                          "the viewer takes up to four SOURCEs on its command line")
    outputs = {t: values.pop(t, None) for t in OUTPUT_TARGETS}
    return Resolved(PipelineConfig(**values), outputs, origin, notes, streams)


def _streams(values: dict[str, Any], origin: dict[str, str], source: str | None, sources: list[str] | None,
             file_streams: list[StreamSpec] | None, config: str) -> list[StreamSpec]:
    """The streams of a several-source run (``values["source"]`` set to the first), or [] for one source (then
    ``values["source"]`` is it). The command line's SOURCE(s) win over the file's ``sources:``; a one-entry
    ``sources:`` list is one source, run exactly as ``source.spec``."""
    shared = dict(values.get("source_options") or {})
    if sources is not None and len(sources) > 1:
        streams, origin["sources"] = [StreamSpec(s, shared) for s in sources], "command line"
    elif source is not None:
        values["source"], origin["source.spec"] = source, "command line"
        return []
    elif file_streams:
        streams = [s if s.options is not None else StreamSpec(s.spec, shared) for s in file_streams]
        origin["sources"] = config
    else:
        return []
    values["source"], origin["source.spec"] = streams[0].spec, origin["sources"]
    if len(streams) == 1:
        values["source_options"] = dict(streams[0].options or {})
        return []
    return streams


def read_file(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The checked values of a YAML file (sectioned, or flat as before), keyed by target; and notes."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections (source:, model:, …), got a YAML {type(data).__name__}")
    if "sources" in data:  # a list of streams: the file is sectioned (a flat file of earlier versions had none)
        values = _sectioned(p, {k: v for k, v in data.items() if k != "sources"})
        if "source" in values:
            raise ConfigError(f"{p}: give source.spec or sources, not both (sources: one entry per stream)")
        return {**values, "sources": _sources(p, data["sources"])}, []
    if any(isinstance(v, dict) for v in data.values()):  # sections hold mappings; a flat file holds none
        return _sectioned(p, data), []
    return _flat(p, data), [f"{p}: a flat configuration file (read as before); the sectioned form is "
                            f"'source:', 'queue:', 'model:', 'postprocess:', 'outputs:' (see 'sonolens config show')"]


def _sectioned(p: Path, data: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, body in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{p}: unknown section {section!r}{suggest(str(section), SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{p}: section {section!r} must be a mapping of keys, got {_shown(body)}")
        for name, value in body.items():
            dotted = f"{section}.{name}"
            if dotted not in _BY_DOTTED:
                names = [k.dotted for k in SCHEMA]
                raise ConfigError(f"{p}: unknown key {dotted!r}{suggest(dotted, names)}")
            key = _BY_DOTTED[dotted]
            out[key.target] = check_value(key, value, str(p))
    return out


def _sources(p: Path, body: Any) -> list[StreamSpec]:
    """The ``sources:`` list: each entry a spec (a string) or a mapping of ``spec`` and optional ``options``, checked
    like the source section's keys; unknown keys refused with the closest valid one."""
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{p}: sources expects a list of sources (- spec: FILE_OR_URL), got {_shown(body)}")
    out = []
    for i, entry in enumerate(body, 1):
        where = f"sources[{i}]"
        if not isinstance(entry, dict):
            entry = {"spec": entry}
        for name in entry:
            if name not in STREAM_KEYS:
                hint = " (the source section's other settings apply to every stream)" \
                    if f"source.{name}" in _BY_DOTTED else ""
                raise ConfigError(f"{p}: unknown key {f'{where}.{name}'!r}{suggest(str(name), STREAM_KEYS)}{hint}")
        if "spec" not in entry:
            raise ConfigError(f"{p}: {where} needs a spec (the file, folder, camera or URL of that stream)")
        spec = check_value(Key(where, "spec", "source", "str"), entry["spec"], str(p))
        options = check_value(Key(where, "options", "source_options", "mapping", optional=True),
                              entry.get("options"), str(p)) if "options" in entry else None
        out.append(StreamSpec(spec, options))
    return out


def _flat(p: Path, data: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _BY_TARGET:
            raise ConfigError(f"{p}: unknown key {name!r}{suggest(str(name), list(_BY_TARGET))}")
        out[name] = check_value(_BY_TARGET[name], value, str(p))
    return out


def check_value(key: Key, value: Any, where: str) -> Any:
    """``value`` as ``key`` expects it, or a one-line ``ConfigError`` naming the key, the value and the type."""
    if value is None or (isinstance(value, str) and value.lower() == "none" and key.optional):
        if key.optional:
            return None
        raise ConfigError(f"{where}: {key.dotted} needs a value ({_expected(key)})")
    if key.kind == "bool":
        if isinstance(value, bool):
            return value
        hint = " (a YAML boolean written as a string: leave out the quotes)" if isinstance(value, str) and \
            value.strip().lower() in _YAML11_BOOL_STRINGS else ""
        raise ConfigError(f"{where}: {key.dotted} expects true or false, got {_shown(value)}{hint}")
    if key.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key.dotted} expects a whole number, got {_shown(value)}")
    if key.kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            return float(value)
        raise ConfigError(f"{where}: {key.dotted} expects a finite number, got {_shown(value)}")
    if key.kind == "mapping":
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise ConfigError(f"{where}: {key.dotted} expects a mapping of option: value, got {_shown(value)}")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key.dotted} expects {_expected(key)}, got {_shown(value)}")
    if key.kind == "choice" and value not in key.choices:
        raise ConfigError(f"{where}: {key.dotted} expects one of {', '.join(key.choices)}, got {_shown(value)}")
    return value


def _expected(key: Key) -> str:
    what = {"str": "text", "choice": "one of " + ", ".join(key.choices)}.get(key.kind, key.kind)
    return what + (" or none" if key.optional else "")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"[:80]


__all__ = ["SCHEMA", "SECTIONS", "MODES", "MODE_DEFAULTS", "Key", "Resolved", "resolve", "read_file", "check_value"]
