"""Subprocesses for ``sonolens bench``: start a measurement in a fresh interpreter, collect its answer.

``run_child`` writes the task list to a JSON file, runs ``python -m sonolens.bench.child`` and reads the
answer back; ``execute`` runs a list of ``Job``s, one subprocess each or pooled per kind when the plan says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import Plan


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


@dataclass
class Job:
    """One or more tasks that belong in the same subprocess (e.g. the four runs of one clip)."""

    key: str
    tasks: list[dict[str, Any]]
    torch: bool
    label: str = ""
    own_process: bool = False  # always in a process of its own, even when the plan groups jobs
    timeout_s: float = 600.0  # of its subprocess (a pooled group gets the largest of its jobs')


def execute(jobs: list[Job], plan: Plan, say) -> dict[str, list[dict[str, Any]]]:
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
        for r in ans["results"]:
            if not r.get("ok"):
                say(f"    failed: {r.get('error')}")
    for torch_group in (True, False):
        group = [j for j in pooled if j.torch == torch_group]
        if not group:
            continue
        i += 1
        say(f"[{i}/{n}] {len(group)} {'torch' if torch_group else 'runtime'} jobs in one process: "
            + ", ".join(j.key for j in group))
        ans = run_child([t for j in group for t in j.tasks], timeout=max(j.timeout_s for j in group))
        results = iter(ans["results"])
        first = True
        for job in group:
            out[job.key] = []
            for _ in job.tasks:
                r = next(results)
                out[job.key].append(dict(r, isolated=first))
                first = False
                if not r.get("ok"):
                    say(f"    failed: {r.get('error')}")
    return out



__all__ = ["Job", "execute", "run_child"]
