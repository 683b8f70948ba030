"""Paired differences on the breast cine clips, from ``sonolens cine-eval --json`` files named ``RECIPE_sSEED.json``.

    python docs/kd/paired_cine.py docs/kd/cine/*.json --md docs/kd/cine_paired.md [--a kd --b nomarks]

For every seed both recipes have: the patient- and clip-level AUC of the mean P(malignant) over every frame and over
the frames the gate lets through, the share of frames flagged and the median top-class changes per second; then
A − B per seed, its mean and the two-sided 95 % Student-t interval over seeds (``training.seed_summary``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sonolens.pipeline.outputs import write_text_atomic
from sonolens.training.seed_summary import mean_sd, t_interval

FIGURES = (("patient AUC, every frame", lambda s: s["patient_auc_all"]["auc"]),
           ("patient AUC, gated", lambda s: s["patient_auc_gated"]["auc"]),
           ("clip AUC, every frame", lambda s: s["clip_auc_all"]["auc"]),
           ("frames flagged %", lambda s: 100 * s["flagged_frames"]),
           ("top-class changes/s (median)", lambda s: s["changes_per_s_all_frames"]["median"]))


def read(paths: list[str]) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for path in paths:
        m = re.fullmatch(r"(.+)_s(\d+)", Path(path).stem)
        if not m:
            sys.exit(f"{path}: name it RECIPE_sSEED.json")
        runs.setdefault(m[1], {})[int(m[2])] = json.loads(Path(path).read_text(encoding="utf-8"))["summary"]
    return runs


def table(runs: dict[str, dict[int, dict]], a: str, b: str) -> str:
    seeds = sorted(set(runs[a]) & set(runs[b]))
    lines = [f"Seeds {', '.join(map(str, seeds))}; {a} − {b} paired by seed, 95 % Student-t interval over seeds.", "",
             f"| figure | {a} per seed | {b} per seed | {a} − {b} per seed | mean difference | 95 % interval |",
             "|---|---|---|---|---|---|"]
    for name, get in FIGURES:
        va, vb = [get(runs[a][s]) for s in seeds], [get(runs[b][s]) for s in seeds]
        diffs = [x - y for x, y in zip(va, vb)]
        ci = t_interval(diffs)
        fmt = ", ".join
        lines.append(f"| {name} | {fmt(f'{v:.3f}' for v in va)} | {fmt(f'{v:.3f}' for v in vb)} | "
                     f"{fmt(f'{d:+.3f}' for d in diffs)} | {mean_sd(diffs)[0]:+.3f} | "
                     + (f"{ci[0]:+.3f} … {ci[1]:+.3f} |" if ci else "– |"))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--a", default="kd")
    p.add_argument("--b", default="nomarks")
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    text = table(read(args.files), args.a, args.b)
    print(text, end="")
    if args.md:
        write_text_atomic(args.md, text, "paired cine table")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
