"""``sonolens ort-options``: every variant of every file is timed and rendered; bad arguments are one line."""

from __future__ import annotations

import json

import pytest

from sonolens.bench import ort_options
from sonolens.pipeline.errors import ConfigError


def test_every_variant_is_timed_and_rendered(random_student, tmp_path, capsys):
    out = tmp_path / "o.json"
    assert ort_options.cli_main([str(random_student), "--rounds", "2", "--iters", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["variant"] for r in res["rows"]] == list(ort_options.VARIANTS)
    assert all(r["n"] == 6 and r["p90_ms"] >= r["p50_ms"] > 0 for r in res["rows"])
    text = capsys.readouterr().out
    assert text.count(f"| `{random_student.name}` |") == len(ort_options.VARIANTS)


def test_the_sessions_differ_only_in_the_named_option(random_student):
    import onnxruntime as ort

    plain = ort_options.make_session(random_student)
    ext = ort_options.make_session(random_student, threads=2, level="extended", spinning=False)
    assert plain.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts = ext.get_session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="no such model file"):
        ort_options.cli_main([str(tmp_path / "none.onnx")])
    f = tmp_path / "m.onnx"
    f.write_bytes(b"")
    with pytest.raises(ConfigError, match="--rounds"):
        ort_options.cli_main([str(f), "--rounds", "0"])
