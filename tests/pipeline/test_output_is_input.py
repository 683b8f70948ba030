"""No command destroys a user's data: an output that is also an input is refused before anything is written.

At c28fbd5 ``sonolens run S --json S`` replaced the source video with a JSON report (exit 0), ``--record S`` or
``--csv S`` truncated it, and ``sonolens study export L --out L`` overwrote the log it read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NEUTRAL_CWD, REPO

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable, guard_command_line, same_file

SAMPLE = REPO / "assets" / "sample_videos" / "benign.mp4"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sonolens(*args: str, cwd: Path = NEUTRAL_CWD) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonolens", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def _one_line_refusal(proc: subprocess.CompletedProcess) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "refusing to overwrite an input" in lines[0], proc.stderr


@pytest.fixture
def clip(tmp_path) -> Path:
    return Path(shutil.copy(SAMPLE, tmp_path / "scan.mp4"))


@pytest.mark.parametrize("flag", ["--json", "--record", "--csv"])
def test_run_refuses_an_output_that_is_its_source(clip, flag):
    before = _digest(clip)
    _one_line_refusal(_sonolens("run", str(clip), "--max-rate", flag, str(clip)))
    assert _digest(clip) == before


def test_the_same_file_by_another_name_is_refused_too(clip, tmp_path):
    before = _digest(clip)
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    for other in (tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "scan.mp4"):
        _one_line_refusal(_sonolens("run", str(clip), "--max-rate", f"--json={other}"))
    assert _digest(clip) == before and same_file(tmp_path / "hard.mp4", clip)


def test_run_refuses_the_bundled_model_and_sample_it_reads_by_default(tmp_path):
    from sonolens.pipeline.engines import BUNDLED_MODELS, DEFAULT_BUNDLED

    demo = REPO / "assets" / "sample_videos" / "busi_demo.mp4"
    # the file the default model name resolves to in a run started in the repository (``cwd=REPO``: the
    # repository's package, whichever install the tests run on)
    model = REPO / "models" / "weights" / BUNDLED_MODELS[DEFAULT_BUNDLED]
    if not (demo.is_file() and model.is_file()):
        pytest.skip("bundled sample or model not in this checkout")
    before = (_digest(demo), _digest(model))
    backup = Path(shutil.copy(model, tmp_path / model.name))
    try:
        _one_line_refusal(_sonolens("run", "--json", str(demo), cwd=REPO))            # the default source
        _one_line_refusal(_sonolens("run", str(SAMPLE), "--csv", str(model), cwd=REPO))  # the default model, by name
        assert (_digest(demo), _digest(model)) == before
    finally:
        if _digest(model) != before[1]:  # a failed refusal must not leave the checkout without its model
            shutil.copy(backup, model)


def test_study_export_refuses_to_overwrite_its_log(tmp_path):
    log = tmp_path / "session.jsonl"
    log.write_text('{"record": "header"}\n')
    before = _digest(log)
    _one_line_refusal(_sonolens("study", "export", str(log), "--out", str(log)))
    _one_line_refusal(_sonolens("study", "export", str(log), "--out", str(tmp_path / "x.csv"), "--summary", str(log)))
    as_csv = tmp_path / "calls.csv"  # a log named *.csv is its own default output
    shutil.copy(log, as_csv)
    _one_line_refusal(_sonolens("study", "export", str(as_csv)))
    assert _digest(log) == before


def test_the_rule_reads_every_command_line_the_same_way(clip, tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(b"x")
    for argv in (["--model", str(other), "--json", str(other)], ["--config", str(other), "--out", str(other)],
                 [str(clip), "--no-gate", "--png", str(clip)]):
        with pytest.raises(ConfigError, match="refusing to overwrite an input"):
            guard_command_line("eval", argv)
    guard_command_line("eval", ["--model", str(other), "--json", str(tmp_path / "new.json")])  # fine
    guard_command_line("fit-ood", ["--model", str(other), "--out", str(other)])  # the documented in-place update
    with pytest.raises(ConfigError, match="same file"):
        guard_command_line("run", ["--json", str(tmp_path / "a"), "--csv", str(tmp_path / "a")])


def test_the_writability_check_leaves_no_file(tmp_path):
    """At c28fbd5 the check created the (empty) output file: a run that failed early left 0-byte outputs."""
    target = tmp_path / "new" / "report.json"
    check_writable(target, "report")
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []
    target.write_text("kept")
    check_writable(target, "report")
    assert target.read_text() == "kept"
