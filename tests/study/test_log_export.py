"""Study log (writer, tolerant reader) and ``sonolens study export`` — no Qt, no model."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest
from conftest import assert_one_line_error, sonolens_proc

from sonolens.pipeline.errors import ConfigError
from sonolens.study.cli import cli_main
from sonolens.study.export import analyse, cohen_kappa, export, parse_onsets
from sonolens.study.log import StudyLog, check_new_log, read_log, read_sessions

CLASSES = ["normal", "benign", "malignant"]


def _write_log(path, calls, condition="ai"):
    """A hand-made session: frames 0..9 shown at 0.1 s steps, then the given calls as (t_s, frame, key, model_top)."""
    lines = [{"type": "header", "participant": "p7", "condition": condition, "source": "clip.mp4",
              "model": {"arch": "x"}, "class_names": CLASSES, "call_keys": {"1": "normal", "2": "benign",
                                                                             "3": "malignant"},
              "start_time": "2025-01-01T00:00:00+00:00", "start_unix": 0.0, "t0_ns": 0, "sonolens_version": "0"}]
    for i in range(10):
        lines.append({"type": "frame", "index": i, "pts_s": i / 30, "wall_time": 100 + i * 0.1, "t_s": i * 0.1,
                      "probs": [0.2, 0.5, 0.3], "top_class": 1, "shown": condition == "ai",
                      "capture_to_result_ms": 10.0, "capture_to_pixels_ms": 20.0 + i})
    for t, frame, key, top in calls:
        lines.append({"type": "event", "kind": "call", "frame_index": frame, "wall_time": 100 + t, "t_s": t,
                      "key": key, "label": CLASSES[key - 1], "class_index": key - 1, "model_top": top,
                      "model_label": None if top is None else CLASSES[top]})
    lines.append({"type": "event", "kind": "flag", "frame_index": 5, "wall_time": 101.0, "t_s": 1.0})
    lines.append({"type": "event", "kind": "freeze", "frame_index": 6, "wall_time": 101.1, "t_s": 1.1})
    lines.append({"type": "event", "kind": "unfreeze", "frame_index": 6, "wall_time": 101.2, "t_s": 1.2})
    lines.append({"type": "end", "wall_time": 102.0, "t_s": 2.0, "frames": 10, "events": len(calls) + 3})
    path.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    return path


def test_cohen_kappa_known_values():
    # textbook example: 2x2 table [[20, 5], [10, 15]] -> po = 0.7, pe = 0.5, kappa = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) != cohen_kappa(["a", "a"], ["a", "a"])  # NaN: chance agreement 1


def test_writer_reader_roundtrip_and_end_record(tmp_path):
    p = tmp_path / "s.jsonl"
    log = StudyLog(p, participant="p1", condition="blinded", source="x.mp4", model={"arch": "m"},
                   class_names=CLASSES, call_labels=CLASSES)
    log.frame(0, pts_s=0.0, probs=[0.1, 0.2, 0.7], top_class=2, shown=False, capture_to_result_ms=12.5,
              capture_to_pixels_ms=float("nan"))
    label = log.call(3, 0, model_top=2, model_probs=[0.1, 0.2, 0.7], class_names=CLASSES)
    log.event("flag", 0)
    log.close(frames_displayed=1)
    assert label == "malignant"
    recs = read_log(p)
    assert recs.complete and not recs.torn_last_line and recs.bad_lines == 0
    assert recs.header["participant"] == "p1" and recs.header["condition"] == "blinded"
    assert recs.header["sonolens_version"] and recs.header["start_time"]
    assert recs.frames[0]["probs"] == [0.1, 0.2, 0.7] and recs.frames[0]["shown"] is False
    assert recs.frames[0]["capture_to_pixels_ms"] is None  # NaN is not JSON: stored as null
    assert [e["kind"] for e in recs.events] == ["call", "flag"]
    assert recs.events[0]["model_label"] == "malignant"


def test_every_line_is_on_disk_before_close(tmp_path):
    p = tmp_path / "s.jsonl"
    log = StudyLog(p, participant="p1", condition="ai", source="x", model=None)
    for i in range(5):
        log.frame(i, pts_s=None, probs=None, top_class=None, shown=False, capture_to_result_ms=1.0)
    # not closed: another reader must already see all of it (flushed per line)
    recs = read_log(p)
    assert len(recs.frames) == 5 and not recs.complete
    log.close()


def test_reader_tolerates_torn_last_line(tmp_path):
    p = _write_log(tmp_path / "s.jsonl", [(1.5, 7, 2, 1)])
    text = p.read_text()
    p.write_text(text + '{"type": "frame", "index": 10, "pro')  # killed mid-write
    recs = read_log(p)
    assert recs.torn_last_line and len(recs.frames) == 10 and recs.bad_lines == 0


def test_reader_rejects_non_log(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"type": "frame", "index": 0}\n')
    with pytest.raises(ConfigError):
        read_log(p)
    with pytest.raises(ConfigError):
        read_log(tmp_path / "missing.jsonl")


def test_bad_condition_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        StudyLog(tmp_path / "s.jsonl", participant="p", condition="sometimes", source="x", model=None)


def test_export_agreement_kappa_and_reaction_times(tmp_path):
    # calls: (t, frame, key, model_top). Clinician: benign, malignant, benign, normal; model: benign, benign,
    # benign, normal -> 3 of 4 agree.
    calls = [(0.5, 5, 2, 1), (1.3, 9, 3, 1), (1.6, 9, 2, 1), (1.9, 9, 1, 0)]
    p = _write_log(tmp_path / "s.jsonl", calls)
    rows, s = analyse(read_log(p), onsets=[3])
    assert s["calls"] == 4 and s["calls_with_model"] == 4
    assert s["agreement"] == pytest.approx(0.75)
    expected_kappa = cohen_kappa(["benign", "malignant", "benign", "normal"], ["benign", "benign", "benign", "normal"])
    assert s["cohen_kappa"] == pytest.approx(expected_kappa)
    assert 0 < expected_kappa < 1
    assert s["flags"] == 1 and s["freezes"] == 1
    call_rows = [r for r in rows if r["kind"] == "call"]
    # previous call (first: from the first displayed frame at t=0)
    assert [r["rt_prev_s"] for r in call_rows] == pytest.approx([0.5, 0.8, 0.3, 0.3])
    # from the called frame's first appearance (frame 5 at 0.5 s, frame 9 at 0.9 s)
    assert [r["rt_frame_s"] for r in call_rows] == pytest.approx([0.0, 0.4, 0.7, 1.0])
    # from the lesion onset at frame 3 (shown at 0.3 s)
    assert [r["rt_onset_s"] for r in call_rows] == pytest.approx([0.2, 1.0, 1.3, 1.6])
    assert [r["agree"] for r in call_rows] == [1, 0, 1, 1]
    assert s["capture_to_pixels_ms"]["p50"] == pytest.approx(24.5)
    # the same onset given as source time: frame 3 has pts 0.1 s
    rows_s, _ = analyse(read_log(p), onsets=parse_onsets("0.1s"))
    assert [r["rt_onset_s"] for r in rows_s if r["kind"] == "call"] == pytest.approx([0.2, 1.0, 1.3, 1.6])


def test_export_cli_writes_csv_and_summary(tmp_path, capsys):
    a = _write_log(tmp_path / "a.jsonl", [(0.5, 5, 2, 1), (1.0, 9, 1, 1)])
    b = _write_log(tmp_path / "b.jsonl", [(0.7, 6, 2, None)], condition="off")
    out, summ = tmp_path / "out.csv", tmp_path / "sum.json"
    assert cli_main(["export", str(a), str(b), "--out", str(out), "--summary", str(summ)]) == 0
    printed = capsys.readouterr().out
    assert "agreement with model 50%" in printed and "p7 [off]" in printed
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 10 + 2 + 1 + 2 * 3  # frames, calls, flag/freeze/unfreeze per log
    assert {r["condition"] for r in rows} == {"ai", "off"}
    assert "p_benign" in rows[0]
    frames_a = [r for r in rows if r["log"] == "a.jsonl" and r["record"] == "frame"]
    assert frames_a[0]["p_benign"] == "0.5" and frames_a[0]["top_label"] == "benign"
    summaries = json.loads(summ.read_text())
    assert summaries[1]["agreement"] is None and summaries[1]["calls_with_model"] == 0


def test_export_module_does_not_import_qt(tmp_path):
    import subprocess

    code = ("import sys, sonolens.study.export, sonolens.study.log; "
            "sys.exit(1 if any(m.startswith('PyQt6') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_export_missing_output_folder(tmp_path):
    a = _write_log(tmp_path / "a.jsonl", [])
    with pytest.raises(ConfigError):
        export([a], tmp_path / "nope" / "out.csv")


# -- frames without a prediction (#12) ----------------------------------------------------------------------------
def test_export_excludes_calls_on_frames_without_a_prediction(tmp_path, capsys):
    # four calls: two on frames with a prediction (both agree), two that disagree with the model's (hidden) top
    # class on a frame outside the domain and on one without an image: counted with them, agreement would be 50 %
    p = _write_log(tmp_path / "s.jsonl", [(0.5, 5, 2, 1), (0.8, 7, 3, 1), (1.3, 8, 3, 1), (1.6, 9, 1, 0)])
    recs = [json.loads(line) for line in p.read_text().splitlines()]
    states = {7: "out_of_domain", 8: "no_image"}  # the frames the 2nd and 3rd calls were made on
    for r in recs:
        if r["type"] == "frame":
            r["state"] = states.get(r["index"], "ok")
            r["ood_score"] = 9.0 if r["index"] == 7 else 0.1
            r["shown"] = r["state"] == "ok"
        if r.get("kind") == "call":
            r["model_state"] = states.get(r["frame_index"], "ok")
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows, s = analyse(read_log(p))
    assert s["calls"] == 4 and s["calls_with_model"] == 2
    assert s["calls_without_prediction"] == {"out_of_domain": 1, "no_image": 1}
    assert s["agreement"] == pytest.approx(1.0)
    assert s["cohen_kappa"] == pytest.approx(1.0)
    assert s["frames_by_state"] == {"ok": 8, "out_of_domain": 1, "no_image": 1}
    call_rows = [r for r in rows if r["kind"] == "call"]
    assert [r["agree"] for r in call_rows] == [1, "", "", 1]
    assert [r["model_state"] for r in call_rows] == ["ok", "out_of_domain", "no_image", "ok"]
    frame_rows = [r for r in rows if r["record"] == "frame"]
    assert frame_rows[7]["state"] == "out_of_domain" and frame_rows[7]["ood_score"] == 9.0
    out = tmp_path / "o.csv"
    assert cli_main(["export", str(p), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 calls on frames without a prediction (out_of_domain 1, no_image 1) excluded from agreement and kappa" \
        in printed
    assert "without a prediction: out_of_domain 1, no_image 1" in printed


# -- one session per log (#14) ------------------------------------------------------------------------------------
def _session_lines(participant, condition, n_frames, t0=0.0, end=True):
    lines = [{"type": "header", "participant": participant, "condition": condition, "source": "clip.mp4",
              "model": None if condition == "off" else {"arch": "x"}, "class_names": CLASSES,
              "call_keys": {"1": "normal", "2": "benign", "3": "malignant"}, "start_time": "2025-01-01T00:00:00",
              "start_unix": t0, "t0_ns": 0, "sonolens_version": "0"}]
    for i in range(n_frames):
        lines.append({"type": "frame", "index": i, "pts_s": i / 30, "wall_time": t0 + i * 0.1, "t_s": i * 0.1,
                      "probs": None if condition == "off" else [0.2, 0.5, 0.3],
                      "top_class": None if condition == "off" else 1, "shown": condition == "ai",
                      "capture_to_result_ms": 10.0})
    lines.append({"type": "event", "kind": "call", "frame_index": 1, "wall_time": t0 + 0.2, "t_s": 0.2, "key": 2,
                  "label": "benign", "class_index": 1, "model_top": None, "model_label": None})
    if end:
        lines.append({"type": "end", "wall_time": t0 + 1, "t_s": 1.0, "frames": n_frames, "events": 1})
    return "".join(json.dumps(r) + "\n" for r in lines)


def test_export_splits_sessions_appended_to_one_log_and_warns_about_torn_lines(tmp_path, capsys):
    # what an older sonolens left: P07 (ai) killed mid-line, then P09 (off) appended to the same --log, its header
    # glued to the torn line, ending normally
    first = _session_lines("P07", "ai", 5, end=False)
    p = tmp_path / "shared.jsonl"
    p.write_text(first + '{"type": "frame", "index": 5, "pro' + _session_lines("P09", "off", 3, t0=50.0))
    out = tmp_path / "o.csv"
    assert cli_main(["export", str(p), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = [ln for ln in captured.err.splitlines() if ln.startswith("sonolens: warning:")]
    assert any("holds 2 sessions (P07 [ai], P09 [off])" in w for w in warnings), captured.err
    torn_line = first.count("\n") + 1
    assert any(f"line {torn_line} is torn (session 1" in w for w in warnings), captured.err
    assert "P07 [ai] shared.jsonl (session 1 of 2): 5 frames shown" in captured.out
    assert "P09 [off] shared.jsonl (session 2 of 2): 3 frames shown" in captured.out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    by_session = {s: {(r["participant"], r["condition"]) for r in rows if r["session"] == s} for s in ("1", "2")}
    assert by_session == {"1": {("P07", "ai")}, "2": {("P09", "off")}}
    s1, s2 = read_sessions(p)
    assert (s1.complete, s1.torn_last_line, len(s1.frames)) == (False, True, 5)
    assert (s2.complete, s2.torn_last_line, len(s2.frames), s2.header["participant"]) == (True, False, 3, "P09")
    with pytest.raises(ConfigError, match="holds 2 sessions"):
        read_log(p)  # a reader of one session must not take the second one for part of the first


def test_export_of_two_whole_sessions_in_one_file(tmp_path, capsys):
    p = tmp_path / "shared.jsonl"
    p.write_text(_session_lines("P07", "ai", 4) + _session_lines("P09", "off", 6, t0=50.0))
    summaries = export([p], tmp_path / "o.csv")
    assert [(s["participant"], s["condition"], s["complete"], s["frames_displayed"]) for s in summaries] == [
        ("P07", "ai", True, 4), ("P09", "off", True, 6)]


def test_a_log_that_holds_a_session_is_refused_and_left_alone(tmp_path):
    p = tmp_path / "s.jsonl"
    log = StudyLog(p, participant="P07", condition="ai", source="x", model=None)
    log.close()
    before = p.read_bytes()
    with pytest.raises(ConfigError, match="already holds a session .participant P07, condition ai"):
        StudyLog(p, participant="P09", condition="off", source="x", model=None)
    with pytest.raises(ConfigError, match="one session"):
        check_new_log(p)
    assert p.read_bytes() == before
    empty = tmp_path / "empty.jsonl"
    empty.touch()  # e.g. made by mktemp: holds no session
    check_new_log(empty)
    StudyLog(empty, participant="P09", condition="off", source="x", model=None).close()
    assert read_log(empty).header["participant"] == "P09"


def test_view_refuses_the_log_of_an_earlier_session_in_one_line(tmp_path):
    p = tmp_path / "s.jsonl"
    StudyLog(p, participant="P07", condition="ai", source="x", model=None).close()
    before = p.read_bytes()
    proc = sonolens_proc("view", "phantom:liver", "--study", "--participant", "P09", "--condition", "off",
                         "--log", str(p), "--exit-after-frames", "3", env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert_one_line_error(proc, "already holds a session", "P07")
    assert p.read_bytes() == before


# -- a full disk (#14) --------------------------------------------------------------------------------------------
def test_full_disk_stops_the_log_at_a_whole_line_and_keeps_room_for_the_end(tmpfs):
    p = tmpfs("16k") / "s.jsonl"
    log = StudyLog(p, participant="p1", condition="ai", source="x", model={"arch": "m"}, class_names=CLASSES)
    written = 0
    while log.error is None:
        assert written < 1000, "a 16 KiB disk never filled up"
        log.frame(written, pts_s=None, probs=[0.1, 0.2, 0.7], top_class=2, shown=True, capture_to_result_ms=1.0,
                  state="ok", ood_score=0.25)
        written += 1
    assert "No space left on device" in log.error and str(p) in log.error
    log.frame(written, pts_s=None, probs=None, top_class=None, shown=False, capture_to_result_ms=1.0)  # no-op now
    log.close(frames_displayed=written, exit_code=2)
    assert log.end_written
    recs = read_log(p)
    assert recs.complete and recs.bad_lines == 0 and not recs.torn_last_line
    assert recs.end["error"] == log.error and recs.end["exit_code"] == 2
    assert len(recs.frames) == recs.end["frames"] == log.frames == written - 1  # the line that did not fit is not
    assert recs.frames[-1]["state"] == "ok" and recs.frames[-1]["ood_score"] == 0.25


def test_a_disk_too_full_for_the_header_is_one_config_error(tmpfs):
    d = tmpfs("4k")
    (d / "filler").write_bytes(b"x" * 4096)
    with pytest.raises(ConfigError, match="cannot write study log .*No space left on device"):
        StudyLog(d / "s.jsonl", participant="p", condition="ai", source="x", model=None)
    assert not (d / "s.jsonl").exists()


def test_frame_and_call_records_name_the_still(tmp_path):
    """First-hour issue, item 6: a folder's frames and the calls on them carry the image's file."""
    p = tmp_path / "s.jsonl"
    log = StudyLog(p, participant="p1", condition="ai", source="cases/", model=None)
    log.frame(0, pts_s=0.0, probs=None, top_class=None, shown=False, capture_to_result_ms=1.0, file="b/c3.png")
    log.call(1, 0, model_top=None, file="b/c3.png")
    log.close()
    lines = [json.loads(line) for line in p.read_text().splitlines()]
    assert [rec.get("file") for rec in lines if rec.get("type") in ("frame", "event")] == ["b/c3.png", "b/c3.png"]


def test_a_log_whose_folder_vanishes_says_so_at_close(tmp_path):
    """At c28fbd5 the report said ``end_written: true`` with 237 frames while no file existed."""
    import shutil

    folder = tmp_path / "logs"
    folder.mkdir()
    log = StudyLog(folder / "s.jsonl", participant="p1", condition="ai", source="x", model=None)
    log.frame(0, pts_s=None, probs=None, top_class=None, shown=False, capture_to_result_ms=1.0)
    shutil.rmtree(folder)
    log.close()
    assert log.end_written is False and "vanished" in (log.error or "")


def test_a_log_whose_folder_vanishes_stops_within_a_sync_interval(tmp_path):
    """A long session learns of the loss at the next periodic sync, not only at its end: later records are refused
    (``frame`` counts nothing), so the viewer's after-write check ends the session."""
    import shutil
    import time

    folder = tmp_path / "logs"
    folder.mkdir()
    log = StudyLog(folder / "s.jsonl", participant="p1", condition="ai", source="x", model=None,
                   fsync_interval_s=0.05)
    log.frame(0, pts_s=None, probs=None, top_class=None, shown=False, capture_to_result_ms=1.0)
    shutil.rmtree(folder)
    deadline = time.monotonic() + 30  # a generous bound on a 0.05 s period: a hang fails, a slow machine does not
    while log.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "vanished" in (log.error or "")
    log.frame(1, pts_s=None, probs=None, top_class=None, shown=False, capture_to_result_ms=1.0)
    assert log.frames == 1
    log.close()
    assert log.end_written is False


def test_the_viewer_exits_2_when_its_study_log_vanishes(tmp_path):
    import shutil
    import subprocess
    import sys
    import time

    from conftest import NEUTRAL_CWD, REPO

    folder = tmp_path / "logs"
    folder.mkdir()
    log = folder / "s.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "view", str(REPO / "assets/sample_videos/benign.mp4"),
                             "--study", "--participant", "p", "--condition", "ai", "--log", str(log),
                             "--exit-after-frames", "90"], cwd=NEUTRAL_CWD, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the viewer ended before its log was opened"
    shutil.rmtree(folder)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "vanished" in err and "Traceback" not in err, err
