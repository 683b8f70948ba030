"""Recording sink: overlay burned into an mp4, on its own thread so the encoder never stalls inference.

Frames are handed over through a ``block`` queue: a recording keeps every processed frame; if the encoder falls
persistently behind, the worker waits (and the wait shows up in the telemetry) rather than frames vanishing.
The file is closed in ``finally`` so a crash in the pipeline still leaves a playable recording up to that point.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from .errors import SonolensError
from .messages import Result
from .overlay import OverlayStyle, draw_overlay
from .videoio import VideoWriter

log = logging.getLogger(__name__)
_END = object()


class Recorder:
    def __init__(self, path: str | Path, fps: float, style: OverlayStyle | None = None, hud_source=None,
                 capacity: int = 64) -> None:
        self.path = Path(path)
        self.fps = fps
        self.style = style or OverlayStyle()
        self.hud_source = hud_source  # callable returning a dict for the burned-in HUD (live telemetry)
        self._q: queue.Queue = queue.Queue(maxsize=capacity)
        self._writer: VideoWriter | None = None
        self.frames_written = 0
        self.error: SonolensError | None = None
        self._thread = threading.Thread(target=self._run, name="sonolens-recorder", daemon=True)
        self._thread.start()

    def __call__(self, result: Result) -> None:
        if self.error is not None:
            raise self.error
        hud = self.hud_source() if self.hud_source else None
        self._q.put((result, hud))

    def _run(self) -> None:
        try:
            while True:
                item = self._q.get()
                if item is _END:
                    break
                result, hud = item
                img = draw_overlay(result, self.style, hud)
                if self._writer is None:
                    # fragmented MP4: a killed process still leaves a playable file, losing at most the last fragment
                    self._writer = VideoWriter(self.path, self.fps, size=(img.shape[1], img.shape[0]), fragmented=True)
                self._writer.write(img)
                self.frames_written += 1
        except SonolensError as exc:
            self.error = exc
        except Exception as exc:
            log.exception("recorder failed")
            self.error = SonolensError(f"recording to {self.path} failed: {exc}")
        finally:
            if self._writer is not None:
                self._writer.close()
            # drain so a producer blocked on put() is released
            while not self._q.empty():
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(_END)
            self._thread.join()
