"""Run the recordings' tasks on Dask: an embedded ``LocalCluster`` (one single-threaded worker process per core) or an
existing scheduler (``--scheduler tcp://HOST:8786``, started with ``dask scheduler`` and ``dask worker``).

One task per recording, biggest first (the long ones do not straggle at the end); each result is stored as soon as
it arrives (``store.Store.save``), so an interrupted batch keeps everything finished. A worker that dies on a
recording three times over (``distributed.scheduler.allowed-failures``) makes that recording's row an error; a task
lost any other way (the cluster going away) is reported and runs again next time. Ctrl-C / SIGTERM
(``KeyboardInterrupt`` from ``pipeline.shutdown.ShutdownSignals``) cancels what is left, closes the client and the
embedded cluster, and returns with ``interrupted`` set.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, KilledWorker, LocalCluster, as_completed

from sonolens.pipeline.errors import SonolensError, reason

from .discover import Recording
from .progress import Progress
from .store import Store
from .task import EnginePlugin, Job, process_recording, summarise

CONNECT_TIMEOUT_S = 30
WORKERS_TIMEOUT_S = 60
CLOSE_TIMEOUT_S = 20


@dataclass
class Outcome:
    processed: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    interrupted: bool = False
    workers: int = 0


def open_client(scheduler: str | None, workers: int) -> tuple[Client, LocalCluster | None]:
    """A client of ``scheduler`` (waiting for at least one worker), or of a new ``LocalCluster`` of ``workers``
    single-threaded worker processes."""
    if scheduler is None:
        cluster = _local_cluster(workers)
        try:
            return Client(cluster, set_as_default=False), cluster
        except BaseException:
            cluster.close()
            raise
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SonolensError(f"cannot reach the Dask scheduler at {scheduler}: {reason(exc)}") from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (TimeoutError, OSError) as exc:
        client.close()
        raise SonolensError(f"the Dask scheduler at {scheduler} has no worker (waited {WORKERS_TIMEOUT_S} s): "
                            f"start some with 'dask worker {scheduler}' ({reason(exc)})") from None
    return client, None


def _local_cluster(workers: int) -> LocalCluster:
    """The embedded cluster, its worker processes started with SIGINT ignored (inherited through the spawn): a
    terminal's Ctrl-C reaches the whole process group, and only this process shuts the cluster down — the workers
    would otherwise die at once, each printing a traceback. A Ctrl-C while they start is lost (SIGTERM is not)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        # Dask's own logs stay quiet (the shutdown's "failed to communicate with the scheduler" with its traceback
        # included): every recording's fate is in the table, and the progress line says what happens
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.CRITICAL)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def register_engine(client: Client, plugin: EnginePlugin) -> None:
    try:
        client.register_plugin(plugin, name=plugin.name)
    except Exception as exc:  # raised by a worker: sonolens missing there, a broken ONNX Runtime…
        raise SonolensError(f"the Dask workers could not load the model ({type(exc).__name__}: {reason(exc)}); "
                            "every worker needs sonolens[batch] installed") from None


def run_tasks(client: Client, todo: Sequence[Recording], job: Job, store: Store, progress: Progress,
              outcome: Outcome) -> None:
    """Submit one task per recording and store each result as it arrives."""
    token = uuid.uuid4().hex[:8]
    order = sorted(todo, key=lambda r: r.size, reverse=True)
    futures = {}
    for i, rec in enumerate(order):
        fut = client.submit(process_recording, rec, job, key=f"sonolens-batch-{token}-{rec.id}", pure=False,
                            priority=len(order) - i)
        futures[fut.key] = (fut, rec)
    outcome.workers = len(client.scheduler_info().get("workers", {}))
    try:
        for fut in as_completed([f for f, _ in futures.values()], loop=client.loop):
            _collect(fut, futures[fut.key][1], job, store, progress, outcome)
            fut.release()
    finally:
        client.cancel([f for f, _ in futures.values() if not f.done()])


def _collect(fut: Any, rec: Recording, job: Job, store: Store, progress: Progress, outcome: Outcome) -> None:
    try:
        record = fut.result()
    except KilledWorker as exc:
        error = f"a Dask worker died each time it processed this recording ({reason(exc, 120)})"
        record = {"row": summarise(rec, None, job, error, 0.0), "frames_csv": None, "worker": "?"}
    except Exception as exc:  # the cluster lost the task (shutdown, network): not a result, run again next time
        outcome.lost.append(f"{rec.rel} ({type(exc).__name__}: {reason(exc, 120)})")
        progress.update(failed=True)
        return
    store.save(rec, record)
    outcome.processed += 1
    failed = bool(record["row"].get("error"))
    outcome.failed += int(failed)
    progress.update(failed=failed)


def run_on_cluster(todo: Sequence[Recording], job: Job, store: Store, plugin: EnginePlugin, *,
                   scheduler: str | None, workers: int, progress: Progress,
                   on_ready: Any = None) -> Outcome:
    """Everything from starting (or joining) the cluster to closing it; Ctrl-C returns ``interrupted``."""
    outcome = Outcome()
    client = cluster = None
    try:
        client, cluster = open_client(scheduler, workers)
        register_engine(client, plugin)
        if on_ready is not None:
            on_ready(client)
        run_tasks(client, todo, job, store, progress, outcome)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        progress.close()
        close(client, cluster)
    return outcome


def close(client: Client | None, cluster: LocalCluster | None) -> None:
    """Close the client, then the embedded cluster (never an existing one: it belongs to whoever started it)."""
    for thing in (client, cluster):
        if thing is None:
            continue
        try:
            thing.close(timeout=CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - shutting down: a half-closed comm must not hide the batch's outcome
            logging.getLogger(__name__).debug("closing %r failed", thing, exc_info=True)


__all__ = ["Outcome", "open_client", "register_engine", "run_tasks", "run_on_cluster", "close"]
