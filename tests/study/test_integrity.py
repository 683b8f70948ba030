"""The study log's integrity: one writer at a time (an advisory lock), an export that survives damaged or foreign
logs (counting what it skipped), and export outputs checked before the work and written atomically. No Qt."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, sonolens_proc

from sonolens.pipeline.errors import ConfigError
from sonolens.study import export as export_mod
from sonolens.study import log as log_mod
from sonolens.study.export import analyse, export
from sonolens.study.log import StudyLog, read_log, read_sessions

CLASSES = ["normal", "benign", "malignant"]
HEADER = {"type": "header", "participant": "P07", "condition": "ai", "source": "clip.mp4", "model": {"arch": "x"},
          "class_names": CLASSES, "call_keys": {"1": "normal", "2": "benign", "3": "malignant"},
          "start_time": "2025-01-01T00:00:00+00:00", "start_unix": 0.0, "t0_ns": 0, "sonolens_version": "0"}

needs_flock = pytest.mark.skipif(sys.platform == "win32", reason="no advisory locks (fcntl) on Windows")


def _open(path: Path, participant: str = "P07", condition: str = "ai") -> StudyLog:
    return StudyLog(path, participant=participant, condition=condition, source="x.mp4", model=None,
                    class_names=CLASSES)


# -- 1. one writer at a time --------------------------------------------------------------------------------------
@needs_flock
def test_two_writers_opening_one_file_at_once_in_one_process(tmp_path):
    """The second session starts while the first has opened the file but not yet written its header: before the lock
    both accepted, and the first to close cut off the other's lines."""
    p = tmp_path / "s.jsonl"
    refused: list[str] = []

    class First(StudyLog):
        def _open_new(self) -> int:
            fd = super()._open_new()
            with pytest.raises(ConfigError) as err:  # the other session, in the same instant
                _open(p, "P09", "off")
            refused.append(str(err.value))
            return fd

    First(p, participant="P07", condition="ai", source="x.mp4", model=None).close()
    assert len(refused) == 1 and "is being written by another session" in refused[0], refused
    assert "which has not written its header yet" in refused[0] and "\n" not in refused[0]
    (only,) = read_sessions(p)
    assert only.header["participant"] == "P07" and only.complete and not only.torn_lines


@needs_flock
def test_the_lock_is_per_open_file_and_released_at_close(tmp_path):
    import fcntl

    p = tmp_path / "s.jsonl"
    log = _open(p)
    fd = os.open(p, os.O_RDONLY)  # another open file description, in this very process
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        log.close()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free the moment the log is closed
    finally:
        os.close(fd)


@needs_flock
def test_a_session_that_fails_to_start_leaves_no_file_and_no_lock(tmp_path):
    p = tmp_path / "s.jsonl"
    with pytest.raises(TypeError):  # a header that is not JSON (a bug): raised as it is
        StudyLog(p, participant="P07", condition="ai", source="x", model=None, extra={"bad": object()})
    assert not p.exists()
    _open(p).close()  # not refused as "being written by another session"
    assert read_log(p).complete


@needs_flock
def test_a_writer_in_another_process_holds_the_log(tmp_path):
    """A session in another process that has opened (and locked) an empty file, e.g. one made by mktemp."""
    p = tmp_path / "s.jsonl"
    p.touch()
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('locked', flush=True); sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(p)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=r"is being written by another session \(which has not written"):
            _open(p, "P09", "off")
        assert p.read_bytes() == b""  # nothing written, nothing removed
    finally:
        holder.communicate("\n", timeout=30)
    _open(p, "P09", "off").close()  # the holder ended: the file is free again
    assert read_log(p).header["participant"] == "P09"


@needs_flock
def test_a_writer_that_locked_and_wrote_its_header_first_is_named(tmp_path, monkeypatch):
    """Two writers given one empty (mktemp) file: the other opens, locks and writes its header between this one's
    check that the file is empty and its lock. The refusal names the session that holds the file."""
    p = tmp_path / "s.jsonl"
    p.touch()
    check, others = log_mod.check_new_log, []

    def racing_check(path):
        check(path)
        if not others:
            others.append(None)
            others[0] = _open(p, "P07", "ai")  # opens, locks, writes its header and keeps the file
    monkeypatch.setattr(log_mod, "check_new_log", racing_check)
    with pytest.raises(ConfigError, match=r"being written by another session \(participant P07, condition ai"):
        _open(p, "P09", "off")
    others[0].close()
    (only,) = read_sessions(p)
    assert only.header["participant"] == "P07" and only.complete


@needs_flock
def test_a_session_written_between_open_and_lock_is_refused(tmp_path, monkeypatch):
    """The other writer wrote a whole session (and released its lock) between this one's check and its lock: the
    lock is free, but the file is no longer empty."""
    p = tmp_path / "s.jsonl"
    p.touch()
    check, raced = log_mod.check_new_log, []

    def racing_check(path):
        check(path)
        if not raced:
            raced.append(True)
            _open(p, "P07", "ai").close()
    monkeypatch.setattr(log_mod, "check_new_log", racing_check)
    with pytest.raises(ConfigError, match=r"already holds a session \(participant P07, condition ai"):
        _open(p, "P09", "off")
    (only,) = read_sessions(p)
    assert only.header["participant"] == "P07" and only.complete


# -- 2. an export that survives bad logs --------------------------------------------------------------------------
_DROP = object()  # a field left out of a record


def _frame(i, t, **kw):
    rec = {"type": "frame", "index": i, "pts_s": i / 30 if isinstance(i, int) else None,
           "wall_time": 100.0 + (t if isinstance(t, float) else 0), "t_s": t, "probs": [0.2, 0.5, 0.3],
           "top_class": 1, "shown": True, "state": "ok"}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not _DROP}


def _call(t, frame, label, model_label, **kw):
    rec = {"type": "event", "kind": "call", "frame_index": frame,
           "wall_time": 100.0 + (t if isinstance(t, float) else 0), "t_s": t, "label": label,
           "model_label": model_label, "model_state": "ok"}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not _DROP}

# what the reader skips (whole lines) and what the export leaves out of a computation, counted by hand below
EXPECTED_SKIPS = {
    "not UTF-8": 2, "not a JSON object": 2, "unknown record type": 2, "nested too deeply": 1,
    "frame without index": 1, "frame without t_s": 1, "frame with a bad top_class": 2,
    "frame with probs not a list": 1, "event without kind": 1, "call without label": 1, "call without t_s": 1,
    "call without frame_index": 1,
}


def _odd_log(path: Path) -> Path:
    """A CRLF log with every oddity at once: session 1 (P07) has 5 good frames, 7 odd ones and 6 events; session 2
    (P09, appended by an older sonolens) has a header without class names."""
    j = json.dumps
    lines = [j(HEADER)]
    lines += [j(_frame(i, i / 10)) for i in range(5)]  # the good frames 0..4 at 0.0..0.4 s
    lines += [
        j(_frame(_DROP, 0.5)),  # frame without index                       -> frame without index
        j(_frame(6, _DROP)),  # frame without t_s                             -> frame without t_s
        j(_frame(7, 0.7, wall_time=_DROP)),  # no wall_time: nothing needs it            -> not counted
        j(_frame(8, 0.8, top_class="1")),  # top_class as a string                      -> bad top_class
        j(_frame(9, 0.9, top_class=7)),  # out of range                                  -> bad top_class
        j(_frame(10, 1.0, probs="0.2,0.5,0.3")),  # probs not a list                     -> probs not a list
        j(_frame(11, 1.1, future={"from": "sonolens 9"})),  # an unknown field: kept     -> not counted
        '{"type": "frame", "index": 12, "pro',  # torn (a killed writer)                 -> torn_lines, not here
        j(_call(1.2, 3, "benign", "benign")),  # a good call: agrees
        j(_call(1.3, 4, _DROP, "benign")),  # no answer                      -> call without label
        j(_call(_DROP, 9, "malignant", "benign")),  # disagrees; no RT        -> call without t_s
        j(_call(1.5, _DROP, "normal", "normal")),  # agrees           -> call without frame_index
        j({"type": "event", "kind": "flag", "frame_index": 4, "t_s": 1.6}),  # no wall_time: not counted
        j({"type": "event", "frame_index": 4, "wall_time": 101.65, "t_s": 1.65}),  # -> event without kind
        j({"type": "annotation", "t_s": 1.7, "text": "from a newer sonolens"}),  # -> unknown record type
        j({"t_s": 1.75}),  # no type at all                                              -> unknown record type
        "[1, 2]", '"x"',  # JSON, but no object                                          -> not a JSON object (2)
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser goes                    -> nested too deeply
    ]
    data = ("\r\n".join(lines) + "\r\n").encode()
    data += b'{"type": "frame", "index": 13, "t_s": 1.8, "note": "\xff\xfe"}\r\n'  # -> not UTF-8
    data += b'{"type": "event", "kind": "flag", "t_s": 1.85, "who": "\\udc80"}\r\n'  # half a surrogate -> not UTF-8
    data += (j({"type": "end", "wall_time": 102.0, "t_s": 2.0, "frames": 14, "events": 7}) + "\r\n").encode()
    header2 = {k: v for k, v in HEADER.items() if k != "class_names"} | {"participant": "P09"}
    session2 = [header2, _frame(0, 0.0, probs=[0.25, 0.75], top_class=1), _frame(1, 0.1, probs=[0.6, 0.4],
                                                                                     top_class=0),
                {"type": "end", "wall_time": 103.0, "t_s": 0.2, "frames": 2, "events": 0}]
    data += "".join(j(r) + "\r\n" for r in session2).encode()
    path.write_bytes(data)
    return path


TORN_LINE = 14  # the torn frame's line number in the file (header, 5 good frames, 7 odd ones, then it)


def test_the_reader_counts_the_lines_it_skips_and_reads_crlf(tmp_path):
    first, second = read_sessions(_odd_log(tmp_path / "odd.jsonl"))
    assert first.torn_lines == [TORN_LINE] and not first.torn_last_line
    reader_reasons = ("not UTF-8", "not a JSON object", "unknown record type", "nested too deeply")
    assert dict(first.skipped) == {k: EXPECTED_SKIPS[k] for k in reader_reasons}
    assert len(first.frames) == 12 and len(first.events) == 6 and first.complete
    assert first.frames[-1]["future"] == {"from": "sonolens 9"}  # an unknown field is kept
    assert first.bad_lines == 1 + 2 + 2 + 1  # torn, not UTF-8, not objects, too deep: unreadable lines
    assert second.header["participant"] == "P09" and second.complete and not second.skipped


def test_analyse_leaves_out_of_each_computation_the_records_that_lack_what_it_needs(tmp_path):
    first, second = read_sessions(_odd_log(tmp_path / "odd.jsonl"))
    rows, s = analyse(first, onsets=[2])
    assert s["skipped_records"] == EXPECTED_SKIPS
    assert s["frames_displayed"] == 12 and s["calls"] == 3 and s["calls_with_model"] == 3  # no label: no call
    assert s["agreement"] == pytest.approx(2 / 3) and s["flags"] == 1
    calls = [r for r in rows if r["kind"] == "call"]
    assert [r["label"] for r in calls] == ["benign", None, "malignant", "normal"]
    assert [r["agree"] for r in calls] == [1, "", 0, 1]
    assert calls[0]["rt_prev_s"] == pytest.approx(1.2) and calls[0]["rt_frame_s"] == pytest.approx(0.9)
    assert calls[0]["rt_onset_s"] == pytest.approx(1.0)
    assert [r["rt_prev_s"] for r in calls[1:]] == ["", "", pytest.approx(0.3)]  # from the last call with a time
    assert s["rt_frame_s"]["n"] == 1 and s["rt_prev_s"]["n"] == 2
    frames = {r["frame_index"]: r for r in rows if r["record"] == "frame"}
    assert frames[8]["top_class"] is None and frames[8]["top_label"] == ""  # "1": not a class index
    assert frames[9]["top_class"] == 7 and frames[9]["top_label"] == ""
    assert "p_benign" not in frames[10] and frames[11]["p_benign"] == 0.5
    assert frames[7]["wall_time"] is None and frames[7]["p_malignant"] == 0.3
    _, s2 = analyse(second)
    assert s2["skipped_records"] == {}


def test_export_cli_survives_a_log_with_every_oddity(tmp_path):
    log, out, summ = _odd_log(tmp_path / "odd.jsonl"), tmp_path / "o.csv", tmp_path / "s.json"
    proc = sonolens_proc("study", "export", str(log), "--out", str(out), "--summary", str(summ))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("sonolens: warning:")]
    assert any(f"line {TORN_LINE} is torn" in w for w in warnings), proc.stderr
    assert any("odd.jsonl (session 1 of 2): records skipped or incomplete: " in w and "not UTF-8 2" in w
               and "frame with a bad top_class 2" in w for w in warnings), proc.stderr
    assert any("odd.jsonl (session 2 of 2): the header has no class_names" in w for w in warnings), proc.stderr
    assert "records skipped or incomplete:" in proc.stdout and "call without label 1" in proc.stdout
    first, second = json.loads(summ.read_text())
    assert first["skipped_records"] == EXPECTED_SKIPS and second["skipped_records"] == {}
    assert first["calls"] == 3 and first["agreement"] == pytest.approx(2 / 3)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    one = [r for r in rows if r["session"] == "1"]
    assert len(one) == 12 + 6  # every frame and event record read, odd or not; skipped lines have no row
    good = [r for r in one if r["record"] == "frame" and r["frame_index"] in {"0", "1", "2", "3", "4"}]
    assert [(r["p_benign"], r["top_label"], r["state"]) for r in good] == [("0.5", "benign", "ok")] * 5
    calls = [r for r in one if r["kind"] == "call"]
    assert [r["agree"] for r in calls] == ["1", "", "0", "1"] and calls[0]["rt_frame_s"] != ""
    two = [r for r in rows if r["session"] == "2"]
    assert [(r["p_0"], r["p_1"], r["top_label"]) for r in two] == [("0.25", "0.75", ""), ("0.6", "0.4", "")]


# -- 3. export outputs: checked before the work, written atomically -----------------------------------------------
def _good_log(path: Path, frames: int = 10) -> Path:
    recs = [HEADER] + [_frame(i, i / 10) for i in range(frames)]
    recs += [_call(frames / 10, frames - 1, "benign", "benign"),
             {"type": "end", "wall_time": 200.0, "t_s": frames / 10 + 1, "frames": frames, "events": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _read_only_folder(tmp_path: Path, tmpfs) -> Path:
    if os.geteuid() == 0:  # root ignores permissions: a read-only filesystem
        return tmpfs("64k", ro=True)
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


def test_a_read_only_out_folder_is_one_line_before_any_log_is_read(tmp_path, tmpfs):
    folder = _read_only_folder(tmp_path, tmpfs)
    missing_log = tmp_path / "never-read.jsonl"  # were the logs read first, the error would name it
    proc = sonolens_proc("study", "export", str(missing_log), "--out", str(folder / "o.csv"))
    assert_one_line_error(proc, "cannot write the CSV to", str(folder / "o.csv"))
    good = _good_log(tmp_path / "a.jsonl")
    proc = sonolens_proc("study", "export", str(good), "--out", str(tmp_path / "o.csv"), "--summary",
                         str(folder / "s.json"))
    assert_one_line_error(proc, "cannot write the summary to", str(folder / "s.json"))
    assert not (tmp_path / "o.csv").exists()  # refused before the CSV was written


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_out_path_where_no_file_can_be_made_is_one_line(tmp_path):
    """Without root or a mount: /proc takes no new files, even from root."""
    good = _good_log(tmp_path / "a.jsonl")
    proc = sonolens_proc("study", "export", str(good), "--out", "/proc/sonolens-export.csv")
    assert_one_line_error(proc, "cannot write the CSV to /proc/sonolens-export.csv")


def test_a_missing_out_folder_or_a_file_as_folder_is_one_line(tmp_path):
    good = _good_log(tmp_path / "a.jsonl")
    proc = sonolens_proc("study", "export", str(good), "--out", str(tmp_path / "nope" / "o.csv"))
    assert_one_line_error(proc, "output folder does not exist")
    assert not (tmp_path / "nope").exists()  # the export makes no folders
    proc = sonolens_proc("study", "export", str(good), "--out", str(good / "o.csv"))
    assert_one_line_error(proc, "is a file, not a folder")


def test_a_csv_that_fails_half_way_leaves_the_earlier_one(tmp_path, tmpfs):
    d = tmpfs("64k")
    out = d / "o.csv"
    out.write_text("the earlier export\n")
    big = _good_log(tmp_path / "big.jsonl", frames=2000)  # its CSV does not fit in 64 KiB
    with pytest.raises(ConfigError, match="cannot write the CSV to .*No space left on device"):
        export([big], out)
    assert out.read_text() == "the earlier export\n" and sorted(os.listdir(d)) == ["o.csv"]
    small = _good_log(tmp_path / "small.jsonl", frames=3)
    export([small], out)
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == 3 + 1


def test_an_error_while_writing_the_csv_is_a_config_error_and_no_temporary_file_is_left(tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("the earlier export\n")

    class Unwritable:
        def __str__(self) -> str:  # the csv writer turns a cell into text: fail half-way through the rows
            raise OSError(5, "Input/output error")

    rows = [{"a": i} for i in range(1000)] + [{"a": Unwritable()}]
    with pytest.raises(ConfigError, match="cannot write the CSV to .*Input/output error"):
        export_mod.write_csv(out, ["a"], rows)
    assert out.read_text() == "the earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv"]
