"""``sonolens bench``: the report's shape and plumbing, never its speeds (no timed assertions).

The end-to-end test runs ``--smoke`` (tiny teacher stand-ins, a handful of frames) on a random-init student and
checks that the JSON has every required key, that the Markdown shows the JSON's numbers, and that the Markdown can
be regenerated from the JSON alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sonolens.bench.assemble import TARGETS, headline
from sonolens.bench.cli import cli_main
from sonolens.bench.report import HEADLINE_DIGITS, fmt, render_markdown, stage_latencies_from_csv
from sonolens.bench.runner import run_child

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "sample_videos" / "benign.mp4"
FLAT_KEYS = ("teacher_over_student", "offline_teacher_over_student", "gradcam_over_fused", "model_forward_p50_ms",
             "max_rate_fps_sonosite_cam", "realtime_dropped_sonosite", "realtime_capture_to_result_p99_ms_sonosite",
             "run_peak_rss_mb")


@pytest.fixture(scope="module")
def student_pair(random_student, tmp_path_factory) -> tuple[Path, Path]:
    from sonolens.models.quantize import quantize_int8

    int8 = tmp_path_factory.mktemp("int8") / "random_student_int8.onnx"
    quantize_int8(random_student, int8)
    return Path(random_student), int8


# --------------------------------------------------------------------------------------------------------
# The subprocess helper and its memory reading
# --------------------------------------------------------------------------------------------------------
def test_child_reports_torch_not_imported_and_its_own_peak_rss():
    # Make this (parent) process big first: Linux's ru_maxrss would hand its size down to the child.
    ballast = bytearray(300 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    ans = run_child([{"task": "probe", "args": {"imports": ["json"]}}])
    del ballast
    (res,) = ans["results"]
    assert res["ok"], res
    assert res["torch_imported"] is False and ans["torch_imported"] is False
    assert 0 < ans["peak_rss_mb"] < 250, ans  # its own high-water mark, not the 300 MB parent's


@pytest.mark.slow
def test_child_reports_torch_when_imported():
    ans = run_child([{"task": "probe", "args": {"imports": ["torch"]}}])
    assert ans["results"][0]["ok"]
    assert ans["torch_imported"] is True


def test_child_failure_is_reported_not_raised():
    ans = run_child([{"task": "no_such_task", "args": {}}, {"task": "probe", "args": {}}])
    bad, good = ans["results"]
    assert not bad["ok"] and "no_such_task" in bad["error"]
    assert good["ok"]  # one failing measurement does not take the others down


def test_run_cli_rss_child_runs_sonolens_run_without_torch(random_student, tmp_path):
    report = tmp_path / "run.json"
    argv = [str(SAMPLE), "--model", str(random_student), "--max-rate", "--frames", "5", "--quiet",
            "--json", str(report)]
    ans = run_child([{"task": "run_cli", "args": {"argv": argv}}])
    (res,) = ans["results"]
    assert res["ok"], res
    assert res["result"]["rc"] == 0
    assert res["torch_imported"] is False
    assert res["peak_rss_mb"] > 0
    assert json.loads(report.read_text())["frames_processed"] == 5


# --------------------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------------------
def _report_with(**values):
    rep = {
        "ratios": {"teacher_over_student": values.get("t"), "offline_teacher_over_student": 3.0},
        "gradcam": {"gradcam_over_fused": 20.0},
        "models": {"student_onnx_fp32_cam": {"measured": True, "latency_ms": {"p50": values.get("fwd", 2.0)}}},
        "pipeline": {"key": {"is_sonosite": values.get("sonosite", True),
                             "max_rate_cam": {"fps_processed": values.get("fps", 300.0)},
                             "realtime_cam": {"frames_dropped": values.get("drop", 0),
                                              "capture_to_result_ms": {"p99": values.get("p99", 9.0)}}}},
        "run_memory": {"peak_rss_mb": values.get("rss", 200.0), "torch_imported": values.get("torch", False),
                       "isolated": True},
    }
    return rep


def test_headline_targets_pass_and_fail():
    good = headline(_report_with(t=15.0))
    assert all(good["targets"][k]["pass"] is True for k in TARGETS), good["targets"]
    bad = headline(_report_with(fwd=9.0, fps=100.0, drop=3, p99=40.0, rss=900.0))
    assert all(bad["targets"][k]["pass"] is False for k in TARGETS), bad["targets"]
    assert bad["max_rate_fps_sonosite_cam"] == 100.0 and bad["realtime_dropped_sonosite"] == 3


def test_headline_does_not_count_a_stand_in_clip_or_a_torch_import():
    h = headline(_report_with(sonosite=False, torch=True))
    assert h["max_rate_fps_sonosite_cam"] is None and h["realtime_dropped_sonosite"] is None
    assert h["run_peak_rss_mb"] is None
    assert h["targets"]["max_rate_fps_sonosite_cam"]["pass"] is None
    assert h["targets"]["run_peak_rss_mb"]["pass"] is None


def test_stage_latencies_from_a_run_csv(tmp_path):
    path = tmp_path / "frames.csv"
    ms = 1_000_000
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "status", "pts_s", "t_captured_ns", "t_enqueued_ns", "t_dequeued_ns",
                    "t_preprocessed_ns", "t_inferred_ns", "t_delivered_ns", "top_class", "top_prob"])
        w.writerow([0, "processed", 0.0, 0, 1 * ms, 3 * ms, 4 * ms, 9 * ms, 10 * ms, 1, 0.9])
        w.writerow([1, "dropped", 0.04, 40 * ms, 41 * ms, "", "", "", "", "", ""])
    st = stage_latencies_from_csv(path)
    assert list(st["queue_wait"]) == [2.0] and list(st["inference"]) == [5.0]
    assert list(st["capture_to_result"]) == [10.0]


# --------------------------------------------------------------------------------------------------------
# The whole command, smoke-sized
# --------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_run_writes_json_markdown_and_plots(student_pair, tmp_path):
    student, int8 = student_pair
    argv = ["--smoke", "--out-dir", str(tmp_path), "--student", str(student), "--student-int8", str(int8)]
    assert cli_main(argv) == 0
    rep = json.loads((tmp_path / "benchmarks" / "bench.json").read_text())
    md = (tmp_path / "BENCHMARKS.md").read_text()

    # provenance of the run
    for key in ("command", "date", "machine", "versions", "student", "targets"):
        assert key in rep
    assert rep["command"].startswith("sonolens bench --smoke")
    assert rep["command"] in md
    for k in ("cpu_model", "logical_cores", "ram_gb"):
        assert rep["machine"][k]
    for k in ("python", "numpy", "onnxruntime", "torch", "av", "opencv"):
        assert k in rep["versions"]

    # headline keys and their targets; every measured value shows up in the Markdown as formatted
    for key in FLAT_KEYS:
        assert key in rep
    for key in TARGETS:
        t = rep["targets"][key]
        assert {"target", "pass", "value"} <= set(t)
        assert t["value"] == rep[key]
    for key in ("teacher_over_student", "offline_teacher_over_student", "gradcam_over_fused", "model_forward_p50_ms",
                "run_peak_rss_mb"):
        assert rep[key] is not None, key  # measured whether or not ../shared exists
    for key in FLAT_KEYS:
        if rep[key] is not None:
            assert fmt(rep[key], HEADLINE_DIGITS[key]) in md, key

    # every model row measured, with the numbers the table needs
    assert set(rep["models"]) == {"teacher_paper", "teacher_offline", "student_torch", "student_onnx_fp32",
                                  "student_onnx_fp32_cam", "student_onnx_int8", "student_onnx_int8_cam"}
    for name, m in rep["models"].items():
        assert m["measured"], (name, m.get("error"))
        assert m["latency_ms"]["p50"] > 0 and m["size_mb"] > 0 and m["peak_rss_mb"] > 0
        assert fmt(m["latency_ms"]["p50"], 2) in md
    for name in ("student_onnx_fp32", "student_onnx_fp32_cam", "student_onnx_int8", "student_onnx_int8_cam"):
        assert rep["models"][name]["torch_imported"] is False, name  # the ONNX path runs without torch

    # pipeline: the key clip ran all four modes without errors, the naive way ran, memory was measured
    key = rep["pipeline"]["key"]
    for mode in ("max_rate_cam", "max_rate_no_cam", "realtime_cam", "realtime_no_cam"):
        assert key[mode]["frames_processed"] > 0 and key[mode]["error"] is None, mode
    assert key["naive_top"]["fps"] > 0 and key["naive_all"]["fps"] > 0
    assert rep["run_memory"]["torch_imported"] is False
    assert rep["scaling"]["frame_size"] and rep["scaling"]["streams"]
    assert len(rep["scaling"]["streams"][-1]["max_rate_cam"]["per_stream"]) == rep["scaling"]["streams"][-1]["streams"]

    # plots exist and are linked; the Markdown is a pure function of the JSON
    assert (tmp_path / "benchmarks" / "latency_cdf.png").stat().st_size > 0
    assert "benchmarks/latency_cdf.png" in md
    assert render_markdown(rep) == md


# --------------------------------------------------------------------------------------------------------
# The subcommand's parser, through the ``sonolens`` entry point
# --------------------------------------------------------------------------------------------------------
def test_help_exits_0(capsys):
    from sonolens.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: sonolens bench ")


def test_unknown_flag_exits_2_and_bad_values_are_one_line(tmp_path, capsys):
    from sonolens.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--smoke", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    for argv, words in ((["--sections", "models,nope"], "unknown section(s) nope"),
                        (["--torch-threads", "-1"], "--torch-threads must be >= 0"),
                        (["--out-dir", str(tmp_path / "missing")], "is not a folder")):
        assert main(["bench", "--smoke", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sonolens: error: ") and words in err[0], err
