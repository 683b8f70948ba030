"""What the window says about its state: the status bar, the state text in the view's strip, the HUD and the
study panel, and the bars' placeholder before the first prediction. It reads the viewer model (``model.ViewerModel``)
and the display's own statistics — never a controller — and refreshes when the model says a part changed."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from .hud import CounterRate, hud_lines
from .widgets import MUTED, NOTICE, RED, TEXT

if TYPE_CHECKING:
    from .hud import DisplayStats
    from .layout import ViewerLayout
    from .model import ViewerModel
    from .options import ViewerOptions
    from .selfcheck import SelfCheck

HUD_COLUMNS = 36  # characters of the HUD's monospace font that fit the side panel


class StatusPresenter:
    """Refreshes the texts; ``refresh`` on every state change, ``refresh_hud`` on the HUD timer."""

    def __init__(self, model: ViewerModel, opts: ViewerOptions, ui: ViewerLayout, stats: DisplayStats,
                 selfcheck: SelfCheck | None) -> None:
        self.model, self.opts, self.ui, self.stats, self.selfcheck = model, opts, ui, stats, selfcheck
        model.changed.connect(lambda _part: self.refresh())
        self.input_rate = CounterRate()
        self._fps_in = 0.0  # the last input rate measured while frames were coming (kept while still)

    def refresh(self) -> None:
        """Status bar (source, frame, speed, loop, recording, self-check) and the state in the view's strip."""
        pb, rec, study = self.model.playback, self.model.recording.recorder, self.model.study
        parts = []
        if study.case_label is not None:  # a worklist: never the file's name (it can give the answer)
            parts.append(study.case_label)
        elif pb.source_label is not None:
            parts.append(pb.source_label)
        if pb.frame_index is not None:
            parts.append(f"frame {pb.frame_index}")
        if self.opts.speed != 1.0:
            parts.append(f"speed ×{self.opts.speed:g}")
        if self.opts.loop:
            parts.append("loop")
        if rec is not None:
            parts.append(f"● REC {rec.path.name}")
        if self.opts.selfcheck:
            parts.append("self-check on: the strip below the image encodes each frame's capture time")
        self.ui.status_label.setText("   ·   ".join(parts))
        view = self.ui.view
        if study.error:
            view.state_text, view.state_color = f"study log stopped: {study.error}", RED
        elif pb.error:
            view.state_text, view.state_color = f"source error: {pb.error}", RED
        elif pb.ended:
            view.state_text, view.state_color = "■ end of stream", NOTICE
        elif pb.paused:
            view.state_text, view.state_color = ("❚❚ FROZEN" if study.active else "❚❚ PAUSED"), TEXT
        elif rec is not None:
            view.state_text, view.state_color = "● REC", RED
        else:
            view.state_text = ""
        view.update()

    def refresh_hud(self) -> None:
        """Rates, drops and per-stage latency (pipeline and display side), and the study panel."""
        pb, stats = self.model.playback, self.stats
        pipe = pb.pipe
        fps_processed, latency = 0.0, {}
        if pipe is not None:
            live = pipe.telemetry.live()
            fps_processed, latency = float(live["fps_processed"]), dict(live["latency_ms"])
        # paused or ended, nothing new arrives: the rates stay at their last values instead of falling to 0
        still = pb.paused or pb.ended or self.model.session.finishing
        if pipe is not None and not still:
            self._fps_in = self.input_rate.sample(pipe.capture.frames_in)
        fps_display = stats.meter.last_rate() if still else stats.meter.rate()
        disp: dict[str, dict] = {k: stats.live(k) for k in ("result_to_paint", "capture_to_pixels")
                                 if k in stats.stages}
        lines = [ln for w in self.ui.warnings  # the HUD is narrow: each warning's first clause, wrapped
                 for ln in textwrap.wrap(w.split(":")[0], HUD_COLUMNS, initial_indent="⚠ ", subsequent_indent="  ")]
        n_warn = len(lines)
        lines += hud_lines(fps_in=self._fps_in if pipe is not None else 0.0, fps_processed=fps_processed,
                           fps_display=fps_display, dropped_pipeline=pb.frames_dropped_queue,
                           skipped_display=pb.frames_skipped, pipeline_latency=latency, display_latency=disp,
                           speed=self.opts.speed)
        if still and stats.frames_displayed:
            lines.insert(n_warn + 1, "  (rates as at the last frame)")
        score = self.ood_line()
        if score:
            lines.append(score)
        if self.selfcheck is not None and self.selfcheck.method:
            lines.append(f"  (stamp read back: {self.selfcheck.method} grab)")
        self.ui.hud.setText("\n".join(lines))
        if self.model.study.active and self.ui.study_label is not None:
            self.ui.study_label.setText(self.model.study.panel)

    def ood_line(self) -> str:
        """The out-of-domain score of the frame on screen and the model's threshold, when the model has a gate
        (not in the blinded and off study conditions: the score is the model's)."""
        meta, cur = self.model.meta, self.model.playback.current
        if meta is None or not meta.ood or not self.opts.show_predictions:
            return ""
        thr = meta.ood.get("threshold")
        r = cur.result if cur is not None else None
        score = "  –" if r is None or r.ood_score is None else f"{r.ood_score:.2f}"
        limit = f" / {float(thr):.2f}" if thr is not None else ""
        state = "" if r is None else f"  {r.state}" + (f" ({r.no_image})" if r.no_image else "")
        return f"ood score {score}{limit}{'  (gate off)' if not self.opts.gate else state}"

    def bars_placeholder(self) -> None:
        """What the bars say before (or instead of) predictions."""
        bars, view = self.ui.bars, self.ui.view
        if self.opts.study is not None and self.opts.study.condition == "blinded":
            bars.set_hidden("Predictions hidden (blinded study condition).\nThe model runs and is logged.")
            view.chip = ("blinded", MUTED)
        elif self.model.meta is None:
            bars.set_hidden("No model: frames only.")
            view.chip = ("no model", MUTED)
        else:
            bars.set_hidden("waiting for the first frame…")


__all__ = ["StatusPresenter"]
