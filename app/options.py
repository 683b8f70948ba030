"""What the viewer is asked to do: plain dataclasses filled from the command line (``main.options_from_args``)
or by tests. No Qt here."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from sonolens.pipeline.multi import stream_path
from sonolens.pipeline.stream import PipelineConfig


@dataclass
class StudyOptions:
    """A reader-study session: who, under which condition, and where the log goes."""

    participant: str
    condition: str  # ai | blinded | off
    log: str
    extra: dict[str, Any] = field(default_factory=dict)  # more header fields (a worklist's study, session, block)
    labels: tuple[str, ...] | None = None  # the call keys' labels (a worklist's); default: the model's classes


# The pipeline settings a viewer session reads through ``ViewerOptions``: held in one ``PipelineConfig``, not copied.
PIPELINE_KEYS = ("model", "roi", "threads", "loop", "speed", "realtime", "queue", "ema", "decision_s", "gate", "cam",
                 "slideshow_fps", "slideshow_hold")


@dataclass(init=False)
class ViewerOptions:
    """Every setting of one viewer session. The pipeline's settings live in ``pipeline`` (a ``PipelineConfig``,
    resolved by ``pipeline.config`` from the same file and flags ``sonolens run`` reads; ``model``, ``loop``… are views
    of it); the rest is the viewer's own. ``loop`` and ``speed`` change while it runs (L, [ and ]).

    ``ViewerOptions(source=…, loop=True, …)`` accepts the pipeline keys too (tests), folded into ``pipeline``.
    """

    source: str | None = None  # the grid: the first of ``sources``
    pipeline: PipelineConfig = field(default_factory=lambda: PipelineConfig(source="", threads=1))
    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    selfcheck: bool = False
    present: bool = False  # presentation mode: image, class bars, heat map and state; no HUD, no stamp strip
    study: StudyOptions | None = None
    exit_after_frames: int | None = None
    exit_after_seconds: float | None = None
    screenshot: str | None = None
    report: str | None = None
    snapshot_dir: str = "."
    record_dir: str = "."
    automation: bool = False  # any of exit_after_*, screenshot, report: no modal dialogs, exit codes matter
    sources: tuple[str, ...] = ()  # the grid (``sonolens view SRC1 … SRC4``): 2 to 4 streams; () for one source

    def __init__(self, source: str | None = None, pipeline: PipelineConfig | None = None, **kw: Any) -> None:
        base = pipeline if pipeline is not None else PipelineConfig(source="", threads=1)
        given = {k: kw.pop(k) for k in PIPELINE_KEYS if k in kw}
        self.pipeline = replace(base, source=source or "", **given)
        self.source = source
        for f in fields(self):
            if f.name not in ("source", "pipeline"):
                default = f.default_factory() if f.default_factory is not MISSING else f.default
                setattr(self, f.name, kw.pop(f.name, default))
        if kw:
            raise TypeError(f"unknown viewer option(s): {', '.join(sorted(kw))}")
        self.sources = tuple(self.sources)

    @property
    def grid(self) -> bool:
        """Several streams in one window (``grid.GridWindow``)."""
        return len(self.sources) > 1

    @property
    def show_predictions(self) -> bool:
        """False in the blinded and off study conditions: no bars, no heat map, no ROI box."""
        return self.study is None or self.study.condition == "ai"

    def pipeline_config(self, source: str, stream: int | None = None) -> PipelineConfig:
        """The pipeline settings for playing ``source`` with these options; ``stream`` (1-based, the grid): the
        pipeline's own outputs are that stream's (``f.csv`` → ``f_2.csv``, as ``sonolens run`` names them)."""
        if stream is None:
            return replace(self.pipeline, source=source)
        return replace(self.pipeline, source=source, csv=stream_path(self.pipeline.csv, stream))

    # -- views of the pipeline settings (typed, so the viewer's code reads them as before) ------------------------
    @property
    def model(self) -> str | None:
        return self.pipeline.model

    @property
    def roi(self) -> str | None:
        return self.pipeline.roi if isinstance(self.pipeline.roi, str) or self.pipeline.roi is None else None

    @property
    def threads(self) -> int:
        return self.pipeline.threads

    @property
    def loop(self) -> bool:
        return self.pipeline.loop

    @loop.setter
    def loop(self, on: bool) -> None:  # L while playing
        self.pipeline.loop = bool(on)

    @property
    def speed(self) -> float:
        return self.pipeline.speed

    @speed.setter
    def speed(self, value: float) -> None:  # [ and ] while playing
        self.pipeline.speed = float(value)

    @property
    def realtime(self) -> bool:
        return self.pipeline.realtime

    @property
    def queue(self) -> str | None:
        return self.pipeline.queue

    @property
    def ema(self) -> float:
        return self.pipeline.ema

    @property
    def decision_s(self) -> float:
        return self.pipeline.decision_s

    @property
    def gate(self) -> bool:
        return self.pipeline.gate

    @property
    def cam(self) -> bool:
        return self.pipeline.cam



__all__ = ["StudyOptions", "ViewerOptions"]
