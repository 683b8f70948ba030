"""Every per-frame record of a still names its file (first-hour issue, item 6): ``run --csv`` rows and study-log
records carried only ``index`` and ``pts_s`` at c28fbd5; ``--dwell S`` sets the seconds per image of a folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
from conftest import NEUTRAL_CWD


def _folder(tmp_path):
    folder = tmp_path / "cases"
    (folder / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["a1.png", "a2.png", "b/c3.png"]
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (96, 128), dtype=np.uint8))
    return folder, names


def test_run_csv_names_each_still_and_dwell_sets_its_time(tmp_path):
    folder, names = _folder(tmp_path)
    out, report = tmp_path / "f.csv", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(folder), "--max-rate", "--dwell", "2.5",
                           "--no-gate", "--csv", str(out), "--json", str(report), "--quiet"], capture_output=True,
                          text=True, timeout=120, cwd=NEUTRAL_CWD)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == names  # relative to the folder, in the slideshow's (sorted) order
    assert [float(r["pts_s"]) for r in rows] == [0.0, 2.5, 5.0]
    assert json.loads(report.read_text())["frames_processed"] == 3


def test_dwell_must_be_positive(tmp_path):
    folder, _ = _folder(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(folder), "--dwell", "0"], capture_output=True,
                          text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert proc.returncode == 2 and "--dwell must be a positive number" in proc.stderr


# ---------------------------------------------------------------------------------------------- held stills
def test_a_held_folder_shows_each_image_until_advanced_and_stops_when_interrupted(tmp_path):
    """``FolderSource(hold=True)``: the API a reader study waits through. Each image is yielded once; the next comes
    only after ``advance()`` (from another thread); ``interrupt()`` ends the wait (the pipeline stopping)."""
    import queue
    import threading

    from sonolens.pipeline.sources import FolderSource

    folder, names = _folder(tmp_path)
    src = FolderSource(folder, hold=True)
    info = src.open()
    assert info.live and info.fps is None  # the capture thread does not pace it: the reader does
    got: queue.Queue = queue.Queue()

    def consume():
        for raw in src.frames():
            got.put(raw.file)
        got.put("END")

    threading.Thread(target=consume, daemon=True).start()
    assert got.get(timeout=30) == names[0]
    assert got.empty()  # nothing advanced it: the first image is still the one on screen
    src.advance()
    assert got.get(timeout=30) == names[1]
    src.interrupt()
    assert got.get(timeout=30) == "END"


def test_a_held_folder_through_the_pipeline_stops_cleanly(tmp_path):
    """The capture thread blocked in a held image lets go when the pipeline stops (no 5 s join timeout)."""
    import threading

    from sonolens.pipeline.stream import PipelineConfig, build

    folder, names = _folder(tmp_path)
    seen: list[str | None] = []
    first = threading.Event()

    def sink(result):
        seen.append(result.file)
        first.set()

    pipe = build(PipelineConfig(source=str(folder), model=None, slideshow_hold=True), [sink])
    pipe.start()
    assert first.wait(30)
    pipe.source.advance()  # the size cap forwards it to the folder source
    pipe.stop()
    assert not pipe.capture.is_alive()
    assert seen[0] == names[0] and len(seen) <= 2


def test_hold_is_refused_where_nothing_advances_and_for_a_video(tmp_path):
    from conftest import REPO, assert_one_line_error

    folder, _ = _folder(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  hold: true\n")
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(folder), "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert_one_line_error(proc, "source.hold", "headless run")
    from sonolens.pipeline.errors import SourceError
    from sonolens.pipeline.sources import open_source

    try:
        open_source(str(REPO / "assets" / "sample_videos" / "sweep.mp4"), hold=True)
    except SourceError as exc:
        assert "folder of images" in str(exc)
    else:
        raise AssertionError("hold accepted for a video")
