"""``sonolens batch`` (issue: a hospital's archive on a Dask cluster, item 3).

A small archive made here — two simulator clips, a folder of stills, a DICOM cine loop (with pydicom), a file that is
not a video, a text file — goes through a real ``LocalCluster`` of two worker processes and through a cluster started
as ``dask scheduler`` + ``dask worker`` subprocesses. Checked: the table's rows (Parquet and CSV), the failing file's
row and reason, per-frame CSVs, labels from folders giving AUC / accuracy with intervals, resume (a second run
processes nothing, starts no cluster and rewrites no result file; a removed result or a changed recording is processed
again, and only those), SIGTERM (exit 143, workers gone, what finished kept), and one-line errors for bad input. No
assertion depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NEUTRAL_CWD, bundled_student, sonolens_proc

pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from sonolens.batch.discover import discover, recording_id  # noqa: E402
from sonolens.batch.labels import csv_labels, positive_class  # noqa: E402
from sonolens.batch.metrics import delong, metrics_table  # noqa: E402

CLIP_FRAMES = 15  # 0.5 s at 30 fps
CLASSES = ("normal", "benign", "malignant")  # the bundled BUSI student's


def _dicom_cine(path: Path, frames: int = 4) -> bool:
    """A small multi-frame ultrasound DICOM file; False without pydicom."""
    try:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
    except ImportError:
        return False
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 255, (frames, 64, 64), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.3.1")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "US", 64, 64, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = stack.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return True


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from sonolens.simulator.cli import write_clip

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    assert write_clip("benign", path, CLIP_FRAMES / 30.0, size=(96, 96), progress=False) == CLIP_FRAMES
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory, clip) -> dict:
    """ROOT with benign/ and malignant/ recordings; {"root", "expected": {rel: (kind, frames or None)}}."""
    import cv2

    bundled_student()  # skips without the bundled model
    root = tmp_path_factory.mktemp("archive")
    (root / "benign").mkdir()
    (root / "malignant" / "stills").mkdir(parents=True)
    shutil.copy(clip, root / "benign" / "a.mp4")
    shutil.copy(clip, root / "malignant" / "b.mp4")
    (root / "benign" / "broken.mp4").write_bytes(b"this is not a video file\n" * 40)
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(root / "malignant" / "stills" / f"img{i}.png"), rng.integers(0, 255, (80, 80), np.uint8))
    (root / "notes.txt").write_text("not a recording\n")
    expected = {"benign/a.mp4": ("video", CLIP_FRAMES), "malignant/b.mp4": ("video", CLIP_FRAMES),
                "benign/broken.mp4": ("video", None), "malignant/stills": ("images", 3)}
    if _dicom_cine(root / "malignant" / "cine.dcm"):
        expected["malignant/cine.dcm"] = ("dicom", 4)
    return {"root": root, "expected": expected}


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = sonolens_proc("batch", *map(str, args), timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _results(out: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["path"]: json.loads(p.read_text()) for p in (out / "recordings").glob("*.json")}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "recordings").glob("*.json")}


def _check_table(out: Path, expected: dict) -> list[dict]:
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["path"] for r in rows] == sorted(expected)
    for r in rows:
        kind, frames = expected[r["path"]]
        assert r["kind"] == kind and r["folder"] == r["path"].split("/")[0] and r["label"] == r["folder"]
        if frames is None:  # the file that is not a video: a row with its reason, nothing else
            assert r["frames"] == 0 and r["score"] is None and r["top_class"] is None
            assert "broken.mp4" in r["error"] and "\n" not in r["error"]
            continue
        assert r["error"] is None and r["frames"] == frames and r["frames_dropped"] == 0
        assert r["share_ok"] + r["share_out_of_domain"] + r["share_no_image"] == pytest.approx(1.0)
        assert r["fps"] > 0 and r["positive_class"] == "malignant"
        if r["share_ok"] > 0:
            assert r["score"] == pytest.approx(r["mean_p_malignant"]) and r["top_class"] in CLASSES
            assert sum(r[f"mean_p_{c}"] for c in CLASSES) == pytest.approx(1.0, abs=1e-4)
            assert r["correct"] == (r["top_class"] == r["label"])
        else:  # the gate let no frame through: nothing to average
            assert r["score"] is None and r["top_class"] is None and r["correct"] is None
        assert len((out / "frames" / _results(out)[r["path"]]["frames_csv"]).read_text().splitlines()) == frames + 1
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == len(rows) + 1 and csv_lines[0].startswith("path,kind,folder,label,frames,")
    return rows


@pytest.mark.slow
def test_local_cluster_table_labels_and_resume(archive, tmp_path):
    root, expected, out = archive["root"], archive["expected"], tmp_path / "out"
    proc = _run(root, "--out", out, "--workers", "2", "--labels", "folders", "--frames", "--model", "busi")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(expected)} recordings under" in proc.stderr and "starting a local Dask cluster of 2" in proc.stderr
    rows = _check_table(out, expected)
    assert all(d["worker"].startswith("tcp://") for d in _results(out).values())  # ran on Dask workers
    metrics = {m["group"]: m for m in _read_csv(out / "metrics.csv")}
    assert set(metrics) == {"(all)", "benign", "malignant"}
    assert {"auc", "auc_lo", "auc_hi", "accuracy", "accuracy_lo", "accuracy_hi"} <= set(metrics["(all)"])
    # excluded: the broken file, and any recording whose every frame the model's gate held back (no score)
    unscored = sum(r["folder"] == "benign" and r["score"] is None for r in rows)
    assert unscored >= 1 and metrics["benign"]["excluded"] == str(unscored)
    assert (out / "summary.md").read_text().count("| benign |") == 1

    # resume: everything complete -> no cluster, no result file rewritten, the same table
    before = _mtimes(out)
    again = _run(root, "--out", out, "--workers", "2", "--labels", "folders", "--frames", "--model", "busi")
    assert again.returncode == 0, again.stderr
    assert f"{len(expected)} complete from an earlier run, 0 to process" in again.stderr
    assert "starting a local Dask cluster" not in again.stderr and _mtimes(out) == before
    _check_table(out, expected)

    # a removed result, a changed recording and (--retry-errors) the failed one are processed again, nothing else
    (out / "recordings" / f"{recording_id('benign/a.mp4')}.json").unlink()
    os.utime(root / "malignant" / "b.mp4", ns=(time.time_ns(), time.time_ns()))
    third = _run(root, "--out", out, "--workers", "2", "--labels", "folders", "--frames", "--model", "busi",
                 "--retry-errors")
    assert third.returncode == 0, third.stderr
    assert f"{len(expected) - 3} complete from an earlier run, 3 to process" in third.stderr
    after = _mtimes(out)
    changed = {name for name in after if after[name] != before.get(name)}
    assert {n.split("-")[0] for n in changed} == {"benign__a.mp4", "malignant__b.mp4", "benign__broken.mp4"}
    _check_table(out, expected)


def _read_csv(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` on 127.0.0.1; killed at the end."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    common = dict(cwd=NEUTRAL_CWD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"], **common)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                                       "--local-directory", str(tmp_path / "dask")], **common))
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            workers = set(client.scheduler_info()["workers"])
        yield address, workers
    finally:
        for p in reversed(procs):
            _stop(p)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_existing_cluster_through_scheduler(archive, tmp_path, dask_cluster):
    address, workers = dask_cluster
    out = tmp_path / "out"
    proc = _run(archive["root"], "--out", out, "--scheduler", address, "--labels", "folders", "--frames")
    assert proc.returncode == 0, proc.stderr
    assert f"the Dask scheduler at {address}" in proc.stderr and "cluster ready: 2 worker(s)" in proc.stderr
    _check_table(out, archive["expected"])
    assert {d["worker"] for d in _results(out).values()} <= workers  # processed by the subprocess workers


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the process", "Ctrl-C (SIGINT to the process group)"])
def test_a_signal_closes_the_cluster_and_keeps_what_finished(clip, tmp_path, how):
    psutil = pytest.importorskip("psutil")
    bundled_student()
    root, out = tmp_path / "many", tmp_path / "out"
    root.mkdir()
    for i in range(150):  # far more work than the moment between "cluster ready" and the signal
        os.link(clip, root / f"c{i:03d}.mp4")
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "batch", str(root), "--out", str(out), "--workers",
                             "2"], cwd=NEUTRAL_CWD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "cluster ready" in line:
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "".join(seen)
        if how.startswith("SIGTERM"):
            proc.send_signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C reaches the worker processes too: they must leave the shutdown to the client
            os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == (143 if how.startswith("SIGTERM") else 130), stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive  # the embedded cluster's processes are gone
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert len(rows) == len(list((out / "recordings").glob("*.json"))) < 150
    assert all(r["frames"] == CLIP_FRAMES and r["error"] is None for r in rows)


def test_discovery_rules(tmp_path):
    root = tmp_path / "root"
    (root / "study1" / "frames" / "sub").mkdir(parents=True)
    (root / "study1" / "frames" / "f1.png").write_bytes(b"x")
    (root / "study1" / "frames" / "f1_mask.png").write_bytes(b"x")
    (root / "study1" / "frames" / "sub" / "f2.jpg").write_bytes(b"x")  # part of the frames/ slideshow
    (root / "study1" / "frames" / "sub" / "loop.avi").write_bytes(b"x")  # a video below it: its own recording
    (root / "study1" / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)  # DICOM by its preamble
    (root / "study1" / "report.pdf").write_bytes(b"x")
    (root / "clip.MP4").write_bytes(b"x")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.mp4").write_bytes(b"x")
    (root / "out").mkdir()
    (root / "out" / "plot.png").write_bytes(b"x")
    found = discover(root, skip=root / "out")
    assert [(r.rel, r.kind) for r in found.recordings] == [
        ("clip.MP4", "video"), ("study1/IM0001", "dicom"), ("study1/frames", "images"),
        ("study1/frames/sub/loop.avi", "video")]
    assert found.ignored == 1  # report.pdf
    assert len({r.id for r in found.recordings}) == 4
    folder = next(r for r in found.recordings if r.kind == "images")
    assert folder.stamp["files"] == 4 and folder.folder == "study1"
    assert next(r for r in found.recordings if r.rel == "clip.MP4").folder == "."


def test_delong_matches_its_definition():
    rng = np.random.default_rng(3)
    scores = np.round(rng.uniform(size=40), 1)  # rounded: ties
    y = rng.uniform(size=40) < 0.4
    value, (lo, hi) = delong(scores, y)
    pos, neg = scores[y], scores[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    se = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    assert value == pytest.approx(psi.mean())
    assert (lo, hi) == pytest.approx((max(0, value - 1.959964 * se), min(1, value + 1.959964 * se)), abs=1e-6)
    assert delong([0.1, 0.9, 0.8], [False, True, True])[1] is None  # one negative: no interval


def test_metrics_per_folder_and_positive_class():
    rows = [{"folder": "a", "label": "malignant", "score": 0.9, "top_class": "malignant", "error": None},
            {"folder": "a", "label": "benign", "score": 0.2, "top_class": "malignant", "error": None},
            {"folder": "b", "label": "benign", "score": None, "top_class": None, "error": "unreadable"},
            {"folder": "b", "label": "other", "score": 0.4, "top_class": "benign", "error": None}]
    table = {m["group"]: m for m in metrics_table(rows, "malignant", CLASSES)}
    assert table["(all)"]["auc"] == 1.0 and table["(all)"]["scored"] == 3 and table["(all)"]["excluded"] == 1
    assert table["(all)"]["accuracy_n"] == 2 and table["(all)"]["accuracy"] == 0.5  # "other" is not a class
    assert table["b"]["auc"] is None and table["b"]["accuracy"] is None
    assert positive_class(CLASSES) == "malignant"
    assert positive_class(("normal", "pneumonia")) == "pneumonia" and positive_class(("x", "y")) == "y"


def test_labels_from_a_csv(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (root / name).write_bytes(b"x")
    found = discover(root).recordings
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(f"path,label\na.mp4,benign\n{root / 'b.mp4'},malignant\nmissing.mp4,benign\n")
    assert csv_labels(labels_csv, root, found) == ({"a.mp4": "benign", "b.mp4": "malignant"}, 1)


@pytest.mark.parametrize("case", ["missing root", "out is root", "out is a file", "out holds root", "no recordings",
                                  "bad labels", "workers with scheduler", "unknown option"])
def test_bad_input_is_one_line(case, tmp_path, capsys):
    from sonolens.cli import main

    root = tmp_path / "root"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (tmp_path / "file").write_text("x")
    argv = {"missing root": [str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
            "out is root": [str(root), "--out", str(root)],
            "out is a file": [str(root), "--out", str(tmp_path / "file")],
            "out holds root": [str(tmp_path / "o" / "recordings"), "--out", str(tmp_path / "o")],
            "no recordings": [str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
            "bad labels": [str(root), "--out", str(tmp_path / "o"), "--labels", str(tmp_path / "none.csv")],
            "workers with scheduler": [str(root), "--out", str(tmp_path / "o"), "--workers", "2", "--scheduler",
                                       "tcp://127.0.0.1:1"],
            "unknown option": [str(root), "--out", str(tmp_path / "o"), "--bogus"]}[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "o" / "recordings").mkdir(parents=True)
    if case == "unknown option":
        with pytest.raises(SystemExit) as exc:
            main(["batch", *argv])
        assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
        return
    assert main(["batch", *argv]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("sonolens: error:"), err


def test_missing_extra_names_it(tmp_path, capsys, monkeypatch):
    from sonolens.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("sonolens: error: 'batch' needs distributed, which is not installed; install it with: "
                   "pip install 'sonolens[batch]'")
