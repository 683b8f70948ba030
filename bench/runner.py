"""Step 4 of ``sonolens bench``: run the jobs, each measurement in a fresh interpreter, and collect the answers.

``run_child`` writes a task list to a JSON file, runs ``python -m sonolens.bench.child`` and reads the answer back;
``execute`` runs a list of ``jobs.Job``s, one subprocess each or pooled per kind when the plan says so. This module
knows the plan's jobs, never the other way round (``inputs`` uses ``run_child`` to prepare a student file).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .jobs import Job
from .plan import Plan

Say = Callable[[str], None]


def run_child(tasks: list[dict[str, Any]], timeout: float = 600.0) -> dict[str, Any]:
    """Run ``tasks`` (``{"task": name, "args": {...}}``) in a fresh ``python -m sonolens.bench.child``
    and return its answer: ``results`` (one per task: ok/result or error, peak_rss_mb, torch_imported),
    ``peak_rss_mb`` and ``torch_imported`` of the whole process. A crash or timeout becomes per-task errors."""
    with tempfile.TemporaryDirectory(prefix="sonolens-bench-") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"tasks": tasks}))
        cmd = [sys.executable, "-m", "sonolens.bench.child", str(spec), str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
            failure = None if proc.returncode == 0 and out.is_file() else \
                f"bench subprocess exited with status {proc.returncode}: {_tail(proc.stderr)}"
        except subprocess.TimeoutExpired:
            failure = f"bench subprocess timed out after {timeout:.0f} s"
        if failure is None:
            return json.loads(out.read_text())
    return {"results": [{"ok": False, "task": t["task"], "error": failure} for t in tasks],
            "peak_rss_mb": None, "torch_imported": None}


def _tail(text: str, n: int = 400) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-4:])[-n:] if lines else "(no output)"


def execute(jobs: list[Job], plan: Plan, say: Say) -> dict[str, list[dict[str, Any]]]:
    """Run the jobs in order; ``{job.key: [task result, ...]}``.

    Jobs run one subprocess each, except that a plan may pool its torch jobs (``isolate_torch=False``) or its
    runtime jobs (``isolate_runtime=False``) into one subprocess per kind, to save interpreter and torch start-up
    in the short modes. Each task result carries ``isolated``: whether its peak RSS is its own (first task of
    its process) or that of a shared process so far (an upper bound).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    pooled = [j for j in jobs if not j.own_process and not (plan.isolate_torch if j.torch else plan.isolate_runtime)]
    alone = [j for j in jobs if j not in pooled]
    n = len(alone) + len({j.torch for j in pooled})
    i = 0
    for job in alone:
        i += 1
        say(f"[{i}/{n}] {job.label or job.key}")
        ans = run_child(job.tasks, timeout=job.timeout_s)
        out[job.key] = [dict(r, isolated=(k == 0)) for k, r in enumerate(ans["results"])]
        _say_failures(ans["results"], say)
    for torch_group in (True, False):
        group = [j for j in pooled if j.torch == torch_group]
        if group:
            i += 1
            say(f"[{i}/{n}] {len(group)} {'torch' if torch_group else 'runtime'} jobs in one process: "
                + ", ".join(j.key for j in group))
            out.update(_run_pooled(group, say))
    return out


def _run_pooled(group: list[Job], say: Say) -> dict[str, list[dict[str, Any]]]:
    """The tasks of ``group`` in one subprocess, their results handed back to each job; only the process's first
    task is ``isolated``."""
    out: dict[str, list[dict[str, Any]]] = {}
    ans = run_child([t for j in group for t in j.tasks], timeout=max(j.timeout_s for j in group))
    results = iter(ans["results"])
    first = True
    for job in group:
        out[job.key] = []
        for _ in job.tasks:
            r = next(results)
            out[job.key].append(dict(r, isolated=first))
            first = False
            _say_failures([r], say)
    return out


def _say_failures(results: list[dict[str, Any]], say: Say) -> None:
    for r in results:
        if not r.get("ok"):
            say(f"    failed: {r.get('error')}")


__all__ = ["Job", "execute", "run_child"]
