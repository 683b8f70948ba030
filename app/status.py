"""What the window says about its state: the status bar, the state text in the view's strip, the HUD and the
study panel, and the bars' placeholder before the first prediction; the same for the grid (``GridPresenter``). It
reads the viewer model (``model.ViewerModel``) and the display's own statistics — never a controller — and refreshes
when the model says a part changed."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from .hud import STREAM_HUD_HEADER, CounterRate, hud_lines, stream_hud_lines, stream_line
from .widgets import MUTED, NOTICE, RED, TEXT

if TYPE_CHECKING:
    from PyQt6.QtGui import QColor

    from .grid_layout import GridLayout
    from .hud import DisplayStats
    from .layout import ViewerLayout
    from .model import PlaybackState, StudyState, ViewerModel
    from .options import ViewerOptions
    from .selfcheck import SelfCheck

HUD_COLUMNS = 36  # characters of the HUD's monospace font that fit the side panel


def strip_state(pb: PlaybackState, study: StudyState | None = None, recording: bool = False
                ) -> tuple[str, QColor | None]:
    """The state text of a view's strip and its colour ("" and None: nothing to say): a stopped study log, the
    source's error, a source that could not be opened (nothing playing), its end, pause, a recording."""
    if study is not None and study.error:
        return f"study log stopped: {study.error}", RED
    if pb.error:
        return f"source error: {pb.error}", RED
    if pb.pipe is None and pb.open_error:
        return f"cannot open: {pb.open_error}", RED
    if pb.ended:
        return "■ end of stream", NOTICE
    if pb.paused:
        return ("❚❚ FROZEN" if study is not None and study.active else "❚❚ PAUSED"), TEXT
    if recording:
        return "● REC", RED
    return "", None


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
        text, color = strip_state(pb, study, recording=rec is not None)
        view.state_text, view.state_color = text, color or view.state_color
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


class GridPresenter:
    """The grid's texts (``grid.GridWindow``): each cell's state strip and line, the status bar, the side panel's
    figures per stream. Like ``StatusPresenter`` it reads the model (``model.streams``) and the display's own
    statistics (one ``DisplayStats`` per cell), never a controller."""

    def __init__(self, model: ViewerModel, opts: ViewerOptions, ui: GridLayout, stats: list[DisplayStats],
                 names: list[str], selfchecks: list[SelfCheck | None]) -> None:
        self.model, self.opts, self.ui, self.stats, self.names = model, opts, ui, stats, names
        self.selfcheck = next((sc for sc in selfchecks if sc is not None), None)
        model.changed.connect(lambda _part: self.refresh())
        self.input_rates = [CounterRate() for _ in names]
        self._fps_in = [0.0 for _ in names]

    def name(self, i: int) -> str:
        pipe = self.model.streams[i].pipe
        return pipe.info.name if pipe is not None else self.names[i]

    def refresh(self) -> None:
        """Each cell's state strip and the status bar (streams, speed, loop, self-check)."""
        for st, cell in zip(self.model.streams, self.ui.cells):
            text, color = strip_state(st)
            cell.view.state_text, cell.view.state_color = text, color or cell.view.state_color
            cell.view.update()
        parts = [f"{len(self.model.streams)} streams"]
        if self.opts.speed != 1.0:
            parts.append(f"speed ×{self.opts.speed:g}")
        if self.opts.loop:
            parts.append("loop")
        if self.opts.selfcheck:
            parts.append("self-check on: the strip below each image encodes each frame's capture time")
        self.ui.status_label.setText("   ·   ".join(parts))

    def refresh_hud(self) -> None:
        """Each cell's line and the side panel's figures (rates, drops, capture→result and capture→pixels)."""
        lines = [ln for w in self.ui.warnings
                 for ln in textwrap.wrap(w.split(":")[0], HUD_COLUMNS, initial_indent="⚠ ", subsequent_indent="  ")]
        lines.append(STREAM_HUD_HEADER)
        for i, (st, stats, cell) in enumerate(zip(self.model.streams, self.stats, self.ui.cells)):
            pipe = st.pipe
            fps_processed, latency = 0.0, {}
            if pipe is not None:
                live = pipe.telemetry.live()
                fps_processed, latency = float(live["fps_processed"]), dict(live["latency_ms"])
            still = st.still or self.model.session.finishing
            if pipe is not None and not still:
                self._fps_in[i] = self.input_rates[i].sample(pipe.capture.frames_in)
            fps_display = stats.meter.last_rate() if still else stats.meter.rate()
            dropped, skipped = st.frames_dropped_queue, st.frames_skipped
            name = self.name(i)
            if st.source_spec is None:  # never opened: its strip and placeholder say why
                cell.set_line(f"{i + 1} · {name} · " + ("could not open" if st.open_error else "opening…"))
                lines += [f"{i + 1} {name}", "  " + ("could not open" if st.open_error else "opening…")]
                continue
            cell.set_line(f"{i + 1} · {name}" if self.opts.present else
                          stream_line(i + 1, name, fps_display, dropped + skipped, latency.get("capture_to_result")))
            disp = {k: stats.live(k) for k in ("capture_to_pixels",) if k in stats.stages}
            lines += stream_hud_lines(i + 1, name, fps_in=self._fps_in[i] if pipe is not None else 0.0,
                                      fps_processed=fps_processed, fps_display=fps_display, dropped_pipeline=dropped,
                                      skipped_display=skipped, pipeline_latency=latency, display_latency=disp)
        lines.append("(the line under each image: p99)")
        if self.selfcheck is not None and self.selfcheck.method:
            lines.append(f"(stamp read back: {self.selfcheck.method} grab)")
        self.ui.hud.setText("\n".join(lines))


__all__ = ["GridPresenter", "StatusPresenter", "strip_state"]
