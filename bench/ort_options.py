"""``sonolens ort-options MODEL [MODEL ...]``: ONNX Runtime's session options on a student file.

The breast model issue asks what ONNX Runtime's INT8 and graph options are worth for the default student's
forward pass (logits + CAM + out-of-domain score, batch 1, the call the inference worker makes). Each variant is a
session built like ``pipeline.engines.OnnxEngine`` with one thing changed:

* ``runtime`` — the runtime's own options (intra-op threads 0 = one per core, ``ORT_ENABLE_ALL``);
* ``threads 1`` / ``threads 2`` — intra-op threads fixed;
* ``extended`` — ``ORT_ENABLE_EXTENDED`` instead of ``ORT_ENABLE_ALL`` (no layout transformation to NCHWc);
* ``no spinning`` — intra-op threads sleep instead of spinning between calls
  (``session.intra_op.allow_spinning = 0``).

Variants are timed in interleaved rounds (each round times every variant of every file in turn), so that a change
of machine load spreads over all of them; each timed section carries the CPU record and verdict of
``pipeline.contention`` — a figure measured under contention is flagged, as ``sonolens bench`` does.
Writes a Markdown table to stdout, and ``--json`` everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable, write_text_atomic

VARIANTS: dict[str, dict[str, Any]] = {
    "runtime": {},
    "threads 1": {"threads": 1},
    "threads 2": {"threads": 2},
    "extended": {"level": "extended"},
    "no spinning": {"spinning": False},
}


def make_session(path: Path, threads: int = 0, level: str = "all", spinning: bool = True):
    """An ONNX Runtime session as ``OnnxEngine`` builds it, with one option changed."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level == "all"
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def forward(path: Path, **options: Any) -> Callable[[], Any]:
    """One call of the runtime's forward pass (every output the inference worker asks for) on a fixed input."""
    from sonolens.pipeline.engines import OnnxEngine

    meta = OnnxEngine(path, threads=1).meta
    session = make_session(path, **options)
    outputs = [o.name for o in session.get_outputs() if o.name in ("logits", "cam", "ood_score")]
    h, w = meta.input_size
    x = np.random.default_rng(0).standard_normal((1, 3, int(h), int(w))).astype(np.float32)
    name = session.get_inputs()[0].name
    return lambda: session.run(outputs, {name: x})


def measure(paths: list[Path], rounds: int, iters: int) -> dict[str, Any]:
    """Every variant of every file, ``rounds`` interleaved rounds of ``iters`` calls each."""
    from sonolens.bench.child import time_calls
    from sonolens.pipeline.contention import judge

    calls = {(p.name, v): forward(p, **opts) for p in paths for v, opts in VARIANTS.items()}
    ms: dict[tuple[str, str], list[float]] = {k: [] for k in calls}
    verdicts: dict[tuple[str, str], list[bool]] = {k: [] for k in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            times, _wall, rec = time_calls(fn, iters, warmup=5, max_s=30.0, threads=None)
            ms[key] += times
            verdicts[key].append(bool(judge(rec)["contended"]))
    return {"rounds": rounds, "iters": iters, "rows": [
        {"file": f, "variant": v, "p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
         "n": len(t), "contended_rounds": sum(verdicts[(f, v)])} for (f, v), t in ms.items()]}


def markdown(res: dict[str, Any]) -> str:
    lines = ["| file | variant | p50 ms | p90 ms | calls | rounds flagged contended |", "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| `{r['file']}` | {r['variant']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['n']} | "
                     f"{r['contended_rounds']} of {res['rounds']} |")
    return "\n".join(lines) + "\n"


def cli_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="sonolens ort-options",
                                description="ONNX Runtime session options on student files (forward with CAM and "
                                            "score, batch 1), interleaved rounds, contention flagged.")
    p.add_argument("models", nargs="+", help="ONNX student files")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    paths = [Path(m) for m in args.models]
    missing = [str(m) for m in paths if not m.is_file()]
    if missing:
        raise ConfigError(f"no such model file: {', '.join(missing)}")
    if args.rounds < 1 or args.iters < 3:
        raise ConfigError("--rounds must be >= 1 and --iters >= 3")
    if args.json:
        check_writable(args.json, "timings")
    res = measure(paths, args.rounds, args.iters)
    print(markdown(res), end="")
    if args.json:
        write_text_atomic(args.json, json.dumps(res, indent=1), "timings")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))
