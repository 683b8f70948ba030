"""One configuration surface for run and view (``pipeline.config``): typed, sectioned, every mistake one line.

At c28fbd5: ``loop: "false"`` looped forever, ``gate: "false"`` kept the gate on while the report said
``enabled: "false"``, ``source: OTHER.mp4`` in the file was ignored, ``threads: two``, ``ema: "0.5"``, ``model: 5``
or a YAML list ended in a traceback, and ``sonolens view`` had no ``--config``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import NEUTRAL_CWD, REPO

from sonolens.pipeline.config import resolve
from sonolens.pipeline.engines import resolve_model_path
from sonolens.pipeline.errors import ConfigError, ModelError

SAMPLE = REPO / "assets" / "sample_videos" / "benign.mp4"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonolens", *args], capture_output=True, text=True, timeout=120,
                          cwd=NEUTRAL_CWD)


@pytest.mark.parametrize("text, words", [
    ('source:\n  loop: "false"\n', ["source.loop", "true or false", "'false'", "quotes"]),
    ('model:\n  gate: "false"\n', ["model.gate", "true or false"]),
    ("loop: \"no\"\n", ["source.loop", "true or false"]),                               # a flat file, same rule
    ("model:\n  threads: two\n", ["model.threads", "whole number", "'two'"]),
    ('postprocess:\n  ema: "0.5"\n', ["postprocess.ema", "number", "'0.5'"]),
    ("model:\n  path: 5\n", ["model.path", "text", "int 5"]),
    ("- a\n- b\n", ["mapping", "list"]),
    ("source:\n  lop: true\n", ["unknown key 'source.lop'", "did you mean 'source.loop'"]),
    ("sorce:\n  loop: true\n", ["unknown section 'sorce'", "did you mean 'source'"]),
    ("sources:\n  - spec: a.mp4\n    optons: {}\n", ["sources[1].optons", "did you mean 'options'"]),
    ("postprocess:\n  ema: 1.5\n", ["--ema", "[0, 1)"]),                                 # ranges: PipelineConfig's
])
def test_each_mistake_is_one_line_and_exit_2(tmp_path, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    proc = _run("run", str(SAMPLE), "--config", str(cfg), "--frames", "2", "--quiet")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_the_file_names_the_source_and_outputs_and_flags_win(tmp_path):
    report = tmp_path / "r.json"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"source:\n  spec: {SAMPLE}\n  realtime: false\n  frames: 4\noutputs:\n  json: {report}\n")
    proc = _run("run", "--config", str(cfg), "--frames", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(report.read_text())
    assert out["source"]["name"] == "benign.mp4" and out["frames_in"] == 3          # the file's source; the flag's 3


def test_flat_files_still_load_with_a_note(tmp_path):
    cfg = tmp_path / "old.yaml"
    cfg.write_text(f"source: {SAMPLE}\nrealtime: false\nframes: 2\n")
    proc = _run("run", "--config", str(cfg), "--quiet")
    assert proc.returncode == 0 and "note:" in proc.stderr and "sectioned form" in proc.stderr, proc.stderr


def test_config_show_says_where_each_value_came_from(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("postprocess:\n  ema: 0.5\n")
    proc = _run("config", "show", str(SAMPLE), "--config", str(cfg), "--decision", "1", "--mode", "view")
    assert proc.returncode == 0, proc.stderr
    rows = {ln.split(":")[0].strip(): ln for ln in proc.stdout.splitlines() if "#" in ln}
    assert "0.5" in rows["ema"] and str(cfg) in rows["ema"]
    assert "1.0" in rows["decision_s"] and "command line" in rows["decision_s"]
    assert "default for 'view'" in rows["threads"] and rows["threads"].split("#")[0].strip().endswith("1")


def test_one_default_per_mode_and_the_same_file_for_run_and_view(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  loop: true\nmodel:\n  gate: false\n")
    run, view = (resolve(cfg, mode=m, source=str(SAMPLE)).pipeline for m in ("run", "view"))
    assert (run.threads, view.threads) == (0, 1)
    assert run.loop and view.loop and not run.gate and not view.gate
    with pytest.raises(ConfigError, match="unknown mode"):
        resolve(cfg, mode="batch", source=str(SAMPLE))


def test_view_reads_the_same_file(tmp_path):
    pytest.importorskip("PyQt6")
    from sonolens.app.main import options_from_args, parser

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"source:\n  spec: {SAMPLE}\n  loop: true\npostprocess:\n  decision_s: 2.0\n")
    opts = options_from_args(parser().parse_args(["--config", str(cfg)]))
    assert opts.source == str(SAMPLE) and opts.loop is True and opts.decision_s == 2.0 and opts.threads == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text('source:\n  loop: "false"\n')
    with pytest.raises(ConfigError, match="source.loop"):
        options_from_args(parser().parse_args(["--config", str(bad)]))


def test_one_model_resolver_an_existing_path_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "busi").write_bytes(b"a local file named like a bundled model")
    assert resolve_model_path("busi").resolve() == (tmp_path / "busi").resolve()
    with pytest.raises(ModelError, match="not a file, and not a bundled model name"):
        resolve_model_path("nothing-here")


def test_one_credential_redaction_for_reports_and_names():
    from sonolens.pipeline.redact import redact_credentials
    from sonolens.pipeline.sources.camera import CameraSource
    from sonolens.pipeline.stream import _safe_spec

    url = "rtsp://admin:s3cret@10.0.0.5:554/live"
    assert redact_credentials(url) == "rtsp://10.0.0.5:554/live" == _safe_spec(url, "x")
    assert redact_credentials("igtl://user@host:18944/Image") == "igtl://host:18944/Image"
    assert redact_credentials("scan.mp4") == "scan.mp4"
    assert "s3cret" not in CameraSource(url).name and "admin" not in CameraSource(url).name


def test_source_options_are_checked_per_kind_and_reach_the_source(tmp_path, monkeypatch):
    """``source.options`` (had nowhere to go at c28fbd5): a stream's transport and credentials, an OpenIGTLink
    device; checked for the source's kind, credentials used to open the stream and never shown."""
    import av

    from sonolens.pipeline.sources import network, open_source

    with pytest.raises(ConfigError, match="does not apply to this source"):
        open_source(str(SAMPLE), options={"transport": "tcp"})
    with pytest.raises(ConfigError, match="transport expects one of tcp, udp, http"):
        open_source("rtsp://10.0.0.5/live", options={"transport": "sctp"})
    seen = {}

    def fake_open(url, **kw):
        seen.update(url=url, **kw)
        raise av.error.ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(network.av, "open", fake_open)
    src = open_source("rtsp://10.0.0.5/live", options={"transport": "tcp", "username": "admin",
                                                       "password": "s3:cret", "open_timeout_s": 2})
    with pytest.raises(Exception) as err:
        src.open()
    assert seen["url"] == "rtsp://admin:s3%3Acret@10.0.0.5/live" and seen["options"] == {"rtsp_transport": "tcp"}
    assert seen["timeout"][0] == 2.0
    assert "s3" not in str(err.value) and "admin" not in str(err.value) and "s3" not in src.name

    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  spec: rtsp://10.0.0.5/live\n  options: {transport: udp}\n")
    assert resolve(cfg, mode="run").pipeline.source_options == {"transport": "udp"}
    cfg.write_text("source:\n  spec: rtsp://10.0.0.5/live\n  options: [udp]\n")
    with pytest.raises(ConfigError, match="source.options expects a mapping"):
        resolve(cfg, mode="run")


def test_an_igtl_device_can_be_named_as_an_option():
    pytest.importorskip("pyigtl")
    from sonolens.pipeline.sources import open_source

    src = open_source("igtl://127.0.0.1:18944", options={"device": "Image_Reference"})
    assert src.device == "Image_Reference" and src.name.endswith("/Image_Reference")
