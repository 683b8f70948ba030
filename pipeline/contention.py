"""Was a timed measurement a result, or did it compete with other processes for the CPU?

A ``sonolens bench --quick`` run on a 2-core machine while another process kept one core busy timed the student in
eager PyTorch at 511 ms (3.6 ms quiet) and the paper teacher at 2152 ms (≈ 350 ms): torch's one-thread-per-core
OpenMP team spin-waits for a thread the scheduler has parked. Such a figure is not a measurement of the model, so the
benchmark records, for every timed task, what the process got from the CPU and flags the figure instead of printing
it as a result.

What is recorded (``CpuWatch`` → ``record``), Linux counters where available:

* ``cpu_per_wall``: process CPU seconds (every thread) per wall second of the timed loop. A compute-bound loop with
  a core of its own gets at least ~1; far below 1 means it was waiting for a CPU.
* ``run_delay_share``: of the time the process's threads were ready to run, the share they spent waiting on a run
  queue (``/proc/self/task/*/schedstat``, the scheduler's own account). 0 on a quiet machine.
* ``others_busy_cores``: how many of this process's usable cores other processes kept busy during the loop
  (``/proc/stat`` busy time of those CPUs, steal included, minus this process's CPU time).
* the load average before and after, and the thread count the task asked for.

Waiting behind the process's own threads is not contention: a pipeline's decode, inference and encoder threads
share 2 cores by design, and that is part of what is measured. So the run-queue wait counts only while other
processes were busy too.

``judge(record, latency)`` turns a record (and the spread of the repeats) into ``{"contended", "reasons"}``; it is
pure, so the rules are tested on fake records. ``free_cores`` picks torch's thread count: the usable cores
(``os.sched_getaffinity``) minus those other processes are keeping busy right now.

This module imports nothing heavy: the torch-free measurement processes use it too.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

# Rules (see ``judge``). Below MIN_WALL_S a section is not judged on its CPU counters at all; below OTHERS_MIN_WALL_S
# the tick-based /proc/stat figure (10 ms ticks) is too coarse and counts as unknown.
MIN_WALL_S = 0.02
OTHERS_MIN_WALL_S = 0.1
CPU_PER_WALL_MIN = 0.75  # compute-bound loops only
RUN_DELAY_MAX = 0.20
OTHERS_BUSY_MIN = 0.5
SPREAD_MIN_N = 10
SPREAD_MAX = 2.5  # p90 / p10 of the repeats
NOT_A_RESULT = "contended: not a result"

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_set() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def system_busy_s(cpus: set[int] | None = None) -> float | None:
    """Busy seconds (user, nice, system, irq, softirq, steal) of the given CPUs since boot, from ``/proc/stat``;
    None where it cannot be read."""
    cpus = _cpu_set() if cpus is None else cpus
    try:
        text = Path("/proc/stat").read_text()
    except OSError:
        return None
    busy = 0
    seen = False
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        try:
            idx = int(name[3:])
        except ValueError:
            continue
        if idx not in cpus:
            continue
        v = [int(x) for x in vals[:8]] + [0] * max(0, 8 - len(vals))
        user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
        busy += user + nice + system + irq + softirq + steal
        seen = True
    return busy / _CLK_TCK if seen else None


def thread_schedstats() -> dict[int, tuple[int, int]] | None:
    """``{tid: (on-CPU ns, run-queue wait ns)}`` of this process's threads; None where schedstat is absent."""
    base = Path("/proc/self/task")
    try:
        tids = os.listdir(base)
    except OSError:
        return None
    out: dict[int, tuple[int, int]] = {}
    for tid in tids:
        try:
            run_ns, wait_ns, *_ = (base / tid / "schedstat").read_text().split()
            out[int(tid)] = (int(run_ns), int(wait_ns))
        except (OSError, ValueError):
            continue  # the thread ended between listdir and read
    return out or None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class CpuWatch:
    """Counters around a timed section: ``w = CpuWatch(); ...; rec = w.record(threads=1, compute_bound=True)``.

    ``poll=True`` also samples the per-thread scheduler counters every ``poll_s`` on a helper thread, so threads
    that start and end inside the section (a pipeline's capture and worker threads) are counted up to their last
    sample. Without it (tight timing loops, where a helper thread would add jitter) only threads alive at both
    ends count, which is every thread of a model's timing loop.
    """

    def __init__(self, poll: bool = False, poll_s: float = 0.25) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._busy0 = system_busy_s()
        self._load0 = _loadavg()
        first = thread_schedstats()
        self._first: dict[int, tuple[int, int]] = dict(first or {})
        self._last: dict[int, tuple[int, int]] = dict(first or {})
        self._has_sched = first is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if poll and self._has_sched:
            self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="sonolens-cpuwatch",
                                            daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        now = thread_schedstats() or {}
        for tid, v in now.items():
            self._first.setdefault(tid, (0, 0))  # born inside the section: all its time is inside
            self._last[tid] = v

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            self._sample()

    def record(self, *, threads: int | None = None, compute_bound: bool = True) -> dict[str, Any]:
        """Stop watching and return the record (call once, right after the timed section)."""
        wall = time.perf_counter() - self._t0
        cpu = time.process_time() - self._cpu0
        busy1 = system_busy_s()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        run_ns = wait_ns = None
        if self._has_sched:
            self._sample()
            run_ns = sum(self._last[t][0] - self._first[t][0] for t in self._last)
            wait_ns = sum(self._last[t][1] - self._first[t][1] for t in self._last)
        others = None
        if self._busy0 is not None and busy1 is not None and wall > 0:
            others = max(0.0, ((busy1 - self._busy0) - cpu) / wall)
        return make_record(wall_s=wall, cpu_s=cpu, run_ns=run_ns, wait_ns=wait_ns, others_busy_cores=others,
                           threads=threads, compute_bound=compute_bound, loadavg_before=self._load0,
                           loadavg_after=_loadavg())


def make_record(*, wall_s: float, cpu_s: float, run_ns: int | None = None, wait_ns: int | None = None,
                others_busy_cores: float | None = None, threads: int | None = None, compute_bound: bool = True,
                loadavg_before: list[float] | None = None, loadavg_after: list[float] | None = None,
                usable: int | None = None) -> dict[str, Any]:
    """The JSON record of one timed section (what ``CpuWatch.record`` returns; tests build fake ones)."""
    share = None
    if run_ns is not None and wait_ns is not None and run_ns + wait_ns > 0:
        share = wait_ns / (run_ns + wait_ns)
    return {"wall_s": wall_s, "cpu_s": cpu_s, "cpu_per_wall": cpu_s / wall_s if wall_s > 0 else None,
            "run_delay_share": share, "others_busy_cores": others_busy_cores, "threads": threads,
            "usable_cores": usable if usable is not None else usable_cores(), "compute_bound": compute_bound,
            "loadavg_before": loadavg_before, "loadavg_after": loadavg_after}


def judge(rec: dict[str, Any] | None, latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"contended", "judged", "reasons", "context"}`` for one record and, optionally, the latency percentiles
    of its repeats (``n``, ``p10``, ``p90``).

    Contended when any of these holds:

    * a compute-bound loop got less than ``CPU_PER_WALL_MIN`` CPU-seconds per wall second (its own threads cannot
      cause that: their CPU time counts);
    * its threads spent ``RUN_DELAY_MAX`` or more of their ready time waiting on a run queue *and* other processes
      kept ``OTHERS_BUSY_MIN`` cores or more busy meanwhile (waiting behind its own threads, as a pipeline's
      decode, inference and encoder threads do on 2 cores, is part of what is measured); where the others' load is
      unknown, the wait alone;
    * where the run-queue account is unavailable: other processes kept ``OTHERS_BUSY_MIN`` cores or more busy and,
      with the threads this task asked for, more cores were wanted than the process may use;
    * at least ``SPREAD_MIN_N`` repeats whose p90 is ``SPREAD_MAX`` times their p10 or more.

    Sections shorter than ``MIN_WALL_S`` are not judged on the CPU counters (``judged`` is then False unless the
    spread rule applied).
    """
    reasons: list[str] = []
    context = ""
    judged = False
    if rec:
        wall = rec.get("wall_s") or 0.0
        usable = rec.get("usable_cores") or 1
        cpw, share = rec.get("cpu_per_wall"), rec.get("run_delay_share")
        others = rec.get("others_busy_cores") if wall >= OTHERS_MIN_WALL_S else None
        bits = []
        if others is not None:
            bits.append(f"other processes busy on {others:.1f} of {usable} cores")
        load = rec.get("loadavg_before"), rec.get("loadavg_after")
        if load[0] and load[1]:
            bits.append(f"load average {load[0][0]:.1f} → {load[1][0]:.1f}")
        context = ", ".join(bits)
        if wall >= MIN_WALL_S:
            judged = True
            if rec.get("compute_bound") and cpw is not None and cpw < CPU_PER_WALL_MIN:
                reasons.append(f"a compute-bound loop got {cpw:.2f} CPU-s per wall-s (< {CPU_PER_WALL_MIN:g})")
            if share is not None and share >= RUN_DELAY_MAX and (others is None or others >= OTHERS_BUSY_MIN):
                reasons.append(f"its threads waited on a run queue {share:.0%} of the time they were ready to run "
                               f"(≥ {RUN_DELAY_MAX:.0%})")
            if share is None and others is not None and others >= OTHERS_BUSY_MIN:
                wanted = min(rec.get("threads") or usable, usable)
                if others + wanted > usable + 0.25:
                    reasons.append(f"other processes kept {others:.1f} of {usable} cores busy while it wanted "
                                   f"{wanted}")
    if latency and (latency.get("n") or 0) >= SPREAD_MIN_N and latency.get("p10") and latency.get("p90"):
        judged = True
        spread = latency["p90"] / latency["p10"]
        if spread >= SPREAD_MAX:
            reasons.append(f"its {latency['n']} repeats spread {spread:.1f}× (p90 / p10 ≥ {SPREAD_MAX:g})")
    return {"contended": bool(reasons), "judged": judged, "reasons": reasons, "context": context}


def others_busy_now(sample_s: float = 0.5) -> float | None:
    """Cores of this process's CPU set that other processes keep busy, over ``sample_s`` (None: unknown)."""
    b0, c0, t0 = system_busy_s(), time.process_time(), time.perf_counter()
    if b0 is None:
        return None
    time.sleep(sample_s)
    b1, c1, t1 = system_busy_s(), time.process_time(), time.perf_counter()
    if b1 is None or t1 <= t0:
        return None
    return max(0.0, ((b1 - b0) - (c1 - c0)) / (t1 - t0))


def free_cores(sample_s: float = 0.5) -> tuple[int, str]:
    """(cores free for this process now, how that was decided): usable cores minus the cores other processes keep
    busy, at least 1. A core counts as taken from 0.3 of a core busy on: one thread too few costs a fraction, one
    too many can cost 100× (torch's spin-waiting team). Where ``/proc/stat`` is unreadable, the 1-minute load
    average stands in for the others' load."""
    usable = usable_cores()
    others = others_busy_now(sample_s)
    if others is not None:
        basis = f"{usable} usable cores, other processes busy on {others:.2f}"
    else:
        load = _loadavg()
        others = load[0] if load else 0.0
        basis = f"{usable} usable cores, load average {others:.1f}"
    free = max(1, min(usable, usable - int(others + 0.7)))
    return free, basis


__all__ = ["NOT_A_RESULT", "CpuWatch", "free_cores", "judge", "make_record", "others_busy_now", "usable_cores"]
