"""What the viewer is asked to do: plain dataclasses filled from the command line (``main.options_from_args``)
or by tests. No Qt here."""

from __future__ import annotations

from dataclasses import dataclass

from sonolens.pipeline.stream import PipelineConfig


@dataclass
class StudyOptions:
    """A reader-study session: who, under which condition, and where the log goes."""

    participant: str
    condition: str  # ai | blinded | off
    log: str


@dataclass
class ViewerOptions:
    """Every setting of one viewer session; ``loop`` and ``speed`` change while it runs (L, [ and ])."""

    source: str | None = None
    model: str | None = "busi"  # path or bundled name; None = no model
    roi: str | None = None
    threads: int = 1  # see main.py --threads
    loop: bool = False
    speed: float = 1.0
    realtime: bool = True
    queue: str | None = None
    ema: float = 0.0
    decision_s: float = 0.0  # video-level decision (pipeline.postprocess.ClassDecision); 0 = off
    gate: bool = True  # the frame-state gate; False (--no-gate, research): a prediction on every frame
    cam: bool = True
    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    selfcheck: bool = False
    study: StudyOptions | None = None
    exit_after_frames: int | None = None
    exit_after_seconds: float | None = None
    screenshot: str | None = None
    report: str | None = None
    snapshot_dir: str = "."
    record_dir: str = "."
    automation: bool = False  # any of exit_after_*, screenshot, report: no modal dialogs, exit codes matter

    @property
    def show_predictions(self) -> bool:
        """False in the blinded and off study conditions: no bars, no heat map, no ROI box."""
        return self.study is None or self.study.condition == "ai"

    def pipeline_config(self, source: str) -> PipelineConfig:
        """The pipeline settings for playing ``source`` with these options."""
        return PipelineConfig(source=source, model=self.model, realtime=self.realtime, loop=self.loop,
                              speed=self.speed, roi=self.roi, threads=self.threads, cam=self.cam, ema=self.ema,
                              queue=self.queue, gate=self.gate, decision_s=self.decision_s)


__all__ = ["StudyOptions", "ViewerOptions"]
