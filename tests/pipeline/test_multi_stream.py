"""Several streams in one process (issue "Many streams in one process", item 1): one capture thread and queue per
stream, one batching inference worker, results routed back to each stream's outputs.

Nothing here depends on the machine's speed: batching is made deterministic by sources that block until the test
releases a frame and by an engine that holds its first call until the queues are where the test wants them; waits
have generous deadlines only so that a bug fails instead of hanging.
"""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NEUTRAL_CWD, assert_one_line_error, sonolens_proc
from fakes import FakeEngine, ScriptedSource

from sonolens.cli import main
from sonolens.pipeline.config import resolve
from sonolens.pipeline.engines import EngineOutput, OnnxEngine, infer_batch
from sonolens.pipeline.errors import ConfigError, SourceError
from sonolens.pipeline.messages import RawFrame
from sonolens.pipeline.multi import MultiPipeline, stream_path
from sonolens.pipeline.run_cli import parser
from sonolens.pipeline.sources.base import Source, SourceInfo
from sonolens.pipeline.stream import Pipeline, PipelineConfig, run_to_end

DEADLINE_S = 60.0  # only so that a bug fails instead of hanging; no assertion depends on it


# ---------------------------------------------------------------------------------------------- doubles
class BatchEngine(FakeEngine):
    """``FakeEngine`` with a batched call that records each batch's size; ``hold`` (optional) is called at the start
    of the first call and may block (the test arranges the queues meanwhile)."""

    def __init__(self, hold=None, **kw):
        super().__init__(**kw)
        self.batch_sizes: list[int] = []
        self.hold = hold

    def infer_batch(self, x: np.ndarray, want_cam: bool = True) -> list[EngineOutput]:
        if self.hold is not None and not self.batch_sizes:
            self.hold()
        self.batch_sizes.append(len(x))
        return [self.infer(x[i : i + 1], want_cam) for i in range(len(x))]


class ReleasedSource(Source):
    """A live source whose ``n`` frames come one at a time, each when the test calls ``release()``; ``interrupt``
    (the pipeline stopping) ends it. With ``n=None`` it never ends by itself: a stalled stream."""

    def __init__(self, n: int | None = 10, size=(64, 48)):
        self.n, self.size = n, size
        self._go = threading.Semaphore(0)
        self._stop = threading.Event()

    def open(self) -> SourceInfo:
        self.info = SourceInfo("released", "camera", self.size[0], self.size[1], 30.0, None, True)
        return self.info

    def release(self, k: int = 1) -> None:
        for _ in range(k):
            self._go.release()

    def frames(self, start_s: float = 0.0):
        w, h = self.size
        i = 0
        while self.n is None or i < self.n:
            while not self._go.acquire(timeout=0.05):
                if self._stop.is_set():
                    return
            yield RawFrame(np.full((h, w, 3), 40 + i % 100, np.uint8), i / 30.0)
            i += 1

    def interrupt(self) -> None:
        self._stop.set()


def multi(sources, engine, tmp_path: Path | None = None, **cfg) -> MultiPipeline:
    """A ``MultiPipeline`` over test sources, wired as ``multi.build_streams`` wires opened sources."""
    c = PipelineConfig(source="scripted", **cfg)
    lanes = []
    for k, src in enumerate(sources, 1):
        lane_cfg = PipelineConfig(source=f"scripted{k}", **{**cfg, "csv": stream_path(cfg.get("csv"), k)})
        lanes.append(Pipeline(lane_cfg, src, src.open(), engine, []))
    return MultiPipeline(c, lanes, engine)


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.005)


def accounted(section: dict) -> bool:
    return section["frames_processed"] + section["frames_dropped"] + section["frames_unprocessed_at_stop"] == \
        section["frames_in"]


# ---------------------------------------------------------------------------------------------- the pipeline
def test_every_frame_of_every_stream_is_accounted_for(tmp_path):
    """Live pacing with a slow engine: frames drop, and each stream's CSV still has every frame it captured."""
    sources = [ScriptedSource(n=n, fps=200.0) for n in (30, 45, 60)]
    pipe = multi(sources, BatchEngine(delay_s=0.005), realtime=True, csv=str(tmp_path / "f.csv"))
    report = run_to_end(pipe)
    assert report["error"] is None and [s["stream"] for s in report["streams"]] == [1, 2, 3]
    for section, n in zip(report["streams"], (30, 45, 60)):
        assert section["frames_in"] == n and accounted(section) and section["frames_unprocessed_at_stop"] == 0
        assert section["queue"]["policy"] == "latest" and section["queue"]["max_depth"] == 1
        rows = list(csv.DictReader(open(section["csv"])))
        assert sorted(int(r["index"]) for r in rows) == list(range(n))
        assert sum(r["status"] == "dropped" for r in rows) == section["frames_dropped"]
        assert sum(r["status"] == "processed" for r in rows) == section["frames_processed"]
    totals = report["totals"]
    assert totals["streams"] == 3 and totals["frames_in"] == 135
    assert totals["frames_processed"] + totals["frames_dropped"] == 135
    assert totals["frames_processed"] == sum(s["frames_processed"] for s in report["streams"])
    assert totals["latency_ms"]["capture_to_result"]["p50"] <= totals["latency_ms"]["capture_to_result"]["p99"]
    assert sum(int(k) * v for k, v in totals["batches"]["calls_by_size"].items()) == totals["frames_processed"]
    assert [Path(s["csv"]).name for s in report["streams"]] == ["f_1.csv", "f_2.csv", "f_3.csv"]


def test_streams_paced_together_share_one_engine_call():
    """Frame 0 of stream 1 goes alone and the engine holds that call until one frame waits in every queue: the next
    call carries all three streams."""
    sources = [ReleasedSource(n=3) for _ in range(3)]
    holding = threading.Event()
    go = threading.Event()

    def hold():
        holding.set()
        go.wait(DEADLINE_S)

    engine = BatchEngine(hold=hold)
    pipe = multi(sources, engine, realtime=True)
    pipe.start()
    try:
        sources[0].release()
        wait_until(holding.is_set, "the first engine call")
        for src in sources:
            src.release()
        wait_until(lambda: all(len(lane.queue) == 1 for lane in pipe.lanes), "a frame waiting in every queue")
        go.set()
        wait_until(lambda: len(engine.batch_sizes) >= 2, "the second engine call")
        assert engine.batch_sizes[:2] == [1, 3]
        for src in sources:
            src.release(3)
        assert pipe.wait(DEADLINE_S)
    finally:
        pipe.stop()
    report = pipe.report()
    assert [s["frames_in"] for s in report["streams"]] == [3, 3, 3]
    assert all(accounted(s) for s in report["streams"]) and report["totals"]["batches"]["max_size"] == 3
    assert sum(engine.batch_sizes) == report["totals"]["frames_processed"]


@pytest.mark.parametrize("max_batch, want", [(0, 3), (2, 2)])
def test_max_rate_batches_one_frame_of_each_stream_and_max_batch_caps_it(max_batch, want):
    """Offline (block queues), while the first call is held every queue fills; after it, each call takes one frame
    from each stream — up to ``max_batch``."""
    lanes: list[Pipeline] = []

    def hold():
        wait_until(lambda: all(len(lane.queue) == lane.queue.capacity or lane.queue.closed for lane in lanes),
                   "full queues")

    engine = BatchEngine(hold=hold)
    pipe = multi([ScriptedSource(n=20) for _ in range(3)], engine, realtime=False, max_batch=max_batch)
    lanes.extend(pipe.lanes)
    report = run_to_end(pipe)
    assert [s["frames_processed"] for s in report["streams"]] == [20, 20, 20]
    assert engine.batch_sizes[1] == want and max(engine.batch_sizes) == want and sum(engine.batch_sizes) == 60
    assert report["totals"]["batches"]["max_batch"] == want


def test_a_stalled_stream_does_not_hold_the_others_and_stop_ends_it():
    stalled = ReleasedSource(n=None)
    sources = [ScriptedSource(n=25), stalled, ScriptedSource(n=15)]
    pipe = multi(sources, BatchEngine(), realtime=False)
    pipe.start()
    try:
        wait_until(lambda: pipe.telemetry.summary()["frames_processed"] == 40, "the two other streams")
        assert not pipe.worker.finished.is_set()  # the run waits for the stalled stream to end...
    finally:
        pipe.stop()  # ...or to be stopped: no hang
    assert not pipe.worker.is_alive() and not any(lane.capture.is_alive() for lane in pipe.lanes)
    report = pipe.report()
    assert [s["frames_processed"] for s in report["streams"]] == [25, 0, 15] and report["error"] is None


def test_a_stream_that_ends_early_does_not_stop_the_others():
    report = run_to_end(multi([ScriptedSource(n=3), ScriptedSource(n=40)], BatchEngine(), realtime=False))
    assert [s["frames_processed"] for s in report["streams"]] == [3, 40] and report["error"] is None


def test_a_stream_that_fails_mid_run_is_named_and_the_others_finish():
    pipe = multi([ScriptedSource(n=30), ScriptedSource(n=30, fail_after=5)], BatchEngine(), realtime=False)
    report = run_to_end(pipe)
    assert isinstance(pipe.error, SourceError) and str(pipe.error).startswith("stream 2: ")
    assert [s["frames_processed"] for s in report["streams"]] == [30, 5]
    assert "vanished" in report["streams"][1]["error"] and report["streams"][0]["error"] is None


def test_a_sink_that_fails_names_its_stream_and_ends_the_run():
    def broken(result):
        raise ValueError("disk on fire")

    pipe = multi([ScriptedSource(n=10), ScriptedSource(n=10)], BatchEngine(), realtime=False)
    pipe.lanes[1].add_sink(broken)
    run_to_end(pipe)
    assert pipe.error is not None and str(pipe.error).startswith("stream 2: broken failed on frame 0: disk on fire")


def test_no_model_passes_every_stream_through():
    report = run_to_end(multi([ScriptedSource(n=8), ScriptedSource(n=5)], None, realtime=False))
    assert [s["frames_processed"] for s in report["streams"]] == [8, 5] and report["model"] is None


def test_engines_without_a_batched_call_answer_image_by_image():
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    engine = FakeEngine()
    outs = infer_batch(engine, x)
    assert engine.calls == 3 and [o.logits[0] for o in outs] == [pytest.approx(float(x[i].mean())) for i in range(3)]


def test_onnx_batch_gives_what_each_image_gives_alone(random_student):
    engine = OnnxEngine(random_student)
    h, w = engine.meta.input_size
    x = np.random.default_rng(1).standard_normal((3, 3, h, w)).astype(np.float32)
    for one, batched in zip((engine.infer(x[i : i + 1]) for i in range(3)), engine.infer_batch(x)):
        np.testing.assert_allclose(batched.logits, one.logits, rtol=1e-4, atol=1e-4)
        if one.cam is not None:
            np.testing.assert_allclose(batched.cam, one.cam, rtol=1e-3, atol=1e-4)
        assert (batched.ood_score is None) == (one.ood_score is None)


def test_per_stream_names():
    assert stream_path("f.csv", 1) == "f_1.csv" and stream_path(None, 1) is None
    assert stream_path("out/rec.mp4", 2) == str(Path("out") / "rec_2.mp4") and stream_path("log", 3) == "log_3"
    text = parser().format_help()
    assert "F_1.csv" in text and "R_1.mp4" in text and "SonolensResult_N" in text


# ---------------------------------------------------------------------------------------------- configuration
def test_the_config_file_lists_sources(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  realtime: false\n  options: {}\nsources:\n  - spec: a.mp4\n  - b.mp4\n"
                   "model:\n  max_batch: 2\n")
    r = resolve(cfg)
    assert [s.spec for s in r.sources] == ["a.mp4", "b.mp4"] and r.pipeline.source == "a.mp4"
    assert r.pipeline.max_batch == 2 and not r.pipeline.realtime and "sources:" in r.show()
    assert not resolve(cfg, source="c.mp4").sources  # the command line's SOURCE wins, as over source.spec
    assert [s.spec for s in resolve(cfg, sources=["c.mp4", "d.mp4"]).sources] == ["c.mp4", "d.mp4"]
    one = tmp_path / "one.yaml"
    one.write_text("sources:\n  - spec: a.mp4\n    options: {transport: tcp}\n")
    r = resolve(one)
    assert not r.sources and r.pipeline.source == "a.mp4" and r.pipeline.source_options == {"transport": "tcp"}


@pytest.mark.parametrize("text, words", [
    ("sources:\n  - spec: a.mp4\n    optons: {}\n", ["sources[1].optons", "did you mean 'options'"]),
    ("sources:\n  - a.mp4\n  - spec: b.mp4\n    loop: true\n", ["sources[2].loop", "apply to every stream"]),
    ("sources:\n  - spec: 5\n", ["sources[1].spec", "text", "int 5"]),
    ("sources:\n  - spec: a.mp4\n    options: [1]\n", ["sources[1].options", "mapping"]),
    ("sources:\n  - options: {}\n", ["sources[1]", "needs a spec"]),
    ("sources: a.mp4\n", ["sources", "list"]),
    ("sources: []\n", ["sources", "list"]),
    ("source:\n  spec: a.mp4\nsources:\n  - b.mp4\n", ["source.spec or sources, not both"]),
    ("model:\n  max_batch: -1\n", ["--max-batch", ">= 0"]),
])
def test_each_sources_mistake_is_one_line(tmp_path, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve(cfg, default_source="x.mp4")
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_the_viewer_refuses_several_sources(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - a.mp4\n  - b.mp4\n")
    with pytest.raises(ConfigError, match="sonolens run"):
        resolve(cfg, mode="view")


# ---------------------------------------------------------------------------------------------- sonolens run
def _clip(path: Path, n: int, fps: int = 25, size=(96, 80), seed: int = 0) -> Path:
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(n):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def test_run_writes_a_section_a_csv_and_a_recording_per_stream(tmp_path, random_student):
    a, b = _clip(tmp_path / "a.mp4", 12), _clip(tmp_path / "b.mp4", 7, seed=1)
    rep, rows, rec = tmp_path / "r.json", tmp_path / "f.csv", tmp_path / "o.mp4"
    assert main(["run", str(a), "--max-rate", str(b), "--model", str(random_student), "--json", str(rep),
                 "--csv", str(rows), "--record", str(rec), "--quiet"]) == 0
    report = json.loads(rep.read_text())
    assert report["complete"] and report["error"] is None and report["totals"]["frames_processed"] == 19
    for section, clip, n in zip(report["streams"], (a, b), (12, 7)):
        k = section["stream"]
        assert section["source"]["name"] == clip.name and section["frames_processed"] == section["frames_in"] == n
        table = list(csv.DictReader((tmp_path / f"f_{k}.csv").open()))
        assert [int(r["index"]) for r in table] == list(range(n))
        assert section["recording"]["path"] == str(tmp_path / f"o_{k}.mp4")
        assert section["recording"]["frames_written"] == n and (tmp_path / f"o_{k}.mp4").stat().st_size > 0
        assert section["latency_ms"]["capture_to_result"]["p99"] >= section["latency_ms"]["capture_to_result"]["p50"]
    assert not rows.exists() and not rec.exists()  # only the per-stream files


def test_run_reads_sources_from_the_config_file(tmp_path):
    a, b = _clip(tmp_path / "a.mp4", 5), _clip(tmp_path / "b.mp4", 4)
    rep = tmp_path / "r.json"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"source:\n  realtime: false\nsources:\n  - spec: {a}\n  - {b}\nmodel:\n  path: none\n"
                   f"outputs:\n  json: {rep}\n")
    assert main(["run", "--config", str(cfg), "--quiet"]) == 0
    report = json.loads(rep.read_text())
    assert [s["frames_processed"] for s in report["streams"]] == [5, 4]


def test_a_source_that_fails_to_open_is_one_line_and_exit_2(tmp_path):
    a = _clip(tmp_path / "a.mp4", 3)
    proc = sonolens_proc("run", str(a), str(tmp_path / "missing.mp4"), "--model", "off", "--max-rate")
    assert_one_line_error(proc, "stream 2", "missing.mp4")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_per_stream_output_is_never_an_input(tmp_path):
    """``--record v.mp4`` writes ``v_1.mp4`` for stream 1: when that is a source (here, stream 1's own), refused."""
    v1, other = _clip(tmp_path / "v_1.mp4", 3), _clip(tmp_path / "other.mp4", 3)
    before = _digest(v1)
    proc = sonolens_proc("run", str(v1), str(other), "--model", "off", "--max-rate", "--record",
                         str(tmp_path / "v.mp4"))
    assert_one_line_error(proc, "recording of stream 1", "refusing to overwrite an input")
    assert _digest(v1) == before
    proc = sonolens_proc("run", str(other), str(other), "--model", "off", "--max-rate", "--csv",
                         str(tmp_path / "r.json"), "--json", str(tmp_path / "r_2.json"))
    assert_one_line_error(proc, "same file")


def test_a_signal_stops_every_stream_cleanly(tmp_path):
    a, b = _clip(tmp_path / "a.mp4", 20), _clip(tmp_path / "b.mp4", 20, seed=1)
    rep, rows = tmp_path / "r.json", tmp_path / "f.csv"
    proc = subprocess.Popen([sys.executable, "-m", "sonolens", "run", str(a), str(b), "--model", "off", "--loop",
                             "--json", str(rep), "--csv", str(rows), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=NEUTRAL_CWD)
    first = tmp_path / "f_1.csv"
    deadline = time.monotonic() + DEADLINE_S
    while not (first.exists() and first.read_text().count("\n") > 40):  # flushed every 30 rows: it is running
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not start: {proc.communicate()[1]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 143 and "Traceback" not in err, err
    report = json.loads(rep.read_text())
    assert report["interrupted_by"] == "SIGTERM" and report["complete"] and len(report["streams"]) == 2
    assert all(accounted(s) for s in report["streams"])


def test_one_igtl_connection_sends_each_stream_under_its_own_devices():
    pyigtl = pytest.importorskip("pyigtl")
    import socket

    from sonolens.pipeline.igtl_sink import IgtlSink
    from sonolens.pipeline.messages import Result, Timings

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = pyigtl.OpenIGTLinkServer(port=port, local_server=True)
    try:
        sink = IgtlSink(f"127.0.0.1:{port}", max_pending=4)
        timings = Timings(t_captured_ns=0, t_enqueued_ns=0, t_dequeued_ns=0, t_preprocessed_ns=0, t_inferred_ns=0,
                          t_delivered_ns=0, pts_s=0.5)
        for k in (1, 2):
            sink.for_stream(f"_{k}")(Result(index=k, frame=np.zeros((8, 8), np.uint8), roi=(0, 0, 8, 8),
                                            timings=timings))
        got = {k: server.wait_for_message(f"SonolensResult_{k}", timeout=10) for k in (1, 2)}
        sink.close()
        assert {k: json.loads(m.string)["frame"] for k, m in got.items()} == {1: 1, 2: 2}
    finally:
        server.stop()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_several_sources_default_to_one_onnx_runtime_thread_unless_told():
    """One inference thread serves every stream: ONNX Runtime's own pool would take the decoders' cores."""
    several = resolve(None, sources=["a.mp4", "b.mp4"])
    assert several.pipeline.threads == 1 and several.origin["model.threads"] == "default for several streams"
    told = resolve(None, {"threads": 0}, sources=["a.mp4", "b.mp4"])
    assert told.pipeline.threads == 0 and told.origin["model.threads"] == "command line"
    assert resolve(None, source="a.mp4").pipeline.threads == 0  # one source: as before
