"""The batch section's measurements (``sonolens bench --sections batch``), each run by ``child`` in a fresh process:
one archive of recordings three ways, every frame of every recording, CAM off, the same pipeline settings.

* ``batch_one_process``: the recordings one after another in this process, through the code ``sonolens run`` runs
  (``build`` + ``run_to_end``) with the configuration ``sonolens run REC --max-rate --no-cam --model M`` resolves
  to — ONNX Runtime's default threads — and the model loaded once, as each batch worker loads it;
* ``batch_local``: ``sonolens batch ROOT --out OUT --model M --quiet`` — its own entry point, ``batch.cli.cli_main``,
  in this process, so its embedded LocalCluster (one single-threaded worker process per core, ONNX Runtime threads
  1) starts inside the timed section;
* ``batch_scheduler``: the same with ``--scheduler tcp://127.0.0.1:PORT``, pointed at ``dask scheduler`` and
  ``dask worker --nworkers N --nthreads 1`` started (and waited for) before the timed section, always stopped after.

The wall time of a batch runs from importing the batch package (Dask with it) to ``cli_main``'s return: the whole
command but the interpreter's start; its cluster part (``batch.run.execute``: cluster start or connection, the tasks,
closing) is timed on its own. The CPU record of a batch is its process tree's (``procwatch.TreeWatch``: this process,
its LocalCluster's workers, or the scheduler and workers it started), of the one process its own
(``contention.CpuWatch``).

Only what the report needs comes back: recordings, frames, wall times, failed recordings and their one-line errors,
the CPU record — never a recording's predictions: the batch's table is read for its ``path``, ``frames`` and ``error``
columns only, and its ``--out`` folder (a fresh temp folder each time: nothing to resume) is deleted.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # the batch package imports Dask: only inside the timed section
    from sonolens.batch.cluster import Outcome
    from sonolens.batch.plan import Plan

ERRORS_KEPT = 3  # failed recordings named in the result (the count is always there)
# Waits in a throwaway process (so this one does not import Dask before its timed section) until the scheduler at
# argv[1] has argv[2] workers, at most argv[3] seconds.
WAIT_FOR_WORKERS = ("import sys\nfrom distributed import Client\n"
                    "c = Client(sys.argv[1], timeout=float(sys.argv[3]), set_as_default=False)\n"
                    "try:\n    c.wait_for_workers(int(sys.argv[2]), timeout=float(sys.argv[3]))\n"
                    "finally:\n    c.close()\n")
STOP_WAIT_S = 20.0  # after SIGTERM, before SIGKILL


def batch_one_process(root: str, model: str) -> dict[str, Any]:
    """Every recording under ``root`` (``batch.discover``: the batch's own list) one after another in this process."""
    from sonolens.batch.discover import discover
    from sonolens.pipeline.config import resolve
    from sonolens.pipeline.contention import CpuWatch
    from sonolens.pipeline.engines import load_engine
    from sonolens.pipeline.errors import reason
    from sonolens.pipeline.stream import build, run_to_end

    watch = CpuWatch(poll=True)
    t0 = time.perf_counter()
    recordings = discover(root).recordings
    flags = {"realtime": False, "cam": False, "model": model}  # sonolens run REC --max-rate --no-cam --model M
    cfgs = [resolve(None, flags, mode="run", source=rec.path).pipeline for rec in recordings]
    engine = load_engine(model, threads=cfgs[0].threads) if cfgs else None
    load_s = time.perf_counter() - t0
    frames, errors, queue = 0, [], None
    for rec, cfg in zip(recordings, cfgs):
        failure: BaseException | None
        try:
            pipe = build(cfg, engine=engine)
            rep = run_to_end(pipe)
            frames += int(rep["frames_processed"])
            queue = queue or rep["queue"]["policy"]
            failure = pipe.error or (None if rep["frames_in"] else RuntimeError("no frame was read"))
        except Exception as exc:  # noqa: BLE001 - one recording's failure is a failed row, as in the batch
            failure = exc
        if failure is not None:
            errors.append(f"{rec.rel}: {reason(failure, 200)}")
    wall = time.perf_counter() - t0
    cpu = watch.record(compute_bound=True)
    first = cfgs[0] if cfgs else None
    return {"recordings": len(recordings), "frames": frames, "failed": len(errors), "errors": errors[:ERRORS_KEPT],
            "wall_s": wall, "load_s": load_s, "threads": first.threads if first else None,
            "cam": first.cam if first else None, "queue": queue, "contention": cpu}


def batch_local(root: str, model: str) -> dict[str, Any]:
    """``sonolens batch ROOT`` on its embedded LocalCluster, timed from the batch package's import."""
    return timed_batch(root, model, None)


def batch_scheduler(root: str, model: str, workers: int = 2, timeout_s: float = 600.0) -> dict[str, Any]:
    """``dask scheduler`` and ``dask worker --nworkers WORKERS --nthreads 1`` on 127.0.0.1 (free ports), waited for,
    then ``sonolens batch ROOT --scheduler ADDRESS`` timed as ``batch_local`` is; the cluster always stopped after."""
    with tempfile.TemporaryDirectory(prefix="sonolens-bench-dask-") as tmp_s:
        tmp = Path(tmp_s)
        procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        try:
            t0 = time.perf_counter()
            address = start_cluster(tmp, workers, procs, time.monotonic() + timeout_s / 3)
            start_s = time.perf_counter() - t0
            out = timed_batch(root, model, address)
        finally:
            stop_cluster(procs)
    return {**out, "scheduler_workers": workers, "workers_start_s": start_s}


def timed_batch(root: str, model: str, scheduler: str | None) -> dict[str, Any]:
    """``batch.cli.cli_main`` in this process on a fresh ``--out``: the wall time of the command (from the batch
    package's import), of its cluster part (``batch.run.execute``, wrapped), the tree's CPU record and what its table
    says of frames and errors."""
    from unittest import mock

    from sonolens.bench.procwatch import TreeWatch

    with tempfile.TemporaryDirectory(prefix="sonolens-bench-batch-") as tmp:
        out = Path(tmp) / "out"
        argv = [root, "--out", str(out), "--model", model, "--quiet"] + (["--scheduler", scheduler] if scheduler
                                                                         else [])
        part: dict[str, Any] = {}
        watch = TreeWatch()
        t0 = time.perf_counter()
        try:
            from sonolens.batch import cli as batch_cli

            batch_cli.require_extra()
            import sonolens.batch.run as batch_run

            with mock.patch.object(batch_run, "execute", _timed_execute(batch_run.execute, part)):
                rc = batch_cli.cli_main(argv)
        finally:
            wall = time.perf_counter() - t0
            cpu = watch.record()
        table = read_table(out / "results.csv")
    outcome = part.get("outcome")
    return {**table, "rc": int(rc), "wall_s": wall, "cluster_s": part.get("seconds"), "contention": cpu,
            "workers": getattr(outcome, "workers", None), "lost": len(getattr(outcome, "lost", []) or []),
            "threads": part.get("threads"), "cam": part.get("cam"), "queue": part.get("queue")}


def _timed_execute(original: Callable[[Plan], Outcome], part: dict[str, Any]) -> Callable[[Plan], Outcome]:
    """``batch.run.execute`` (the cluster part) timed into ``part``, with the settings the batch's plan ran with."""

    def execute(plan: Plan) -> Outcome:
        cfg = plan.job.config
        part.update(threads=cfg.threads, cam=cfg.cam, queue=cfg.queue)
        t0 = time.perf_counter()
        try:
            outcome = original(plan)
        finally:
            part["seconds"] = time.perf_counter() - t0
        part["outcome"] = outcome
        return outcome

    return execute


def read_table(path: Path) -> dict[str, Any]:
    """Recordings, frames, failed recordings and the first errors of a batch's ``results.csv`` — its ``path``,
    ``frames`` and ``error`` columns only."""
    recordings = frames = 0
    errors: list[str] = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            recordings += 1
            frames += int(float(row.get("frames") or 0))
            if row.get("error"):
                errors.append(f"{row.get('path')}: {row['error']}")
    return {"recordings": recordings, "frames": frames, "failed": len(errors), "errors": errors[:ERRORS_KEPT]}


# --------------------------------------------------------------------------------------------------------
# A scheduler and workers of our own on 127.0.0.1
# --------------------------------------------------------------------------------------------------------
def _spawn(argv: list[str], log: Path, procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]]) -> None:
    """Start ``argv`` in a process group of its own (stopped as a group: a worker's nanny processes with it), its
    output into ``log``; appended to ``procs`` for ``stop_cluster``."""
    err = open(log, "wb")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                cwd=log.parent, start_new_session=True)
    except BaseException:
        err.close()
        raise
    procs.append((proc, err))


def start_cluster(tmp: Path, workers: int, procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]],
                  deadline: float) -> str:
    """``dask scheduler`` on a free port of 127.0.0.1 (its address read from its scheduler file), ``dask worker``
    with ``workers`` single-threaded worker processes, both dashboards on loopback only; the scheduler's address once
    every worker has joined (a ``RuntimeError`` with the end of a log when one fails or ``deadline`` passes). The
    scheduler leaves after 5 idle minutes and the workers a minute after losing it, should this process die first."""
    dask = [sys.executable, "-m", "dask"]
    file = tmp / "scheduler.json"
    _spawn(dask + ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--dashboard-address",
                   "127.0.0.1:0", "--scheduler-file", str(file), "--idle-timeout", "300s"],
           tmp / "scheduler.log", procs)
    address = _scheduler_address(file, procs[0][0], tmp / "scheduler.log", deadline)
    _spawn(dask + ["worker", address, "--nworkers", str(workers), "--nthreads", "1", "--host", "127.0.0.1",
                   "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--local-directory", str(tmp / "workers"),
                   "--death-timeout", "60s"], tmp / "workers.log", procs)
    left = max(1.0, deadline - time.monotonic())
    wait = subprocess.run([sys.executable, "-c", WAIT_FOR_WORKERS, address, str(workers), str(left)],
                          capture_output=True, text=True, timeout=left + 30.0, cwd=tmp)
    if wait.returncode != 0:
        raise RuntimeError(f"{workers} Dask worker(s) did not join the scheduler: {_tail(tmp / 'workers.log')}")
    return address


def _scheduler_address(file: Path, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            return str(json.loads(file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with status {proc.returncode}: {_tail(log)}")
        time.sleep(0.1)
    raise RuntimeError(f"dask scheduler did not start in time: {_tail(log)}")


def stop_cluster(procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]]) -> None:
    """SIGTERM to each process group (workers first), SIGKILL to what is left after ``STOP_WAIT_S``; logs closed."""
    for proc, _ in reversed(procs):
        _signal_group(proc, signal.SIGTERM)
    for proc, err in reversed(procs):
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)  # whatever of its group is left (a worker process its nanny lost)
        proc.wait()
        err.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(log: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return " | ".join(lines[-n:])[-400:] or "(no output)"


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "batch_one_process": batch_one_process, "batch_local": batch_local, "batch_scheduler": batch_scheduler,
}

__all__ = ["TASKS", "batch_local", "batch_one_process", "batch_scheduler", "read_table", "start_cluster",
           "stop_cluster", "timed_batch"]
