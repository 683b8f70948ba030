"""The pipeline's lifecycle in the viewer: open a source, deliver its frames, pause/step/loop/speed, notice its end.

Threads: capture and inference run in the pipeline's threads; ``FrameBridge`` (a sink, on the worker thread)
renders each frame and signals the GUI, which only paints. The GUI never waits on the pipeline: a stalled or
ended source, or slow inference, just means no new frame — the window keeps its last frame and stays live.

One ``Playback`` plays one stream into one view: the single viewer has one, the grid (``grid.GridWindow``) one per
cell, each with its own ``FrameBridge``, pipeline and playback part of the model; they are given the pieces they
work with (options, model part, view, render settings, loop action), not the window.

Pause keeps the frame on screen (with its result). Frames already past the capture stage when pause was pressed
are held back, so "step" shows exactly the next frame; on resume, held frames are discarded (counted as skipped).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtWidgets import QFileDialog, QInputDialog, QWidget

from sonolens.pipeline.errors import SonolensError
from sonolens.pipeline.stamp import band_height
from sonolens.pipeline.stream import Pipeline

from .bridge import DisplayFrame, FrameBridge, RenderSettings
from .model import PlaybackState, ViewerModel, state_field
from .selfcheck import build_viewer_pipeline

if TYPE_CHECKING:
    from PyQt6.QtGui import QAction

    from sonolens.pipeline.engines import Engine

    from .options import ViewerOptions
    from .widgets import VideoView

SPEEDS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)
MAX_HELD = 8  # frames held back while paused; older ones are discarded (counted as skipped)


def next_speed(current: float, direction: int) -> float:
    """The playback speed after ``current`` in ``SPEEDS`` (``direction`` > 0: faster, else slower)."""
    if direction > 0:
        return next((s for s in SPEEDS if s > current + 1e-9), SPEEDS[-1])
    return next((s for s in reversed(SPEEDS) if s < current - 1e-9), SPEEDS[0])


class Playback(QObject):
    """Owns the running ``Pipeline`` and its ``FrameBridge``; its state lives in the viewer model's
    ``playback`` part (``model.PlaybackState``), the rest of the window reacts to its signals and the model."""

    happened = pyqtSignal(str, object, dict)  # study-log event: kind, frame index on screen (or None), fields
    started = pyqtSignal(object)  # a new Pipeline, before its threads start
    stopping = pyqtSignal(object)  # a Pipeline about to be stopped (a recording detaches from it)
    ended = pyqtSignal(str)  # the source ended: "" at its end, else the error message
    shown = pyqtSignal(object)  # a DisplayFrame to put on screen
    open_failed = pyqtSignal(str, str, bool)  # source spec, message, whether nothing is playing

    pipe: state_field[Pipeline | None] = state_field("pipe")
    bridge: state_field[FrameBridge | None] = state_field("bridge")
    current: state_field[DisplayFrame | None] = state_field("current")
    paused: state_field[bool] = state_field("paused")
    is_ended: state_field[bool] = state_field("ended")
    source_spec: state_field[str | None] = state_field("source_spec")
    last_error: state_field[str | None] = state_field("error")

    def __init__(self, parent: QWidget, opts: ViewerOptions, model: ViewerModel, view: VideoView,
                 settings: RenderSettings, act_loop: QAction | None = None, *, state: PlaybackState | None = None,
                 stream: int | None = None) -> None:
        """``parent``: the window (the file and camera dialogs' parent); ``state``: this stream's part of ``model``
        (default ``model.playback``); ``stream``: its number in a grid (1-based; names its per-stream outputs)."""
        super().__init__(parent)
        self.parent_widget = parent
        self.opts = opts
        self.model = model
        self.state: PlaybackState = state if state is not None else model.playback
        self.stream = stream
        self.engine: Engine | None = None  # set by the window once the model is loaded
        self.settings, self.view, self.act_loop = settings, view, act_loop
        self.generation = 0
        self.held: collections.deque[DisplayFrame] = collections.deque()
        self.step_credit = 0
        self.resume_ns = 0

    # -- state -----------------------------------------------------------------------------------------------------
    @property
    def still(self) -> bool:
        """Nothing new will arrive by itself: paused, ended or no pipeline."""
        return self.state.still

    @property
    def current_index(self) -> int | None:
        return self.state.frame_index

    @property
    def current_file(self) -> str | None:
        """The still on screen (relative to its folder), None for video."""
        return self.current.result.file if self.current else None

    @property
    def frames_skipped(self) -> int:
        return self.state.frames_skipped

    @property
    def frames_dropped_queue(self) -> int:
        return self.state.frames_dropped_queue

    def is_live(self, df: DisplayFrame) -> bool:
        """``df`` comes from the pipeline now playing (not one already replaced)."""
        return self.state.is_live(df)

    # -- sources ---------------------------------------------------------------------------------------------------
    def open_source(self, spec: str, initial: bool = False) -> bool:
        """Start a pipeline on ``spec`` and then stop the current one (if any): a source that cannot be opened
        leaves what was playing untouched. Errors → dialog; the window stays (automation: exit code 2)."""
        self.generation += 1
        bridge = FrameBridge(self.settings, self.generation)
        bridge.frame_ready.connect(lambda b=bridge: self.on_frame_ready(b), Qt.ConnectionType.QueuedConnection)
        self.settings.area = self.view.area_size()
        try:
            pipe = build_viewer_pipeline(self.opts.pipeline_config(spec, self.stream), [bridge],
                                         selfcheck=self.opts.selfcheck, engine=self.engine)
        except SonolensError as exc:
            self.state.open_error = str(exc)
            self.model.notify("playback")
            self.open_failed.emit(spec, str(exc), self.pipe is None)
            return False
        self.stop_pipeline(wait=False)
        self.pipe, self.bridge, self.source_spec = pipe, bridge, spec
        self.paused = self.is_ended = False
        self.held.clear()
        self.step_credit = 0
        self.last_error = self.state.open_error = None
        self.resume_ns = time.perf_counter_ns()
        self.started.emit(pipe)
        w, h = pipe.info.width, pipe.info.height
        bridge.warm_up(w, h + (band_height(w) if self.opts.selfcheck else 0))  # the stamp band pads the frame
        pipe.start()
        if not initial:
            self.happened.emit("source_opened", None, {"source": spec})
        self.model.notify("playback")
        return True

    def freeze(self) -> None:
        """The session is ending: no new frame is captured or shown (what happens while shutting down is not part of
        the run)."""
        if self.pipe is not None:
            self.pipe.capture.pause()
        if self.bridge is not None:
            self.bridge.enabled = False

    def stop_pipeline(self, wait: bool = True) -> None:
        pipe, bridge = self.pipe, self.bridge
        if pipe is None:
            return
        self.stopping.emit(pipe)
        if bridge is not None:
            bridge.enabled = False
            self.state.skipped_bridges += bridge.skipped
        self.state.dropped_old += pipe.queue.dropped
        self.pipe = self.bridge = None
        if wait:
            pipe.stop()
        else:  # a camera can take a moment to let go: never on the GUI thread
            threading.Thread(target=pipe.stop, name="sonolens-stop", daemon=True).start()

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Open video, DICOM or image", "",
                                              "Video, DICOM and images (*.mp4 *.avi *.mov *.mkv *.webm *.ts *.dcm "
                                              "*.dicom *.png *.jpg *.jpeg *.bmp *.tif *.tiff);;All files (*)")
        if path:
            self.open_source(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self.parent_widget, "Open a folder of images")
        if path:
            self.open_source(path)

    def open_camera_dialog(self) -> None:
        idx, ok = QInputDialog.getInt(self.parent_widget, "Open camera", "Camera index (0 = first camera):", 0, 0, 63)
        if ok:
            self.open_source(f"camera:{idx}")

    # -- frames ----------------------------------------------------------------------------------------------------
    def on_frame_ready(self, bridge: FrameBridge) -> None:
        df = bridge.take()
        if df is None or bridge is not self.bridge:
            return
        if self.paused and self.step_credit == 0:
            self.held.append(df)
            while len(self.held) > MAX_HELD:
                self.held.popleft()
                self.state.skipped_other += 1
            return
        if self.paused:
            self.step_credit -= 1
        self._show(df)

    def _show(self, df: DisplayFrame) -> None:
        self.current = df
        self.shown.emit(df)

    def check_ended(self) -> None:
        """Called periodically: notice that the source ended or failed (once per pipeline)."""
        pipe = self.pipe
        if pipe is None or self.is_ended or not pipe.worker.finished.is_set():
            return
        if self.bridge is not None:  # a last frame may still be waiting
            self.on_frame_ready(self.bridge)
        self.is_ended = True
        err = pipe.error
        if err is not None:
            self.last_error = str(err)
            self.happened.emit("source_error", self.current_index, {"message": self.last_error})
        else:
            self.happened.emit("end_of_stream", self.current_index, {})
        self.model.notify("playback")
        self.ended.emit(self.last_error or "")

    # -- controls --------------------------------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        if self.pipe is None:
            return
        if self.paused:
            self.paused = False
            self.state.skipped_other += len(self.held)
            self.held.clear()
            self.step_credit = 0
            self.resume_ns = time.perf_counter_ns()
            self.pipe.capture.resume()
            self.happened.emit("unfreeze", self.current_index, {})
        else:
            self.paused = True
            self.pipe.capture.pause()
            self.happened.emit("freeze", self.current_index, {})
        self.model.notify("playback")

    def step(self) -> None:
        """A held still (``--hold``): show the next image. Else, while paused: show the next frame (a held one,
        else let one more through capture); while playing: pause."""
        if self.pipe is None:
            return
        if self.opts.pipeline.slideshow_hold:
            self.advance()
            return
        if not self.paused:
            self.toggle_pause()
            return
        if self.held:
            self._show(self.held.popleft())
        else:
            self.step_credit += 1
            self.pipe.capture.step()
        self.happened.emit("step", self.current_index, {})

    def advance(self) -> None:
        """Show the next image of a held folder (``FolderSource.advance``: the API a reader study answers through)."""
        advance = getattr(self.pipe.source, "advance", None) if self.pipe is not None else None
        if advance is None or not self.opts.pipeline.slideshow_hold:  # only a held folder advances
            return
        advance()
        self.happened.emit("advance", self.current_index, {})

    def set_loop(self, on: bool) -> None:
        self.opts.loop = bool(on)
        act = self.act_loop
        if act is not None and act.isChecked() != self.opts.loop:
            act.setChecked(self.opts.loop)
        if self.pipe is not None:
            self.pipe.capture.loop = self.opts.loop
            if self.is_ended and self.opts.loop and self.source_spec and self.last_error is None:
                self.open_source(self.source_spec)  # it had already ended: start again
        self.model.notify("playback")

    def change_speed(self, direction: int) -> None:
        self.set_speed(next_speed(self.opts.speed, direction))

    def set_speed(self, speed: float) -> None:
        self.opts.speed = speed
        if self.pipe is not None:
            self.pipe.capture.speed = speed  # pacing is the capture thread's alone (the stamp hook only stamps)
        self.model.notify("playback")

    def set_cam_class(self, cls: int | None) -> None:
        if self.pipe is not None:
            self.pipe.worker.cam_class = cls  # applies from the next frame
        self.model.notify("playback")


__all__ = ["Playback", "SPEEDS", "next_speed"]
