"""`sonolens run` end to end: reports, CSV, recording, and one-line errors for every kind of bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import NEUTRAL_CWD, shared_path

from sonolens.cli import main


def _sonolens(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonolens", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=NEUTRAL_CWD)


def _make_video(path: Path, n: int = 12, size=(160, 120), fps: int = 25) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(n):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sonolens: error:") and "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0]


def test_max_rate_run_writes_report_csv_and_recording(tmp_path, random_student):
    video = _make_video(tmp_path / "clip.mp4", n=15)
    rep, rows, rec = tmp_path / "r.json", tmp_path / "f.csv", tmp_path / "o.mp4"
    rc = main(["run", str(video), "--model", str(random_student), "--max-rate", "--json", str(rep), "--csv", str(rows),
               "--record", str(rec), "--quiet"])
    assert rc == 0
    report = json.loads(rep.read_text())
    assert report["frames_in"] == report["frames_processed"] == 15 and report["frames_dropped"] == 0
    assert report["fps_processed"] > 0
    for stage in ("capture_to_result", "inference", "preprocess", "queue_wait"):
        lat = report["latency_ms"][stage]
        assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    table = list(csv.DictReader(rows.open()))
    assert len(table) == 15 and set(table[0]) >= {"t_captured_ns", "t_delivered_ns", "pts_s"}
    with av.open(str(rec)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 15 == report["recording"]["frames_written"]


def test_the_report_names_the_model_and_the_decision(tmp_path, random_student, capsys):
    """The report says which model file ran (and its bundled name when it is one) and whether the video-level
    decision was on; the summary then counts the shown class, and says so."""
    from sonolens.pipeline.engines import bundled_model_path

    video = _make_video(tmp_path / "clip.mp4", n=10)
    rep = tmp_path / "r.json"
    assert main(["run", str(video), "--model", str(random_student), "--max-rate", "--json", str(rep)]) == 0
    report = json.loads(rep.read_text())
    assert report["model"]["file"] == random_student.name and report["model"]["bundled_as"] in (None, "busi-mnv3")
    assert report["decision"] is None and "by top class (ok frames)" in capsys.readouterr().out
    assert main(["run", str(video), "--model", str(random_student), "--max-rate", "--json", str(rep),
                 "--decision", "1"]) == 0
    report = json.loads(rep.read_text())
    assert report["decision"] == {"time_constant_s": 1.0, "margin": 0.15}
    assert "by shown class after the video-level decision (ok frames)" in capsys.readouterr().out
    default = bundled_model_path("busi")
    if default is not None:
        assert main(["run", str(video), "--max-rate", "--json", str(rep), "--quiet"]) == 0
        assert json.loads(rep.read_text())["model"]["bundled_as"] == "busi"


def test_realtime_run_paces_at_source_rate(tmp_path, random_student):
    video = _make_video(tmp_path / "clip.mp4", n=10, fps=20)
    rep = tmp_path / "r.json"
    assert main(["run", str(video), "--model", str(random_student), "--json", str(rep), "--quiet"]) == 0
    report = json.loads(rep.read_text())
    assert report["mode"] == "realtime" and report["queue"]["policy"] == "latest"
    assert report["frames_in"] == report["frames_processed"] + report["frames_dropped"]


def test_real_scanner_clip_roi_strips_ui(tmp_path, random_student):
    video = shared_path("videos", "itkpocus_sonosite-anon-eye1-video.mp4")
    rep = tmp_path / "r.json"
    assert main(["run", str(video), "--model", str(random_student), "--max-rate", "--frames", "30", "--json",
                 str(rep), "--quiet"]) == 0
    report = json.loads(rep.read_text())
    x, y, w, h = report["roi"]
    # the B-mode image spans about x 388-722, y 40-640 of the 960x720 screen; UI text sits outside it
    assert x <= 395 and x + w >= 715 and y <= 50 and y + h >= 630
    assert x >= 250 and x + w <= 800 and y + h <= 690


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100])
def test_not_a_video(tmp_path, random_student, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    _assert_one_line_error(_sonolens("run", str(bad), "--model", str(random_student)), "bad.mp4")


def test_truncated_mp4(tmp_path, random_student):
    src = shared_path("videos", "itkpocus_sonosite-anon-eye1-video.mp4").read_bytes()
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(src[: len(src) // 3])
    _assert_one_line_error(_sonolens("run", str(bad), "--model", str(random_student)), "trunc.mp4")


def test_missing_source_and_absent_camera(random_student):
    _assert_one_line_error(_sonolens("run", "/no/such/clip.mp4", "--model", str(random_student)), "no such file")
    _assert_one_line_error(_sonolens("run", "camera:57", "--model", str(random_student)), "camera 57")


def test_missing_corrupt_and_mismatched_model(tmp_path, random_student):
    video = _make_video(tmp_path / "clip.mp4", n=3)
    _assert_one_line_error(_sonolens("run", str(video), "--model", str(tmp_path / "none.onnx")), "not found")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01garbage" * 50)
    _assert_one_line_error(_sonolens("run", str(video), "--model", str(junk)), "junk.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(random_student.read_bytes()[:100_000])
    _assert_one_line_error(_sonolens("run", str(video), "--model", str(cut)), "cut.onnx")


def test_bad_option_values(tmp_path, random_student):
    video = _make_video(tmp_path / "clip.mp4", n=3)
    _assert_one_line_error(_sonolens("run", str(video), "--model", str(random_student), "--roi", "1,2,3"), "--roi")
    # a missing output folder is created (the README's command writes into out/)
    assert _sonolens("run", str(video), "--model", str(random_student), "--max-rate", "--json",
                     str(tmp_path / "new" / "r.json")).returncode == 0
    assert (tmp_path / "new" / "r.json").is_file()


def test_pipeline_does_not_import_torch_or_qt(tmp_path, random_student):
    video = _make_video(tmp_path / "clip.mp4", n=3)
    code = (
        "import sys; from sonolens.cli import main; "
        f"rc = main(['run', {str(video)!r}, '--model', {str(random_student)!r}, '--max-rate', '--quiet']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PyQt6', 'timm')]; "
        "print('BAD', bad); sys.exit(rc or bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=NEUTRAL_CWD)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pipeline_package_has_no_torch_or_qt_imports():
    root = Path(__file__).resolve().parents[2] / "pipeline"
    offenders = []
    for py in root.rglob("*.py"):
        for line in py.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and any(f" {m}" in s + " " for m in ("torch", "PyQt6", "timm")):
                offenders.append(f"{py.name}: {s}")
    assert offenders == []
