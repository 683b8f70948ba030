"""Snapshots (S: the window to PNG) and recordings (R: MP4 with the overlay burned in).

A recording is a ``pipeline.record.Recorder`` added to the running pipeline as one more sink
(``Pipeline.add_sink``, thread-safe): it gets every processed frame on the worker thread and encodes on its own
thread, so the display is not slowed by it. It follows the heat-map style live. Stopping detaches it at once
(``Pipeline.remove_sink``) and finishes the file on a background thread; ``close_all`` waits for those files
(at exit).

A recording is the source's picture at the source's size: with the latency self-check on, frames arrive padded
with the stamp band below the image (``pipeline.stamp``), and ``ImageRows`` hands the recorder only the image
rows above it. A warning the pipeline gives about the model being untrained is burned into every frame.
"""

from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, pyqtSignal

from sonolens.pipeline.messages import Result
from sonolens.pipeline.overlay import OverlayStyle
from sonolens.pipeline.stamp import band_height
from sonolens.pipeline.stream import Pipeline

from .model import PlaybackState, RecordingState, state_field

if TYPE_CHECKING:
    from sonolens.pipeline.record import Recorder

    from .window import ViewerWindow


class ImageRows:
    """Sink wrapper: ``sink`` gets each result with the frame cut to the source's image rows (the rows above the
    self-check stamp band; a view, no copy). The ROI lies above the band already."""

    def __init__(self, sink: Recorder) -> None:
        self.sink = sink

    def __call__(self, result: Result) -> None:
        f = result.frame
        rows = f.shape[0] - band_height(f.shape[1])
        self.sink(replace(result, frame=f[:rows]) if rows < f.shape[0] else result)


class Recording(QObject):
    """R toggles a recording of the pipeline now playing; S saves a snapshot."""

    happened = pyqtSignal(str, object, dict)  # study-log event: kind, frame index on screen, fields

    recorder: state_field[Recorder | None] = state_field("recorder")

    def __init__(self, win: ViewerWindow) -> None:
        super().__init__(win)
        self.win = win  # the window's own widgets: the central widget (snapshots), status bar, record action
        self.opts = win.opts
        self.model = win.model
        self.state: RecordingState = win.model.recording
        self.playing: PlaybackState = win.model.playback  # read only
        self._sink: Recorder | ImageRows | None = None  # what was added to the pipeline (the recorder, or wrapped)
        self._pipe: Pipeline | None = None  # the pipeline the recorder is a sink of
        self._closing: list[Recorder] = []  # stopped recorders, finishing their files

    def _file_name(self, prefix: str, ext: str) -> str:
        idx = self.playing.frame_index or 0
        return f"{prefix}_{_dt.datetime.now():%Y%m%d_%H%M%S}_f{idx}.{ext}"

    def _frame_index(self) -> int | None:
        return self.playing.frame_index

    # -- snapshot --------------------------------------------------------------------------------------------------
    def snapshot(self, path: str | None = None) -> Path | None:
        """The central widget (frame, overlay, side panel) as PNG; the path, or None when it could not be saved."""
        out = Path(path) if path else Path(self.opts.snapshot_dir) / self._file_name("sonolens", "png")
        ok = self.win.centralWidget().grab().save(str(out))
        self.win.ui.status_bar.showMessage(f"snapshot saved: {out}" if ok else f"could not save snapshot {out}",
                                           4000)
        self.happened.emit("snapshot", self._frame_index(), {"path": str(out)})
        return out if ok else None

    # -- recording -------------------------------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.recorder is not None:
            self.stop()
        elif self.playing.pipe is not None:
            self._start(self.playing.pipe)
        self.win.ui.act_record.setChecked(self.recorder is not None)
        self.model.notify("recording")

    def _start(self, pipe: Pipeline) -> None:
        from sonolens.pipeline.record import Recorder

        out = Path(self.opts.record_dir) / self._file_name("sonolens", "mp4")
        st = self.win.settings
        untrained = [w for w in pipe.warnings() if "untrained" in w]  # as ``sonolens run --record`` burns it in
        style = OverlayStyle(heatmap=st.heatmap, alpha=st.alpha, colormap=st.colormap,
                             show_roi=self.opts.show_predictions, show_bars=self.opts.show_predictions, show_hud=True,
                             warning=untrained[0].upper() if untrained else None)
        self.recorder = Recorder(out, fps=pipe.info.fps or 30.0, style=style,
                                 hud_source=lambda: {"fps": round(pipe.telemetry.live()["fps_processed"], 1)})
        self._pipe = pipe
        self._sink = ImageRows(self.recorder) if self.opts.selfcheck else self.recorder
        pipe.add_sink(self._sink)
        self.win.ui.status_bar.showMessage(f"recording to {out}", 4000)
        self.happened.emit("record_start", self._frame_index(), {"path": str(out)})

    def stop(self) -> None:
        """Detach the recorder (if any) and finish its file in the background."""
        rec, sink, pipe = self.recorder, self._sink, self._pipe
        self.recorder = self._sink = self._pipe = None
        if rec is None:
            return
        if pipe is not None and sink is not None:
            pipe.remove_sink(sink)
        threading.Thread(target=rec.close, name="sonolens-record-close", daemon=True).start()
        self._closing.append(rec)
        self.win.ui.status_bar.showMessage(f"recording saved: {rec.path}", 4000)
        self.happened.emit("record_stop", self._frame_index(), {"path": str(rec.path)})
        self.win.ui.act_record.setChecked(False)
        self.model.notify("recording")

    def close_all(self) -> None:
        """Stop recording and wait until every file is complete."""
        self.stop()
        for rec in self._closing:
            rec.close()

    def follow_style(self) -> None:
        """The heat-map style changed: the recording shows what the window shows."""
        if self.recorder is not None:
            st = self.win.settings
            self.recorder.style.heatmap = st.heatmap
            self.recorder.style.alpha = st.alpha
            self.recorder.style.colormap = st.colormap


__all__ = ["Recording"]
