"""The viewer's state as plain objects (no Qt): what plays, what is recorded, the study, the session's end.

napari's ``ViewerModel`` in miniature: the controllers (``playback.Playback``, ``recording.Recording``,
``study_mode.StudySession``, ``automation.Automation``) keep their state here and say so through ``changed``; what
shows it (``status.StatusPresenter``) reads this model only, never another controller, and the window is the one
place that knows them all. Each part is a small mutable dataclass owned by one controller (only it writes there);
``changed`` names the part that changed.

A controller's attributes of the same names (``Playback.paused``, ``Recording.recorder``…) read and write these
fields (``state_field``), so the model is the one copy of the state, whoever holds the controller.

The grid (``sonolens view SRC1 SRC2 …``, ``grid.GridWindow``) plays several streams: ``streams`` holds one playback
part per stream, each written by that stream's ``Playback``; ``playback`` is the first (the single viewer's only one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

PARTS = ("playback", "recording", "study", "session")
T = TypeVar("T")


class Event:
    """A list of callbacks: ``connect(fn)``, ``emit(*args)`` calls each in order (on the caller's thread)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@dataclass(eq=False)
class PlaybackState:
    """The source playing and the frame on screen (written by ``Playback``)."""

    pipe: Any = None  # the running pipeline.stream.Pipeline: its info, telemetry and queue counts
    bridge: Any = None  # its app.bridge.FrameBridge: frames skipped by the display
    current: Any = None  # the app.bridge.DisplayFrame on screen
    source_spec: str | None = None
    paused: bool = False
    ended: bool = False
    error: str | None = None  # the source's error, when it ended with one
    open_error: str | None = None  # the last source that could not be opened (None once one opened)
    skipped_other: int = 0  # held frames discarded on resume or overflow
    skipped_bridges: int = 0  # by bridges of pipelines already replaced
    dropped_old: int = 0  # queue drops of pipelines already replaced

    @property
    def still(self) -> bool:
        """Nothing new will arrive by itself: paused, ended or no pipeline."""
        return self.paused or self.ended or self.pipe is None

    @property
    def frame_index(self) -> int | None:
        return self.current.result.index if self.current is not None else None

    def is_live(self, df: Any) -> bool:
        """``df`` (a DisplayFrame) comes from the pipeline now playing, not from one already replaced."""
        return self.pipe is not None and self.bridge is not None and df.generation == self.bridge.generation

    @property
    def frames_skipped(self) -> int:
        return self.skipped_bridges + (self.bridge.skipped if self.bridge is not None else 0) + self.skipped_other

    @property
    def frames_dropped_queue(self) -> int:
        return self.dropped_old + (self.pipe.queue.dropped if self.pipe is not None else 0)

    @property
    def source_label(self) -> str | None:
        """"name (kind, W×H, fps)" of the source playing."""
        if self.pipe is None:
            return None
        info = self.pipe.info
        return f"{info.name} ({info.kind}, {info.width}×{info.height}" + (f", {info.fps:.4g} fps)" if info.fps
                                                                           else ")")


@dataclass(eq=False)
class RecordingState:
    """The MP4 recording under way (written by ``Recording``)."""

    recorder: Any = None  # a pipeline.outputs Recorder, or None


@dataclass(eq=False)
class StudyState:
    """The study session (written by ``StudySession``)."""

    active: bool = False
    case_label: str | None = None  # "block A (1 of 2) · case 3 of 12" in a worklist: never the file's name
    error: str | None = None  # the study log stopped
    panel: str = ""  # the study panel's text


@dataclass(eq=False)
class SessionState:
    """How the session ends (written by ``Automation``)."""

    exit_code: int = 0
    finishing: bool = False
    interrupted_by: str | None = None
    errors: list[str] = field(default_factory=list)


class ViewerModel:
    """The four parts, the loaded model's metadata (``meta``, None without a model) and ``changed`` (called with
    the part's name after its owner changed it). ``streams``: the playback part of each of ``n_streams`` streams
    (the grid; each notifies as ``"playback"``), ``playback`` is ``streams[0]``."""

    def __init__(self, n_streams: int = 1) -> None:
        if n_streams < 1:
            raise ValueError(f"a viewer plays at least one stream, got {n_streams}")
        self.meta: Any = None  # pipeline.engines ModelMeta of the model loaded, set once by the window
        self.streams: list[PlaybackState] = [PlaybackState() for _ in range(n_streams)]
        self.playback = self.streams[0]
        self.recording = RecordingState()
        self.study = StudyState()
        self.session = SessionState()
        self.changed = Event()

    def notify(self, part: str) -> None:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}")
        self.changed.emit(part)


class state_field(Generic[T]):  # noqa: N801 — used like ``property``
    """A controller attribute that lives in its part of the model: ``paused = state_field("paused")`` makes
    ``controller.paused`` read and write ``controller.state.paused``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        return getattr(obj.state, self.name)

    def __set__(self, obj: Any, value: T) -> None:
        setattr(obj.state, self.name, value)


__all__ = ["Event", "PlaybackState", "RecordingState", "StudyState", "SessionState", "ViewerModel", "state_field"]
