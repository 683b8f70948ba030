"""``sonolens seed-summary``: recipes compared over seeds, from ``sonolens external-eval --json`` files.

    sonolens seed-summary EXTERNAL.json [EXTERNAL2.json ...] --paired kd-featce --paired featce-baseline \\
        [--md OUT.md] [--json OUT.json]

Each model of the external-eval files is named ``RECIPE_sSEED`` (``kd_s0``, ``kd_s1``…); a name without the
``_sN`` suffix is a recipe run once (the teacher). For every recipe and every evaluation set (BUSI canonical test,
BUS-UCLM test, the external Polish set), the table gives the mean ± sample standard deviation over seeds of:

* the 3-class accuracy (``accuracy_3class``; on the lesion-only external set: the share of lesions given their own
  class),
* the benign-vs-malignant AUC of P(m) / (P(b) + P(m)),
* the sensitivity at 90 % specificity read off each set's ROC;
* on a row ``val (selection)``: the validation accuracy the run's checkpoint was selected by (its provenance).

The line under the table names the seeded run with the highest validation accuracy (ties: the higher
validation macro-F1, then the first in file order) — the rule that picks the shipped student without looking at
any test or external set.

``--paired A-B`` adds the paired difference A − B over the seeds both recipes have (same seed = same data order
and augmentation stream): mean, sd, the per-seed values, and a two-sided 95 % Student-t interval over seeds
(t with n − 1 degrees of freedom; with 3 seeds t = 4.30, so the interval is wide — the honest width of three
runs). A recipe missing a seed, a duplicated model name or a file that is not an external-eval JSON is a
``ConfigError`` (one line, exit status 2 from ``sonolens``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .results_table import read_json_object

METRICS = (("accuracy_3class", "3-class acc. %", 100.0), ("auc", "AUC", 1.0),
           ("sens_at_90_spec", "sens. @ 90 % spec. %", 100.0))
VAL = "val (selection)"
SEED_NAME = re.compile(r"^(?P<recipe>.+)_s(?P<seed>\d+)$")
# two-sided 95 % Student-t quantiles, df = 1..10 (scipy.stats.t.ppf(0.975, df))
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def split_name(name: str) -> tuple[str, int | None]:
    """``"kd_s2"`` → ``("kd", 2)``; ``"teacher"`` → ``("teacher", None)``."""
    m = SEED_NAME.match(name)
    return (m["recipe"], int(m["seed"])) if m else (name, None)


def read_runs(paths: Sequence[str | Path]) -> dict[str, dict[int | None, dict[str, dict[str, Any]]]]:
    """``{recipe: {seed: {set: metrics}}}`` from external-eval JSON files (their ``models`` entries)."""
    runs: dict[str, dict[int | None, dict[str, dict[str, Any]]]] = {}
    for path in paths:
        p = Path(path)
        models = read_json_object(p, "a 'sonolens external-eval --json' file").get("models")
        if not isinstance(models, dict) or not models:
            raise ConfigError(f"{p}: not a 'sonolens external-eval --json' file (no models)")
        for name, entry in models.items():
            recipe, seed = split_name(name)
            if seed in runs.setdefault(recipe, {}):
                raise ConfigError(f"model {name!r} appears twice")
            sets = entry.get("sets") if isinstance(entry, dict) else None
            if not isinstance(sets, dict):
                raise ConfigError(f"{p}: model {name!r} has no sets")
            prov = entry.get("provenance") or {}
            val_acc = prov.get("val_accuracy")
            runs[recipe][seed] = ({**sets, VAL: {"accuracy_3class": val_acc, "macro_f1": prov.get("val_macro_f1")}}
                                  if val_acc is not None else sets)
    return runs


def best_by_validation(runs) -> tuple[str, float] | None:
    """(``RECIPE_sSEED``, validation accuracy) of the seeded run with the highest validation accuracy; ties (146
    validation images give few distinct values) go to the higher validation macro-F1, then to file order."""
    best: tuple[str, float] | None = None
    key_best: tuple[float, float] | None = None
    for recipe, by_seed in runs.items():
        for seed, sets in by_seed.items():
            val = sets.get(VAL) or {}
            if seed is None or val.get("accuracy_3class") is None:
                continue
            key = (float(val["accuracy_3class"]), float(val.get("macro_f1") or 0.0))
            if key_best is None or key > key_best:
                best, key_best = (f"{recipe}_s{seed}", key[0]), key
    return best


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for one value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """Two-sided 95 % Student-t interval of the mean of ``values`` (None for fewer than 2 or more than 11)."""
    n = len(values)
    if n < 2 or n - 1 > len(T975):
        return None
    m, sd = mean_sd(values)
    h = T975[n - 2] * sd / math.sqrt(n)
    return m - h, m + h


def summarise(runs, sets: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (recipe, set): n seeds and mean/sd of each metric in ``METRICS``."""
    rows = []
    for recipe, by_seed in runs.items():
        names = sets or sorted({s for r in by_seed.values() for s in r})
        for set_name in names:
            present = [r[set_name] for r in by_seed.values() if set_name in r]
            if not present:
                continue
            row: dict[str, Any] = {"recipe": recipe, "dataset": set_name, "n_seeds": len(present)}
            for key, _, _ in METRICS:
                vals = [float(r[key]) for r in present if r.get(key) is not None]
                if vals:
                    row[key] = dict(zip(("mean", "sd"), mean_sd(vals)), values=vals)
            rows.append(row)
    return rows


def paired(runs, a: str, b: str) -> list[dict[str, Any]]:
    """Per set and metric: the differences ``a − b`` over the seeds both recipes ran, with mean, sd and a
    95 % t-interval. ``ConfigError`` if a recipe is unknown, was run without seeds, or the seeds differ."""
    for r in (a, b):
        if r not in runs:
            raise ConfigError(f"--paired {a}-{b}: no recipe {r!r} (have {', '.join(sorted(runs))})")
        if None in runs[r]:
            raise ConfigError(f"--paired {a}-{b}: {r!r} has no seeds (name its models {r}_s0, {r}_s1, …)")
    if set(runs[a]) != set(runs[b]):
        raise ConfigError(f"--paired {a}-{b}: seeds differ ({sorted(runs[a])} vs {sorted(runs[b])})")
    seeds = sorted(runs[a])
    out = []
    for set_name in sorted(set.intersection(*(set(runs[r][s]) for r in (a, b) for s in seeds))):
        row: dict[str, Any] = {"pair": f"{a} − {b}", "dataset": set_name, "seeds": seeds}
        for key, _, _ in METRICS:
            try:
                diffs = [float(runs[a][s][set_name][key]) - float(runs[b][s][set_name][key]) for s in seeds]
            except (KeyError, TypeError):
                continue
            m, sd = mean_sd(diffs)
            row[key] = {"mean": m, "sd": sd, "values": diffs, "t95": t_interval(diffs)}
        out.append(row)
    return out


def _fmt(x: float, scale: float) -> str:
    return "–" if x is None or math.isnan(x) else (f"{x * scale:.1f}" if scale != 1.0 else f"{x:.3f}")


def markdown(rows: list[dict[str, Any]], pairs: list[dict[str, Any]],
             best: tuple[str, float] | None = None) -> str:
    head = "| recipe | dataset | seeds | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRICS))]
    for r in rows:
        cells = []
        for key, _, scale in METRICS:
            v = r.get(key)
            cells.append("–" if v is None else (_fmt(v["mean"], scale) if r["n_seeds"] == 1
                                                else f"{_fmt(v['mean'], scale)} ± {_fmt(v['sd'], scale)}"))
        lines.append(f"| {r['recipe']} | {r['dataset']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    if best:
        lines += ["", f"Highest validation accuracy among the seeded runs: **{best[0]}** ({100 * best[1]:.1f} %)."]
    if pairs:
        lines += ["", "Paired differences over seeds (mean ± sd [95 % t-interval]; per seed):", "",
                  "| difference | dataset | " + " | ".join(label for _, label, _ in METRICS) + " |",
                  "|" + "---|" * (2 + len(METRICS))]
        for p in pairs:
            cells = []
            for key, _, scale in METRICS:
                v = p.get(key)
                if v is None:
                    cells.append("–")
                    continue
                ci = v["t95"]
                ci_text = f" [{_fmt(ci[0], scale)}, {_fmt(ci[1], scale)}]" if ci else ""
                per = ", ".join(_fmt(x, scale) for x in v["values"])
                cells.append(f"{_fmt(v['mean'], scale)} ± {_fmt(v['sd'], scale)}{ci_text}; ({per})")
            lines.append(f"| {p['pair']} | {p['dataset']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens seed-summary",
        description="Recipes over seeds (mean ± sd) and paired differences, from 'sonolens external-eval --json' "
                    "files whose models are named RECIPE_sSEED.")
    p.add_argument("files", nargs="+", metavar="EXTERNAL_EVAL_JSON")
    p.add_argument("--paired", action="append", default=[], metavar="A-B",
                   help="add the paired difference of recipe A minus recipe B over their seeds; repeatable")
    p.add_argument("--sets", default=None, help="comma-separated sets to show (default: all)")
    p.add_argument("--md", default=None, help="also write the Markdown here")
    p.add_argument("--json", default=None, help="write rows and paired differences as JSON")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    runs = read_runs(args.files)
    sets = [s for s in args.sets.split(",") if s] if args.sets else None
    rows = summarise(runs, sets)
    pairs = []
    for spec in args.paired:
        a, sep, b = spec.partition("-")
        if not sep or not a or not b:
            raise ConfigError(f"--paired expects A-B (two recipe names), got {spec!r}")
        pairs += [p for p in paired(runs, a, b) if sets is None or p["dataset"] in sets]
    best = best_by_validation(runs)
    text = markdown(rows, pairs, best)
    sys.stdout.write(text)
    from sonolens.pipeline.outputs import write_text_atomic

    if args.md:
        write_text_atomic(Path(args.md), text, "summary")
    if args.json:
        doc = {"rows": rows, "paired": pairs, "best_by_validation": best}
        write_text_atomic(Path(args.json), json.dumps(doc, indent=2) + "\n", "summary JSON")
    return 0


if __name__ == "__main__":
    from sonolens.cli import main

    raise SystemExit(main(["seed-summary", *sys.argv[1:]]))
