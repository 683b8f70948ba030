"""``sonolens bench``: the report's shape and plumbing, never its speeds (no timed assertions).

The end-to-end test runs ``--smoke`` (tiny teacher stand-ins, a handful of frames) on a random-init student and
checks that the JSON has every required key, that the Markdown shows the JSON's numbers, and that the Markdown can
be regenerated from the JSON alone.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sonolens.bench.assemble import (
    STREAMS_RULE,
    TARGETS,
    assemble,
    contended,
    difference,
    headline,
    largest_holding,
    stream_holds,
)
from sonolens.bench.child import noise_ms, rss_growth
from sonolens.bench.cli import cli_main
from sonolens.bench.plan import PLANS, Inputs, display_path
from sonolens.bench.plan import REPO as BENCH_REPO
from sonolens.bench.report import HEADLINE_DIGITS, fmt, render_markdown, stage_latencies_from_csv
from sonolens.bench.runner import run_child
from sonolens.pipeline.contention import NOT_A_RESULT, CpuWatch, free_cores, judge, make_record

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
                                              "capture_to_result_ms": {"p99": values.get("p99", 9.0)}}},
                     "moving": {"max_rate_cam": {"fps_processed": values.get("mfps", 140.0)},
                                "realtime_cam": {"frames_dropped": values.get("mdrop", 0),
                                                 "capture_to_result_ms": {"p99": values.get("mp99", 8.0)}}}},
        "run_memory": {"peak_rss_mb": values.get("rss", 200.0), "torch_imported": values.get("torch", False),
                       "isolated": True},
        "soak": {"ok": True, "minutes": values.get("soak_min", 30.0), "counts_for_target": values.get("soak_min", 30.0)
                 >= 30, "memory": {"growth_mb": values.get("growth", 2.0)}, "frames_dropped": values.get("sdrop", 0)},
        "multi_stream": _multi_section({n: "held" if n <= values.get("held", 6) else "failed" for n in range(1, 9)}),
        "batch": _batch_report(local=values.get("local", 180.0), sched=values.get("sched", 175.0))["batch"],
    }
    return rep


def test_headline_targets_pass_and_fail():
    good = headline(_report_with(t=15.0))
    assert all(good["targets"][k]["pass"] is True for k in TARGETS), good["targets"]
    bad = headline(_report_with(fwd=9.0, fps=100.0, drop=3, p99=40.0, rss=900.0, growth=10.0, sdrop=4, mfps=60.0,
                                mdrop=2, mp99=35.0, held=4, local=150.0, sched=120.0))
    assert all(bad["targets"][k]["pass"] is False for k in TARGETS), bad["targets"]
    assert bad["max_rate_fps_sonosite_cam"] == 100.0 and bad["realtime_dropped_sonosite"] == 3
    assert bad["max_rate_fps_moving_cam"] == 60.0 and bad["realtime_dropped_moving"] == 2
    assert good["streams_one_process_max"] == 6 and bad["streams_one_process_max"] == 4


def test_the_headline_leads_with_moving_footage_and_labels_the_still():
    """The first figures of the headline are measured on moving footage; the SonoSite rows say it is a still."""
    targets = headline(_report_with())["targets"]
    names = list(targets)
    assert names.index("max_rate_fps_moving_cam") < names.index("max_rate_fps_sonosite_cam")
    assert all("still" in targets[k]["what"] for k in names if "sonosite" in k)


def test_headline_does_not_count_a_stand_in_clip_or_a_torch_import():
    h = headline(_report_with(sonosite=False, torch=True))
    assert h["max_rate_fps_sonosite_cam"] is None and h["realtime_dropped_sonosite"] is None
    assert h["run_peak_rss_mb"] is None
    assert h["targets"]["max_rate_fps_sonosite_cam"]["pass"] is None
    assert h["targets"]["run_peak_rss_mb"]["pass"] is None


def test_a_short_soak_is_measured_but_not_counted_against_the_30_minute_target():
    h = headline(_report_with(soak_min=0.5, growth=50.0))
    assert h["soak_rss_growth_mb"] == 50.0
    t = h["targets"]["soak_rss_growth_mb"]
    assert t["pass"] is None and "30 min" in t["note"]


# --------------------------------------------------------------------------------------------------------
# Many streams: the largest count that held, from hand-made rows (no timing)
# --------------------------------------------------------------------------------------------------------
def _stream_side(kind="held", *, dropped=0, p99=30.0, behind=5.0, processed=None, error=None):
    """One way of running N streams as ``assemble`` writes it. ``kind``: held | failed (12 frames dropped) |
    contended (would have held) | contended_failed | error."""
    if kind == "error":
        return {"error": "RuntimeError: boom"}
    if kind in ("failed", "contended_failed"):
        dropped = 12
    busy = kind.startswith("contended")
    cpu = make_record(wall_s=12.0, cpu_s=3.0, others_busy_cores=1.4, compute_bound=False, usable=2)
    reasons = ["its threads waited on a run queue 45% of the time they were ready to run (≥ 20%)"] if busy else []
    return {"frames_in": 720, "frames_processed": 720 - dropped if processed is None else processed,
            "frames_dropped": dropped, "worst_stream_dropped": dropped, "fps_in_min": 29.97,
            "capture_behind_ms_max": behind,
            "capture_to_result_ms": {"worst_stream": {"p50": 12.5, "p99": p99},
                                     "pooled": {"n": 720, "p50": 11.25, "p95": 20.5, "p99": 28.75, "max": 41.0}},
            "per_stream": [], "threads": 0, "contention": {**cpu, "contended": busy, "judged": True, "reasons": reasons,
                                                         "context": "load average 3.1 → 3.4" if busy else ""},
            "wall_s": 12.0, "peak_rss_mb": 180.0, "rss_basis": "the process's peak RSS", "error": error,
            "batches": {"max_batch": 2, "engine_calls": 400, "mean_size": 1.8, "max_size": 2,
                        "calls_by_size": {"1": 80, "2": 320}}}


def _multi_section(one: dict[int, str], procs: dict[int, str] | None = None, size=(960, 720)):
    """The streams section of a report from the kind of each count's run (``_stream_side``), its verdict by
    ``largest_holding``."""
    procs = procs if procs is not None else {n: "held" if n <= 4 else "failed" for n in one}
    rows = [{"streams": n, "one_process": _stream_side(one[n]), "processes": _stream_side(procs[n])} for n in one]
    for row in rows:
        for side in ("one_process", "processes"):
            if "frames_in" in row[side]:
                row[side]["holds"] = stream_holds(row[side])
    return {"clip": "stream_1_moving_sweep.mp4", "source": {"width": size[0], "height": size[1], "fps": 30.0,
                                                            "frame_count": 360},
            "made_by": "sonolens simulate sweep", "copies": "one copy per stream", "model": "busi_student.onnx",
            "model_source": "bundled", "threads": {"one_process": 0, "processes": 1}, "max_batch": 0,
            "rule": dict(STREAMS_RULE), "rows": rows, "how": "by hand",
            "verdict": {side: largest_holding(rows, side) for side in ("one_process", "processes")}}


def test_a_count_holds_with_no_drop_a_p99_within_50_ms_and_its_input_on_time():
    assert stream_holds(_stream_side(p99=50.0, behind=50.0))  # the limits themselves hold
    assert not stream_holds(_stream_side(p99=50.01))
    assert not stream_holds(_stream_side(dropped=1))
    assert not stream_holds(_stream_side(behind=51.0))  # a file read late loses no frame: its input fell behind
    assert not stream_holds(_stream_side(processed=0))
    assert not stream_holds(_stream_side(error="stream 2: decode failed"))
    no_p99 = _stream_side()
    no_p99["capture_to_result_ms"]["worst_stream"]["p99"] = None  # a stream without a processed frame
    assert not stream_holds(no_p99)


def test_the_largest_count_that_held_leaves_contended_and_failed_runs_out():
    rows = _multi_section({1: "held", 2: "held", 4: "held", 6: "contended", 8: "failed"})["rows"]
    v = largest_holding(rows, "one_process")
    assert v["largest"] == 4 and v["held"] == [1, 2, 4] and v["failed"] == [8] and v["contended"] == [6]
    assert v["largest_as_measured"] == 6  # had the contended figure counted: it is not a result
    v = largest_holding(_multi_section({1: "held", 2: "failed", 3: "held", 4: "error"})["rows"], "one_process")
    assert v["largest"] == 3 and v["failed"] == [2] and v["errors"] == [4]  # the largest that held, not the first gap
    v = largest_holding(_multi_section({1: "failed", 2: "contended"})["rows"], "one_process")
    assert v["largest"] == 0 and v["contended"] == [2]  # judged, and none held
    v = largest_holding(_multi_section({1: "contended", 2: "contended_failed", 3: "error"})["rows"], "one_process")
    assert v["largest"] is None and v["largest_as_measured"] == 1 and v["errors"] == [3]
    procs = largest_holding(_multi_section({n: "held" for n in range(1, 9)})["rows"], "processes")
    assert procs["largest"] == 4 and procs["failed"] == [5, 6, 7, 8]  # each side has its own verdict


def _streams_target(one, procs=None, size=(960, 720)):
    h = headline({"multi_stream": _multi_section(one, procs, size)})
    return h, h["targets"]["streams_one_process_max"]


def test_the_streams_target_counts_only_results_on_960x720_footage():
    h, t = _streams_target({n: "held" if n <= 6 else "failed" for n in range(1, 9)})
    assert h["streams_one_process_max"] == 6 and t["pass"] is True and "note" not in t
    assert h["streams_processes_max"] == 4
    h, t = _streams_target({n: "held" if n <= 3 else "failed" for n in range(1, 9)})
    assert t["value"] == 3 and t["pass"] is False
    # failing only because the counts above it were contended: not counted against the target
    h, t = _streams_target({n: "held" if n <= 4 else "contended" for n in range(1, 9)})
    assert t["value"] == 4 and t["pass"] is None and "5, 6, 7, 8 above it not a result" in t["note"]
    h, t = _streams_target({n: "held" if n <= 7 else "contended" for n in range(1, 9)})
    assert t["pass"] is True and t["note"] == "a lower bound: count(s) 8 not a result"
    # nothing but contended figures: not a result, with the reasons
    h, t = _streams_target({1: "contended", 2: "contended"})
    assert t["value"] is None and t["contended"] and t["measured"] == 2 and "run queue 45%" in t["note"]
    h, t = _streams_target({1: "held", 2: "held"}, size=(128, 96))
    assert t["value"] == 2 and t["pass"] is None and "the footage is 128×96" in t["note"]
    h, t = _streams_target({1: "held", 2: "held"})
    assert t["pass"] is None and "every count measured held, up to 2" in t["note"]
    assert headline({})["targets"]["streams_one_process_max"]["value"] is None  # the section did not run


def test_the_streams_section_renders_after_the_others_and_withholds_contended_figures() -> None:
    repo = Path(__file__).resolve().parents[2]
    committed = json.loads((repo / "benchmarks" / "bench.json").read_text(encoding="utf-8"))
    before = render_markdown(committed)
    assert "## 9." not in before and "streams_one_process_max" not in before
    ms = _multi_section({1: "held", 2: "held", 3: "failed", 4: "contended"},
                        {1: "held", 2: "failed", 3: "error", 4: "failed"})
    md = render_markdown({**committed, "multi_stream": ms})
    assert md.startswith(before.rstrip("\n") + "\n")  # every other section as it was; §9 comes last
    nine = md[len(before.rstrip("\n")):]
    assert "## 9. Many streams in one process" in nine and "by hand" in nine
    assert "one process **2**, N separate processes **1**" in nine
    assert "one process: did not hold at N = 3; N = 4: contended: not a result" in nine
    assert "N separate processes: did not hold at N = 2, 4; N = 3: failed to run" in nine
    rows: dict[str, str] = {}
    for line in nine.splitlines():  # the first table: one process against N processes
        if line.startswith("| ") and " / " in line:
            rows.setdefault(line.split(" | ")[0], line)
    assert "| 720 / 720 / 0 (0) | 12.50 / 30.00 (11.25 / 28.75) | yes |" in rows["| 1"]
    assert "| 720 / 708 / 12 (12) | 12.50 / 30.00 (11.25 / 28.75) | **no** |" in rows["| 3"]
    assert f"720 / 720 / {NOT_A_RESULT} | {NOT_A_RESULT} | {NOT_A_RESULT} |" in rows["| 4"]
    assert "failed: RuntimeError: boom" in rows["| 3"]
    assert "size 1: 80, size 2: 320 (mean 1.80)" in nine


def test_the_streams_plot_leaves_contended_and_failed_runs_out(tmp_path):
    from sonolens.bench.plots import write_plots

    written = write_plots({"multi_stream": _multi_section({1: "held", 2: "contended", 4: "failed"},
                                                          {1: "error", 2: "contended", 4: "held"})}, None, tmp_path)
    assert written == {"multi_stream": str(tmp_path / "multi_stream.png")}
    assert (tmp_path / "multi_stream.png").stat().st_size > 0
    nothing = _multi_section({1: "contended"}, {1: "error"})
    assert write_plots({"multi_stream": nothing}, None, tmp_path / "none") == {}


# --------------------------------------------------------------------------------------------------------
# An archive on Dask: the ratios and their targets from hand-made answers (no timing)
# --------------------------------------------------------------------------------------------------------
BATCH_SETUP_KEYS = ("one_process", "local_cluster", "scheduler")


def _batch_answer(setup, fps, *, frames=26355, busy=False, failed=0, workers=2):
    """One batch task's answer as ``archive`` returns it: ``fps`` frames/s over ``frames``; ``busy``: measured while
    other processes kept the cores busy (its run queue waited 60 % of the time)."""
    wall = frames / fps
    cpu = make_record(wall_s=wall, cpu_s=1.9 * wall, run_ns=int(4e9 if busy else 9e9),
                      wait_ns=int(6e9 if busy else 1e9), others_busy_cores=1.4 if busy else 0.1,
                      compute_bound=setup == "one_process", usable=2, loadavg_before=[2.0], loadavg_after=[2.1])
    r = {"recordings": 97, "frames": frames, "failed": failed, "wall_s": wall, "cam": False, "queue": "block",
         "errors": [f"benign/clip_{k}.mp4: decode failed" for k in range(failed)], "contention": cpu,
         "threads": 0 if setup == "one_process" else 1}
    if setup != "one_process":
        r.update(cluster_s=wall - 4.0, workers=workers, lost=0, rc=0)
    if setup == "scheduler":
        r["workers_start_s"] = 6.5
    return [{"ok": True, "isolated": True, "peak_rss_mb": 150.0, "torch_imported": False, "result": r}]


def _batch_report(one=100.0, local=180.0, sched=175.0, *, busy=(), frames=None, full=True, skipped=None,
                  local_workers=2, failed_task=None):
    """A report of the batch section alone, assembled from hand-made answers (``busy``: the setups measured under
    contention; ``frames``: per setup, default 26355; ``failed_task``: a setup whose task failed)."""
    fps = dict(zip(BATCH_SETUP_KEYS, (one, local, sched)))
    results = {f"batch:{s}": _batch_answer(s, fps[s], busy=s in busy, frames=(frames or {}).get(s, 26355),
                                           workers=local_workers if s == "local_cluster" else 2)
               for s in BATCH_SETUP_KEYS}
    if failed_task:
        results[f"batch:{failed_task}"] = [{"ok": False, "error": "RuntimeError: dask scheduler exited",
                                             "isolated": True}]
    inp = Inputs(student=BENCH_REPO / "models" / "weights" / "busi_student.onnx", student_source="bundled",
                 student_trained=True, int8=Path("q.onnx"), int8_source="given", teacher_checkpoint=None, samples=[],
                 shared_dir=None, shared_videos=[], key_clip=None,
                 batch_root=None if skipped else Path("/somewhere/breast_cine"),
                 batch_selection="every clip of ../shared/videos/breast_cine (97 .mp4 files)" if full
                 else "the first 20 of the 97 clips of ../shared/videos/breast_cine in sorted path order",
                 batch_full=full, batch_skipped=skipped)
    rep = assemble(inp, PLANS["full"], {"batch"}, {} if skipped else results, {})
    rep.update(headline(rep))
    return rep


def test_the_batch_ratios_pass_and_fail_against_their_targets():
    rep = _batch_report(one=100.0, local=180.0, sched=175.0)
    assert rep["batch_local_over_one_process"] == pytest.approx(1.8)
    assert rep["batch_scheduler_over_local"] == pytest.approx(175.0 / 180.0)
    assert rep["targets"]["batch_local_over_one_process"]["pass"] is True
    assert rep["targets"]["batch_scheduler_over_local"]["pass"] is True
    rows = {row["setup"]: row for row in rep["batch"]["rows"]}
    assert rows["scheduler"]["over_one_process"]["value"] == pytest.approx(1.75)
    assert rows["local_cluster"]["cluster_fps"] == pytest.approx(26355 / (26355 / 180.0 - 4.0))
    rep = _batch_report(one=100.0, local=159.0, sched=143.0)
    t = rep["targets"]
    assert t["batch_local_over_one_process"]["pass"] is False and t["batch_scheduler_over_local"]["pass"] is False
    assert t["batch_local_over_one_process"]["value"] == pytest.approx(1.59)
    assert rep["contended"] == []


def test_a_contended_batch_figure_withholds_its_ratios_and_says_why():
    rep = _batch_report(local=180.0, busy=("local_cluster",))
    assert rep["batch_local_over_one_process"] is None and rep["batch_scheduler_over_local"] is None
    for name in ("batch_local_over_one_process", "batch_scheduler_over_local"):
        t = rep["targets"][name]
        assert t["contended"] and t["pass"] is None and NOT_A_RESULT in t["note"] and "run queue 60%" in t["note"]
    assert rep["targets"]["batch_local_over_one_process"]["measured"] == pytest.approx(1.8)
    assert [f["what"] for f in rep["contended"]] == ["archive on Dask: `sonolens batch`, its embedded LocalCluster"]
    # the one process against the scheduler stays a result: neither side was contended
    rows = {row["setup"]: row for row in rep["batch"]["rows"]}
    assert rows["scheduler"]["over_one_process"]["value"] == pytest.approx(1.75)


def test_batch_ratios_need_the_same_frames_every_clip_of_breast_cine_and_as_many_workers():
    rep = _batch_report(frames={"scheduler": 26000})
    t = rep["targets"]["batch_scheduler_over_local"]
    assert rep["batch_scheduler_over_local"] is None and t["pass"] is None
    assert t["note"] == "not comparable: 26000 frames against 26355"
    assert rep["targets"]["batch_local_over_one_process"]["pass"] is True
    rep = _batch_report(full=False)
    for name in ("batch_local_over_one_process", "batch_scheduler_over_local"):
        t = rep["targets"][name]
        assert t["value"] is not None and t["pass"] is None and t["note"].startswith("not counted: the first 20")
    t = _batch_report(local_workers=4)["targets"]["batch_scheduler_over_local"]
    assert t["pass"] is None and t["note"] == "not counted: the LocalCluster had 4 worker(s), the scheduler 2"
    rep = _batch_report(failed_task="scheduler")
    t = rep["targets"]["batch_scheduler_over_local"]
    assert t["value"] is None and "failed" in t["note"] and rep["targets"]["batch_local_over_one_process"]["pass"]


def test_without_the_batch_extra_the_section_is_skipped_with_a_note():
    reason = "the 'batch' extra is not installed (no module dask): install it with pip install 'sonolens[batch]'"
    rep = _batch_report(skipped=reason)
    assert rep["batch"]["skipped"] == reason and "rows" not in rep["batch"]
    for name in ("batch_local_over_one_process", "batch_scheduler_over_local"):
        assert rep[name] is None and rep["targets"][name]["pass"] is None
        assert rep["targets"][name]["note"] == f"skipped: {reason}"
    committed = json.loads((REPO / "benchmarks" / "bench.json").read_text(encoding="utf-8"))
    md = render_markdown({**committed, "batch": rep["batch"]})
    assert "## 10. An archive on Dask\n\nRecordings: " in md and f"Skipped: {reason}." in md


def test_the_batch_section_renders_after_the_others_and_withholds_contended_figures():
    committed = json.loads((REPO / "benchmarks" / "bench.json").read_text(encoding="utf-8"))
    before = render_markdown(committed)
    assert "## 10." not in before and "batch_local_over_one_process" not in before
    rep = _batch_report(one=100.0, local=180.0, sched=175.0, busy=("scheduler",))
    md = render_markdown({**committed, "batch": rep["batch"], "targets": {**committed["targets"], **{
        k: v for k, v in rep["targets"].items() if k.startswith("batch_")}}, **{
        k: rep[k] for k in ("batch_local_over_one_process", "batch_scheduler_over_local")}})
    ten = md[md.index("## 10. An archive on Dask"):]
    assert md.index("## 10.") > md.index("## 4.")
    rows = {line.split(" | ")[0]: line for line in ten.splitlines() if line.startswith("| ")}
    one = next(v for k, v in rows.items() if k.startswith("| one process"))
    local = next(v for k, v in rows.items() if "LocalCluster" in k)
    sched = next(v for k, v in rows.items() if "--scheduler" in k)
    assert "| 97 | 26355 | 263.6 | 100.0 | 1.00× | — |" in one and "ONNX Runtime threads: its default" in one
    assert "| 97 | 26355 | 146.4 | 180.0 | 1.80× | 142.4 (185.1) |" in local
    assert "(2 workers, ONNX Runtime threads: 1)" in local
    assert f"| 97 | 26355 | {NOT_A_RESULT} | {NOT_A_RESULT} | {NOT_A_RESULT} | {NOT_A_RESULT} |" in sched
    assert "their start-up, 6.5 s, not counted" in sched and f"**{NOT_A_RESULT}**: its threads waited" in sched
    assert "1.90 CPU-s per wall-s of 2 cores, run-queue wait 10 %, others busy on 0.10 cores" in local
    assert "LocalCluster / one process **1.80×** (target >= 1.6)" in ten
    assert f"scheduler / LocalCluster **{NOT_A_RESULT}** (target >= 0.9)" in ten
    assert "How: every frame of every recording" in ten and "150.6" not in ten  # the scheduler's wall is withheld
    failed = render_markdown({**committed, "batch": _batch_report(failed_task="local_cluster")["batch"]})
    assert "failed: RuntimeError: dask scheduler exited" in failed
    assert ("LocalCluster / one process **— (not measured: `sonolens batch`, its embedded LocalCluster failed)**"
            in failed)


def test_the_batch_table_is_read_for_frames_and_errors_only(tmp_path):
    from sonolens.bench.archive import read_table

    path = tmp_path / "results.csv"
    path.write_text("path,kind,frames,score,mean_p_malignant,error\n"
                    "benign/a.mp4,video,120,0.31,0.31,\n"
                    "malignant/b.mp4,video,0,,,cannot decode\n"
                    "malignant/c.mp4,video,80,0.77,0.77,\n")
    assert read_table(path) == {"recordings": 3, "frames": 200, "failed": 1,
                                "errors": ["malignant/b.mp4: cannot decode"]}


def test_the_tree_watch_counts_processes_below_this_one_while_they_run():
    import os

    from sonolens.bench.procwatch import TreeWatch, process_tree

    watch = TreeWatch(poll_s=0.05)
    child = subprocess.Popen([sys.executable, "-c", "import time\nx = 0\nfor i in range(2_000_000): x += i\n"
                                                    "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 30
        while child.pid not in process_tree(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in process_tree(os.getpid())
        rec = watch.record()  # the child still running: its time so far is counted
    finally:
        child.kill()
        child.wait()
    assert {"wall_s", "cpu_s", "cpu_per_wall", "run_delay_share", "others_busy_cores", "usable_cores"} <= set(rec)
    assert rec["cpu_s"] >= 0 and rec["compute_bound"] is False


def test_a_stream_process_that_cannot_start_fails_the_measurement_in_one_line(random_student, tmp_path):
    ans = run_child([{"task": "separate_processes", "args": {
        "clips": [str(SAMPLE), str(tmp_path / "missing.mp4")], "model": str(random_student), "timeout_s": 120.0}}])
    (res,) = ans["results"]
    assert not res["ok"] and "stream process 2" in res["error"] and "before it was ready" in res["error"]


# --------------------------------------------------------------------------------------------------------
# Contention: figures measured while other processes competed for the CPU are flagged, not printed as results
# --------------------------------------------------------------------------------------------------------
def _rec(cpu_per_wall=1.0, share=0.01, others=0.1, wall=2.0, compute_bound=True, threads=1):
    run_ns = None if share is None else int(1e9 * (1 - share))
    wait_ns = None if share is None else int(1e9 * share)
    return make_record(wall_s=wall, cpu_s=cpu_per_wall * wall, run_ns=run_ns, wait_ns=wait_ns,
                       others_busy_cores=others, threads=threads, compute_bound=compute_bound,
                       loadavg_before=[2.3, 1.0, 0.5], loadavg_after=[2.5, 1.1, 0.5], usable=2)


def test_a_timing_record_with_cpu_far_below_wall_is_flagged():
    v = judge(_rec(cpu_per_wall=0.14, share=None, others=None))
    assert v["contended"] and v["judged"]
    assert "0.14 CPU-s per wall-s" in v["reasons"][0]


def test_a_clean_timing_record_is_not_flagged():
    v = judge(_rec(), {"n": 100, "p10": 3.4, "p50": 3.6, "p90": 4.1})
    assert v == {"contended": False, "judged": True, "reasons": [], "context": v["context"]}
    assert "load average 2.3 → 2.5" in v["context"]


def test_run_queue_waits_count_only_while_other_processes_are_busy():
    # the pipeline's own decode/inference/encoder threads queue behind each other on 2 cores: not contention
    assert not judge(_rec(share=0.6, others=0.1, compute_bound=False))["contended"]
    v = judge(_rec(share=0.6, others=1.2, compute_bound=False))
    assert v["contended"] and "run queue 60%" in v["reasons"][0]
    assert judge(_rec(share=0.6, others=None, compute_bound=False))["contended"]  # others unknown: the wait decides


def test_busy_neighbours_flag_a_task_wanting_every_core_where_the_run_queue_is_unknown():
    assert judge(_rec(share=None, others=1.0, threads=2))["contended"]
    assert not judge(_rec(share=None, others=1.0, threads=1))["contended"]


def test_widely_spread_repeats_are_flagged_and_too_short_a_loop_is_not_judged():
    v = judge(_rec(), {"n": 30, "p10": 3.6, "p90": 500.0})
    assert v["contended"] and "spread" in v["reasons"][0]
    short = judge(_rec(cpu_per_wall=0.1, wall=0.001))
    assert not short["contended"] and not short["judged"]


def test_cpu_watch_records_a_busy_loop_of_this_process():
    w = CpuWatch(poll=True, poll_s=0.01)
    x = 0
    for i in range(200_000):  # a few tens of ms of work; no timing is asserted
        x += i
    rec = w.record(threads=1, compute_bound=True)
    assert rec["wall_s"] > 0 and rec["usable_cores"] >= 1
    assert {"cpu_per_wall", "run_delay_share", "others_busy_cores", "loadavg_before", "loadavg_after"} <= set(rec)
    free, basis = free_cores(sample_s=0.01)
    assert 1 <= free <= rec["usable_cores"] and "usable cores" in basis


def _model_answer(p50, cpu_per_wall=1.0, noise=0.01, throughput=None, torch=False):
    lat = {"n": 200, "p50": p50, "p99": p50 * 1.2, "mean": p50, "p10": p50 * 0.95, "p90": p50 * 1.1,
           "noise_ms": noise}
    return [{"ok": True, "isolated": True, "peak_rss_mb": 100.0, "torch_imported": torch, "result": {
        "latency_ms": lat, "throughput_ips": throughput or 1000.0 / p50 * 0.8, "wall_s": 2.0,
        "contention": _rec(cpu_per_wall=cpu_per_wall, share=None, others=None),
        "framework": "fake", "init": "checkpoint:" + str(BENCH_REPO / "runs" / "t" / "best.pt"), "arch": "x",
        "input_size": [224, 224], "size_mb": 6.0, "size_basis": "fake", "threads": 1}}]


def _assembled(**over):
    results = {"teacher_paper": _model_answer(350.0, torch=True), "teacher_offline": _model_answer(22.0, torch=True),
               "student_torch": _model_answer(3.6, torch=True), "student_onnx_fp32": _model_answer(1.10),
               "student_onnx_fp32_cam": _model_answer(1.08, throughput=777.0)}
    results.update(over)
    inp = Inputs(student=BENCH_REPO / "models" / "weights" / "busi_student.onnx", student_source="bundled",
                 student_trained=True, int8=Path("/tmp/x/student_int8.onnx"), int8_source="given",
                 teacher_checkpoint=Path("/home/someone/work/runs/busi_teacher_offline/best.pt"), samples=[],
                 shared_dir=None, shared_videos=[], key_clip=None)
    rep = assemble(inp, PLANS["quick"], {"models"}, results, {})
    rep.update(schema=1, command="sonolens bench --quick", mode="quick", date="2026-01-01T00:00:00+00:00",
               duration_s=60.0, machine={"cpu_model": "cpu", "logical_cores": 2, "usable_cores": 2, "ram_gb": 8.0,
                                         "simd": [], "loadavg_start": [2.3], "loadavg_end": [2.5]},
               versions={"python": "3"}, student={"path": "models/weights/busi_student.onnx", "source": "bundled",
                                                  "trained": True, "int8_path": "student_int8.onnx",
                                                  "int8_source": "given"}, plots={})
    rep.update(headline(rep))
    return rep, render_markdown(rep)


def test_contended_figures_are_flagged_in_the_report_and_their_ratios_withheld():
    rep, md = _assembled(teacher_paper=_model_answer(2152.0, cpu_per_wall=0.3, torch=True),
                         student_torch=_model_answer(511.0, cpu_per_wall=0.2, torch=True))
    assert contended(rep["models"]["teacher_paper"]) and contended(rep["models"]["student_torch"])
    assert not contended(rep["models"]["student_onnx_fp32_cam"])
    assert rep["teacher_over_student"] is None and rep["ratios"]["teacher_over_student_torch"] is None
    assert "teacher_over_student" in rep["ratios"]["withheld"]
    assert rep["offline_teacher_over_student"] == pytest.approx(22.0 / 1.08)  # both sides clean: a result
    assert "2152" not in md and "511" not in md and "1992" not in md  # neither the figures nor their ratios
    assert md.count(NOT_A_RESULT) >= 4
    assert "## Contention" in md and "2 figure(s)" in md and "0.30 CPU-s per wall-s" in md


def test_a_clean_report_says_so_and_prints_the_figures():
    rep, md = _assembled()
    assert rep["contended"] == [] and f"| {NOT_A_RESULT}" not in md
    assert "None detected" in md
    assert fmt(rep["teacher_over_student"], 1) + "×" in md


def test_a_contended_headline_figure_is_not_counted_against_its_target():
    rep, md = _assembled(student_onnx_fp32_cam=_model_answer(6.5, cpu_per_wall=0.2))
    t = rep["targets"]["model_forward_p50_ms"]
    assert rep["model_forward_p50_ms"] is None and t["pass"] is None and t["contended"] and t["measured"] == 6.5
    assert "not a result (contended)" in md


def test_throughput_is_measured_and_differences_within_noise_are_not_claimed():
    rep, md = _assembled()
    assert rep["ratios"]["student_throughput_ips"] == 777.0  # calls / wall time, not 1000 / p50 (926)
    assert "777.0 images/s (measured" in md and "925.9" not in md
    # 1.08 vs 1.10 ms with ±0.01 ms of noise each: within the band (±0.014)? no: 0.02 > 0.014 -> measurable
    d = difference({"p50": 1.10, "noise_ms": 0.01}, {"p50": 1.08, "noise_ms": 0.01})
    assert d["measurable"] is True and d["diff_ms"] == pytest.approx(-0.02)
    d = difference({"p50": 1.10, "noise_ms": 0.05}, {"p50": 1.08, "noise_ms": 0.05})
    assert d["measurable"] is False and d["noise_ms"] == pytest.approx(0.0707, abs=1e-3)


def test_the_cam_branch_within_noise_reads_no_measurable_difference():
    from sonolens.bench.report import _cam_extra_sentence

    text = _cam_extra_sentence(difference({"p50": 1.10, "noise_ms": 0.05}, {"p50": 1.08, "noise_ms": 0.05}))
    assert "no measurable difference (±0.07 ms)" in text and "adds" not in text
    assert "adds 0.40 ms" in _cam_extra_sentence(difference({"p50": 1.1, "noise_ms": 0.01},
                                                            {"p50": 1.5, "noise_ms": 0.01}))


def test_noise_band_comes_from_block_medians_of_the_repeats():
    assert noise_ms([1.0] * 9) is None  # fewer than 2 a block
    assert noise_ms([1.0] * 10 + [2.0] * 10 + [1.0] * 30) == pytest.approx(0.5)


def test_report_prints_no_machine_paths():
    rep, md = _assembled()
    assert rep["models"]["teacher_offline"]["checkpoint"] == "best.pt"  # outside the repository: the name only
    assert rep["models"]["student_onnx_fp32"]["file"] == "models/weights/busi_student.onnx"  # inside: relative
    assert "/home/someone" not in md and "/tmp/x" not in md and str(BENCH_REPO) not in md
    assert "/home/someone" not in str(rep) and str(BENCH_REPO) not in str(rep)
    assert display_path(BENCH_REPO / "runs" / "a" / "best.pt") == "runs/a/best.pt"
    assert display_path("/somewhere/else/best.pt") == "best.pt"
    assert display_path(BENCH_REPO.parent / "shared" / "videos") == "../shared/videos"


# --------------------------------------------------------------------------------------------------------
# Soak: memory growth after warm-up (a fake clock: samples given as (seconds, MB))
# --------------------------------------------------------------------------------------------------------
def test_rss_growth_after_warmup_from_samples():
    samples = [(0.0, 50.0), (10.0, 120.0)] + [(20.0 + 10 * i, 130.0 + 0.1 * i) for i in range(20)]
    g = rss_growth(samples, warmup_s=20.0)
    assert g["samples_after_warmup"] == 20 and g["peak_mb"] == pytest.approx(131.9)
    assert g["start_mb"] == pytest.approx(130.1) and g["end_mb"] == pytest.approx(131.8)
    assert g["growth_mb"] == pytest.approx(1.7) and g["slope_mb_per_min"] == pytest.approx(0.6)
    assert rss_growth([(0.0, 50.0)], warmup_s=1.0)["growth_mb"] is None


@pytest.mark.slow
def test_a_two_second_soak_reports_memory_and_drops(student_pair, tmp_path):
    student, int8 = student_pair
    out = tmp_path / "soak"
    argv = ["--smoke", "--sections", "soak", "--soak", str(2 / 60), "--out-dir", str(out), "--student",
            str(student), "--student-int8", str(int8)]
    assert cli_main(argv) == 0
    rep = json.loads((out / "benchmarks" / "bench.json").read_text())
    sk = rep["soak"]
    for k in ("minutes", "ran_s", "frames_in", "frames_processed", "frames_dropped", "dropped_per_min", "fps_in",
              "capture_to_result_ms", "memory", "rss_mb", "contention", "counts_for_target"):
        assert k in sk, k
    assert sk["frames_in"] > 0 and len(sk["rss_mb"]) >= 2 and sk["counts_for_target"] is False
    for k in ("growth_mb", "slope_mb_per_min", "peak_mb", "start_mb", "end_mb", "warmup_s"):
        assert k in sk["memory"], k
    assert "soak_rss_growth_mb" in rep["targets"] and "soak_dropped" in rep["targets"]
    md = (out / "BENCHMARKS.md").read_text()
    assert "## 8. Soak" in md and render_markdown(rep) == md


def test_rendering_needs_only_the_report():
    """``BENCHMARKS.md`` renders from the saved JSON alone: the renderer imports none of the planning and running
    steps (plan, inputs, jobs, runner, assemble), so a report can be re-rendered without them."""
    code = ("import sys, sonolens.bench.report; "
            "print(sorted(m for m in sys.modules if m.startswith('sonolens.bench.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent)
    assert proc.returncode == 0, proc.stderr
    loaded = {m.rsplit(".", 1)[1] for m in json.loads(proc.stdout.replace("'", '"'))}
    assert loaded <= {"report", "cells", "plots", "entries"}, loaded


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
    out = tmp_path / "not" / "yet"  # --out-dir is created
    argv = ["--smoke", "--out-dir", str(out), "--student", str(student), "--student-int8", str(int8)]
    assert cli_main(argv) == 0
    rep = json.loads((out / "benchmarks" / "bench.json").read_text())
    md = (out / "BENCHMARKS.md").read_text()

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
    # measured whether or not ../shared exists, unless flagged as contended (this machine may be busy)
    withheld = rep["ratios"]["withheld"]
    assert rep["teacher_over_student"] is not None or "teacher_over_student" in withheld
    assert rep["offline_teacher_over_student"] is not None or "offline_teacher_over_student" in withheld
    assert rep["gradcam_over_fused"] is not None or rep["contended"]
    assert rep["model_forward_p50_ms"] is not None or rep["targets"]["model_forward_p50_ms"].get("contended")
    assert rep["run_peak_rss_mb"] is not None
    for key in FLAT_KEYS:
        if rep[key] is not None:
            assert fmt(rep[key], HEADLINE_DIGITS[key]) in md, key
        elif rep["targets"].get(key, {}).get("contended"):
            assert NOT_A_RESULT in md

    # every model row measured, with the numbers the table needs (or flagged) and its CPU record
    lite0 = {f"student2_tf_efficientnet_lite0_{size}_{kind}_cam" for size in (160, 224) for kind in ("fp32", "int8")}
    assert set(rep["models"]) == {"teacher_paper", "teacher_offline", "student_torch", "student_onnx_fp32",
                                  "student_onnx_fp32_cam", "student_onnx_int8", "student_onnx_int8_cam"} | lite0
    for name in lite0:  # the second student's rows: its own file, at its own input size
        assert rep["models"][name]["input_size"] == [int(name.split("_")[-3])] * 2 and rep["models"][name]["file"]
    for name, m in rep["models"].items():
        assert m["measured"], (name, m.get("error"))
        assert m["latency_ms"]["p50"] > 0 and m["size_mb"] > 0 and m["peak_rss_mb"] > 0
        assert {"cpu_per_wall", "run_delay_share", "contended", "reasons"} <= set(m["contention"]), name
        if contended(m):
            assert any(m["label"] in line and NOT_A_RESULT in line for line in md.splitlines()), name
        else:
            assert fmt(m["latency_ms"]["p50"], 2) in md
    for name in ("student_onnx_fp32", "student_onnx_fp32_cam", "student_onnx_int8", "student_onnx_int8_cam", *lite0):
        assert rep["models"][name]["torch_imported"] is False, name  # the ONNX path runs without torch

    # pipeline: the key clip ran all four modes without errors, the naive way ran, memory was measured
    key = rep["pipeline"]["key"]
    for mode in ("max_rate_cam", "max_rate_no_cam", "realtime_cam", "realtime_no_cam"):
        assert key[mode]["frames_processed"] > 0 and key[mode]["error"] is None, mode
    assert key["naive_top"]["fps"] > 0 and key["naive_all"]["fps"] > 0
    assert rep["run_memory"]["torch_imported"] is False
    assert rep["scaling"]["frame_size"] and rep["scaling"]["streams"]
    assert len(rep["scaling"]["streams"][-1]["max_rate_cam"]["per_stream"]) == rep["scaling"]["streams"][-1]["streams"]

    # the recording section ran (tiny in smoke mode) and reports what a 4K run reports
    rec = rep["recording_4k"]
    assert rec["ok"], rec
    for k in ("source_fps", "fps_in", "fps_in_over_source", "recorder_dropped", "recorder_frames_written",
              "pipeline_dropped", "peak_rss_mb", "stop_s", "contention"):
        assert k in rec, k
    assert rec["frames_in"] > 0 and rec["torch_imported"] is False
    assert "## 7. Recording" in md
    assert "soak" not in rep  # only with --soak
    assert [row["streams"] for row in rep["multi_stream"]["rows"]] == list(PLANS["smoke"].multi_counts)
    assert "## 9. Many streams in one process" in md  # the section in detail: test_the_streams_section_runs_alone
    assert "## 10. An archive on Dask" in md and [row["setup"] for row in rep["batch"]["rows"]] == [
        "one_process", "local_cluster", "scheduler"]  # in detail: test_the_batch_section_runs_alone_in_smoke_mode

    # no machine paths outside the command line
    body = md.replace(rep["command"], "")
    assert str(tmp_path) not in body and str(REPO) not in body

    # plots exist and are linked; the Markdown is a pure function of the JSON
    assert (out / "benchmarks" / "latency_cdf.png").stat().st_size > 0
    assert "benchmarks/latency_cdf.png" in md
    assert render_markdown(rep) == md


@pytest.mark.slow
def test_the_streams_section_runs_alone_in_smoke_mode(student_pair, tmp_path):
    """``--sections streams``: N = 1, 2 tiny realtime streams in one process and in N processes; every figure the
    table needs (or its contention flag), the verdict from those rows, and the Markdown from the JSON alone."""
    student, int8 = student_pair
    out = tmp_path / "streams"
    argv = ["--smoke", "--sections", "streams", "--out-dir", str(out), "--student", str(student), "--student-int8",
            str(int8)]
    assert cli_main(argv) == 0
    rep = json.loads((out / "benchmarks" / "bench.json").read_text())
    md = (out / "BENCHMARKS.md").read_text()
    assert rep["sections"] == ["streams"] and rep["models"] == {} and "pipeline" not in rep
    ms = rep["multi_stream"]
    assert [row["streams"] for row in ms["rows"]] == [1, 2] and (ms["source"]["width"], ms["source"]["height"]) == (
        128, 96)
    for row in ms["rows"]:
        for side in ("one_process", "processes"):
            e = row[side]
            assert e["error"] is None, (row["streams"], side, e)
            assert len(e["per_stream"]) == row["streams"] and e["frames_processed"] > 0
            assert e["frames_in"] == sum(s["frames_in"] for s in e["per_stream"])
            assert e["capture_to_result_ms"]["pooled"]["n"] == e["frames_processed"]  # every frame, from the CSVs
            assert {"cpu_per_wall", "run_delay_share", "others_busy_cores", "contended", "reasons"} <= set(
                e["contention"])
            assert e["holds"] == stream_holds(e) and e["peak_rss_mb"] > 0
        batches = row["one_process"]["batches"]["calls_by_size"]
        assert sum(int(size) * calls for size, calls in batches.items()) == row["one_process"]["frames_processed"]
        assert row["one_process"]["threads"] == 1 and row["processes"]["threads"] == 1
    for side in ("one_process", "processes"):
        assert ms["verdict"][side] == largest_holding(ms["rows"], side)
    t = rep["targets"]["streams_one_process_max"]
    assert t["pass"] is None  # 128×96 footage (or contended): never counted against the 960×720 target
    assert "streams_processes_max" in rep
    assert "## 9. Many streams in one process" in md and render_markdown(rep) == md
    assert ("multi_stream" in rep["plots"]) == (out / "benchmarks" / "multi_stream.png").is_file()


@pytest.mark.slow
def test_the_batch_section_runs_alone_in_smoke_mode(student_pair, tmp_path):
    """``--sections batch``: three simulated sweeps in one process, through ``sonolens batch`` on its LocalCluster and
    on a scheduler + 2 workers started for it; the same frames each way, every figure the table needs (or its flag),
    the Markdown from the JSON alone, and nothing of the model's predictions in the report."""
    pytest.importorskip("distributed")
    student, int8 = student_pair
    out = tmp_path / "batch"
    argv = ["--smoke", "--sections", "batch", "--out-dir", str(out), "--student", str(student), "--student-int8",
            str(int8)]
    assert cli_main(argv) == 0
    text = (out / "benchmarks" / "bench.json").read_text()
    rep = json.loads(text)
    md = (out / "BENCHMARKS.md").read_text()
    assert rep["sections"] == ["batch"] and rep["models"] == {} and "pipeline" not in rep
    b = rep["batch"]
    assert b["archive"].startswith("3 simulated sweeps") and b["full_set"] is False and "skipped" not in b
    rows = {row["setup"]: row for row in b["rows"]}
    assert list(rows) == ["one_process", "local_cluster", "scheduler"]
    for setup, row in rows.items():
        assert row["error"] is None and row["failed"] == 0, (setup, row)
        assert row["recordings"] == 3 and row["frames"] == rows["one_process"]["frames"] > 0
        assert row["wall_s"] > 0 and row["fps"] == pytest.approx(row["frames"] / row["wall_s"])
        assert row["cam"] is False and row["queue"] == "block"
        assert {"cpu_per_wall", "run_delay_share", "others_busy_cores", "contended", "reasons"} <= set(
            row["contention"])
    assert rows["one_process"]["threads"] == 0  # ONNX Runtime's default, as 'sonolens run' has it
    assert rows["local_cluster"]["threads"] == rows["scheduler"]["threads"] == 1 and rows["scheduler"]["workers"] == 2
    assert rows["local_cluster"]["workers"] >= 1 and 0 < rows["local_cluster"]["cluster_s"] < rows["local_cluster"][
        "wall_s"]
    assert rows["scheduler"]["workers_start_s"] > 0 and rows["scheduler"]["lost"] == 0
    for name in ("batch_local_over_one_process", "batch_scheduler_over_local"):
        assert rep["targets"][name]["pass"] is None  # simulated clips (or contended): never counted
    assert "score" not in text and "mean_p_" not in text and "top_class" not in text
    assert "## 10. An archive on Dask" in md and render_markdown(rep) == md


def test_a_batch_run_without_the_extra_skips_the_section_with_a_note(student_pair, tmp_path, monkeypatch):
    import sonolens.bench.inputs as bench_inputs

    monkeypatch.setattr(bench_inputs, "missing_modules", lambda names=(): ["distributed"])
    student, int8 = student_pair
    out = tmp_path / "nobatch"
    assert cli_main(["--smoke", "--sections", "batch", "--out-dir", str(out), "--student", str(student),
                     "--student-int8", str(int8)]) == 0
    rep = json.loads((out / "benchmarks" / "bench.json").read_text())
    assert "no module distributed" in rep["batch"]["skipped"] and "rows" not in rep["batch"]
    assert any(n.startswith("The batch section is skipped: the 'batch' extra") for n in rep["notes"])
    md = (out / "BENCHMARKS.md").read_text()
    assert "Skipped: the 'batch' extra is not installed (no module distributed)" in md and render_markdown(rep) == md


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
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for argv, words in ((["--sections", "models,nope"], "unknown section(s) nope"),
                        (["--torch-threads", "-1"], "--torch-threads must be >= 0"),
                        (["--soak", "0"], "--soak must be a positive number of minutes"),
                        (["--sections", "soak"], "--sections soak needs --soak MINUTES"),
                        (["--out-dir", str(blocker / "sub")], "cannot be created"),
                        (["--out-dir", str(blocker)], "is not a folder")):
        assert main(["bench", "--smoke", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sonolens: error: ") and words in err[0], err


def test_a_run_writes_to_out_unless_told_to_update_the_committed_report(tmp_path, monkeypatch):
    """At c28fbd5 ``sonolens bench --quick`` from the repository root replaced the committed BENCHMARKS.md."""
    from sonolens.bench.cli import DEFAULT_OUT, REPO, make_out_dir, parser

    monkeypatch.chdir(tmp_path)
    assert make_out_dir(None) == Path(DEFAULT_OUT) and (tmp_path / DEFAULT_OUT).is_dir()
    assert make_out_dir(None, committed=True) == REPO
    with pytest.raises(SystemExit):  # one or the other
        parser().parse_args(["--out-dir", "x", "--update-committed"])
    proc = subprocess.run([sys.executable, "-m", "sonolens", "bench", "--quick", "--update-committed"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "not with --quick" in proc.stderr


def test_a_failed_threads_run_is_an_error_row_and_the_report_still_renders():
    """A ``threads:N`` job that failed becomes ``{"error": ...}`` like every other table row (it used to crash the
    assembly after the whole run)."""
    from sonolens.bench.assemble import assemble
    from sonolens.bench.plan import PLANS, Inputs
    from sonolens.bench.report import render_markdown

    repo = Path(__file__).resolve().parents[2]
    inp = Inputs(student=Path("s.onnx"), student_source="bundled", student_trained=True, int8=Path("q.onnx"),
                 int8_source="given", teacher_checkpoint=None, samples=[], shared_dir=None, shared_videos=[],
                 key_clip=None, standin_clip=repo / "assets" / "sample_videos" / "sweep.mp4")
    results = {"threads:1": [{"ok": False, "error": "RuntimeError: boom", "isolated": True}]}
    rep = assemble(inp, PLANS["quick"], {"scaling"}, results, {})
    rows = {r["threads"]: r["max_rate_cam"] for r in rep["scaling"]["threads"]}
    assert rows[1] == {"error": "RuntimeError: boom"}
    committed = json.loads((repo / "benchmarks" / "bench.json").read_text(encoding="utf-8"))
    render_markdown({**committed, "scaling": {**committed["scaling"], "threads": rep["scaling"]["threads"]}})


def test_the_reported_command_names_no_machine_path():
    from sonolens.bench.cli import shown_command
    from sonolens.bench.plan import REPO

    argv = ["--sections", "streams", "--out-dir", str(REPO / "docs" / "x"), "--student=/tmp/abc/s.onnx", "--quick"]
    assert shown_command(argv) == "sonolens bench --sections streams --out-dir docs/x --student=s.onnx --quick"


@pytest.mark.slow
def test_a_relative_student_path_is_measured_not_failed(student_pair, tmp_path, monkeypatch):
    """--student and --student-int8 given relative to the caller's folder: the measurements (run in their own
    working folders) still find the files — before, every student row failed with 'model file … not found'."""
    student, int8 = student_pair
    monkeypatch.chdir(student.parent)
    out = tmp_path / "rel"
    argv = ["--smoke", "--sections", "models", "--out-dir", str(out), "--student", student.name,
            "--student-int8", os.path.relpath(int8, student.parent)]
    assert cli_main(argv) == 0
    rep = json.loads((out / "benchmarks" / "bench.json").read_text())
    for key in ("student_onnx_fp32", "student_onnx_fp32_cam", "student_onnx_int8", "student_onnx_int8_cam"):
        assert not rep["models"][key].get("error"), rep["models"][key]
