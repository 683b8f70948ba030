"""The CPU record of a group of processes measured together (the streams section's N separate ``sonolens run``
processes): what ``contention.CpuWatch`` records for one process, over this process and the children it started.

``GroupWatch(pids)`` starts at the moment the children are told to go; ``record()``, called once every child has been
waited for, returns a ``contention.make_record`` record (``judge`` reads it as any other):

* ``cpu_s``: this process's CPU time plus the children's over the section — their whole-life CPU time from
  ``getrusage(RUSAGE_CHILDREN)`` (exact once they are reaped) minus what each had used before the section
  (``/proc/PID/stat``), so their start-up (imports, model loading) is not counted;
* the run-queue account: the children's threads' ``/proc/PID/task/*/schedstat``, sampled every ``poll_s`` (a thread
  is counted up to its last sample, as ``CpuWatch(poll=True)`` counts threads that end inside its section);
* ``others_busy_cores``: busy time of this process's CPUs (``/proc/stat``) minus the group's CPU time, per wall
  second: only processes outside the group count as others, so the children competing with each other — what the
  measurement is about — is not contention.

``TreeWatch()`` is the same record for this process and every process below it (the batch section: ``sonolens batch``
in this process with its LocalCluster's worker processes, or beside a scheduler and workers this process started),
found by walking ``/proc`` from this process down, at the start, every ``poll_s`` and at the end:

* ``cpu_s``: the tree's CPU time at the end minus at the start, each process counted with the CPU time of the children
  it has waited for (``/proc/PID/stat`` fields 14–17): a process that ends inside the section is counted through the
  parent that waits for it, less what it had used before the section; no process has to end for its time to count;
* the run-queue account and ``others_busy_cores`` as for ``GroupWatch``, over the tree's threads and CPU time.

Linux only where it counts (``/proc``); elsewhere the record has what ``make_record`` can do without it.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sonolens.pipeline.contention import make_record, system_busy_s

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``); None where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime: fields 14 and 15 of the line
    except (OSError, ValueError, IndexError):
        return None


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds of process ``pid`` and of the children it has waited for) from
    ``/proc/PID/stat`` (fields 4 and 14–17); None where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        return int(fields[1]), sum(int(f) for f in fields[11:15]) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def process_tree(root: int) -> dict[int, float]:
    """``{pid: CPU seconds (its own and its waited-for children's)}`` of ``root`` and every process below it ({} where
    ``/proc`` cannot be read)."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return {}
    stats = {pid: st for pid in pids if (st := proc_stat(pid)) is not None}
    below: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in stats.items():
        below[ppid].append(pid)
    tree: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in tree:
            tree[pid] = stats[pid][1]
            todo.extend(below[pid])
    return tree


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's children that have been waited for."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def proc_schedstats(pid: int) -> dict[int, tuple[int, int]]:
    """``{tid: (on-CPU ns, run-queue wait ns)}`` of process ``pid``'s threads ({} once it is gone)."""
    base = Path(f"/proc/{pid}/task")
    try:
        tids = os.listdir(base)
    except OSError:
        return {}
    out: dict[int, tuple[int, int]] = {}
    for tid in tids:
        try:
            run_ns, wait_ns, *_ = (base / tid / "schedstat").read_text().split()
            out[int(tid)] = (int(run_ns), int(wait_ns))
        except (OSError, ValueError):
            continue
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class GroupWatch:
    """Counters around a section in which the child processes ``pids`` run: ``w = GroupWatch(pids)``, tell them to
    go, wait for every one of them, ``rec = w.record()``."""

    def __init__(self, pids: list[int], poll_s: float = 0.25) -> None:
        self.pids = list(pids)
        self._t0 = time.perf_counter()
        self._own0 = time.process_time()
        self._reaped0 = children_cpu_s()
        self._before = sum(proc_cpu_s(pid) or 0.0 for pid in self.pids)
        self._busy0 = system_busy_s()
        self._load0 = _loadavg()
        self._first: dict[tuple[int, int], tuple[int, int]] = {}
        self._last: dict[tuple[int, int], tuple[int, int]] = {}
        for pid in self.pids:
            for tid, v in proc_schedstats(pid).items():
                self._first[(pid, tid)] = self._last[(pid, tid)] = v
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="sonolens-groupwatch", daemon=True)
        self._thread.start()

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            for pid in self.pids:
                for tid, v in proc_schedstats(pid).items():
                    self._first.setdefault((pid, tid), (0, 0))  # born inside the section
                    self._last[(pid, tid)] = v

    def record(self) -> dict[str, Any]:
        """Stop watching and return the group's record (call once, after every child has been waited for)."""
        wall = time.perf_counter() - self._t0
        own = time.process_time() - self._own0
        busy1 = system_busy_s()
        self._stop.set()
        self._thread.join()
        children = max(0.0, children_cpu_s() - self._reaped0 - self._before)
        run_ns = wait_ns = None
        if self._last:
            run_ns = sum(v[0] - self._first[k][0] for k, v in self._last.items())
            wait_ns = sum(v[1] - self._first[k][1] for k, v in self._last.items())
        others = None
        if self._busy0 is not None and busy1 is not None and wall > 0:
            others = max(0.0, ((busy1 - self._busy0) - own - children) / wall)
        return make_record(wall_s=wall, cpu_s=own + children, run_ns=run_ns, wait_ns=wait_ns,
                           others_busy_cores=others, threads=None, compute_bound=False, loadavg_before=self._load0,
                           loadavg_after=_loadavg())


class TreeWatch:
    """Counters around a section in which this process and the processes below it run (started before it or inside
    it): ``w = TreeWatch()``, run the section, ``rec = w.record()`` (the processes still running or not)."""

    def __init__(self, poll_s: float = 0.5) -> None:
        self.root = os.getpid()
        self._t0 = time.perf_counter()
        self._busy0 = system_busy_s()
        self._load0 = _loadavg()
        self._cpu0 = sum(process_tree(self.root).values())
        self._first: dict[tuple[int, int], tuple[int, int]] = {}
        self._last: dict[tuple[int, int], tuple[int, int]] = {}
        self._sample(first=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="sonolens-treewatch", daemon=True)
        self._thread.start()

    def _sample(self, first: bool = False) -> None:
        for pid in process_tree(self.root):
            for tid, v in proc_schedstats(pid).items():
                if first:
                    self._first[(pid, tid)] = v
                else:
                    self._first.setdefault((pid, tid), (0, 0))  # born inside the section
                self._last[(pid, tid)] = v

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            self._sample()

    def record(self) -> dict[str, Any]:
        """Stop watching and return the tree's record (call once, at the end of the section)."""
        wall = time.perf_counter() - self._t0
        busy1 = system_busy_s()
        cpu = max(0.0, sum(process_tree(self.root).values()) - self._cpu0)
        self._stop.set()
        self._thread.join()
        self._sample()
        run_ns = wait_ns = None
        if self._last:
            run_ns = sum(v[0] - self._first[k][0] for k, v in self._last.items())
            wait_ns = sum(v[1] - self._first[k][1] for k, v in self._last.items())
        others = None
        if self._busy0 is not None and busy1 is not None and wall > 0:
            others = max(0.0, ((busy1 - self._busy0) - cpu) / wall)
        return make_record(wall_s=wall, cpu_s=cpu, run_ns=run_ns, wait_ns=wait_ns, others_busy_cores=others,
                           threads=None, compute_bound=False, loadavg_before=self._load0, loadavg_after=_loadavg())


__all__ = ["GroupWatch", "TreeWatch", "children_cpu_s", "proc_cpu_s", "proc_schedstats", "proc_stat", "process_tree"]
