"""Leave-one-hospital-out (LOHO) validation: recipes judged by how they hold up on the hospital they did not see.

In-distribution validation rows cannot tell which recipe generalises to another hospital's scanner (the union
validation of the Lite0 campaign picked the weakest model: ``docs/lite0/SELECTION.md``). Here every recipe is
trained twice per seed — on BUSI, held out BUS-UCLM; on BUS-UCLM, held out BUSI — and judged on the held-out
hospital's train + val rows. Test rows of both hospitals are not in the LOHO split files at all, so nothing here
can read them; the Polish set and the cine clips are never touched.

    sonolens loho split training/split_csv/busi_uclm.csv --out training/split_csv
    sonolens loho summary runs/loho/*.json --md docs/loho/loho.md --json docs/loho/loho.json
    sonolens loho pick-seed runs/union_nomarks_s0 runs/union_nomarks_s1 runs/union_nomarks_s2
    sonolens loho pick-recipe --recipe nomarks runs/union_nomarks_s{0,1,2} --recipe kd runs/union_kd_s{0,1,2}

``split`` writes ``loho_busi.csv`` and ``loho_bus_uclm.csv`` (named by the hospital trained on): that hospital's
``train``/``val`` rows keep their split (the checkpoint is chosen on its own ``val``, as the shipped recipes do),
the other hospital's ``train`` + ``val`` rows become ``heldout``.

``pick-seed`` applies ``SEED_RULE`` (``docs/loho/SELECTION.md``, "After the pick") to the picked recipe's runs on
both hospitals: the run whose best epoch has the highest union-validation accuracy (its ``summary.json``), ties
broken by validation macro-F1, then by the lower seed. No test, external or cine figure is read.

``pick-recipe`` applies ``RECIPE_RULE`` (``docs/kd/SELECTION.md``) when recipes trained on both hospitals compete for
the default (the no-teacher recipe against the same recipe distilled from a teacher): the highest mean
union-validation accuracy over the seeds all finished, a difference under ``TIE`` keeping the incumbent, then
``SEED_RULE`` within the winner. Validation rows only, like ``pick-seed``.

``summary`` reads ``sonolens eval --split heldout --json`` files of checkpoints in run folders named
``loho_<recipe>_<hospital>_s<seed>`` and applies ``RULE`` (fixed before any held-out figure was read; see
``docs/loho/SELECTION.md``): per run, the benign-vs-malignant AUC of P(m) / (P(b) + P(m)) on the held-out lesion
images (prior-free: the hospitals' class mixes differ, 61 % normal in BUS-UCLM against 17 % in BUSI) and the
3-class balanced accuracy (mean recall); per recipe, their means over both directions and all seeds; the pick is the
recipe with the highest mean AUC, a difference under ``TIE`` being a tie broken by the balanced accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable, write_text_atomic

HOSPITALS = ("busi", "bus_uclm")
HELDOUT = "heldout"
TIE = 0.01
RULE = ("recipe with the highest mean held-out benign-vs-malignant AUC over both directions and all seeds; "
        f"a difference under {TIE} is a tie, broken by the mean held-out 3-class balanced accuracy")
SEED_RULE = ("the run with the highest union-validation accuracy at its best epoch (summary.json); ties broken by "
             "validation macro-F1, then by the run given first")
RECIPE_RULE = ("the recipe with the highest mean union-validation accuracy at the runs' best epochs over the seeds "
               f"every recipe finished; a difference under {TIE} keeps the recipe given first (the incumbent); "
               "then SEED_RULE among its runs")
RUN_NAME = re.compile(r"^loho_(?P<recipe>.+)_(?P<hospital>busi|bus_uclm)_s(?P<seed>\d+)$")


# --------------------------------------------------------------------------------------------------------
# Split files
# --------------------------------------------------------------------------------------------------------
def loho_rows(rows: Sequence[dict[str, str]], train_on: str) -> list[dict[str, str]]:
    """The rows of a union split file for training on ``train_on``: its train/val rows as they are, the other
    hospital's train/val rows as ``heldout``; every test row dropped."""
    if train_on not in HOSPITALS:
        raise ConfigError(f"unknown hospital {train_on!r} (one of {', '.join(HOSPITALS)})")
    out = []
    for row in rows:
        if row["split"] not in ("train", "val"):
            continue
        if row["dataset"] == train_on:
            out.append(dict(row))
        elif row["dataset"] in HOSPITALS:
            out.append({**row, "split": HELDOUT})
    return out


def write_loho_splits(union_csv: Path, out_dir: Path) -> list[Path]:
    """``loho_<hospital>.csv`` for each hospital, from the union split file ``union_csv``."""
    try:
        with open(union_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields, rows = list(reader.fieldnames or []), list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read {union_csv}: {exc.strerror or exc}") from exc
    missing = {"file", "label", "group", "split", "dataset"} - set(fields)
    if missing:
        raise ConfigError(f"{union_csv}: not a multi-dataset split file (no column {', '.join(sorted(missing))})")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for hospital in HOSPITALS:
        path = out_dir / f"loho_{hospital}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(loho_rows(rows, hospital))
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------------------
# Metrics of one run and the rule
# --------------------------------------------------------------------------------------------------------
def run_name(result: dict[str, Any]) -> dict[str, Any]:
    """Recipe, hospital trained on and seed of an eval result, from its checkpoint's run folder."""
    folder = Path(str(result.get("model", ""))).parent.name
    m = RUN_NAME.match(folder)
    if not m:
        raise ConfigError(f"{result.get('model')!r}: not a checkpoint in a loho_<recipe>_<hospital>_s<seed> folder")
    return {"recipe": m["recipe"], "trained_on": m["hospital"], "seed": int(m["seed"])}


def run_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Held-out benign-vs-malignant AUC, 3-class balanced accuracy and accuracy of one ``eval --json`` result."""
    from .external_eval import auc, malignancy_score

    if result.get("split") != HELDOUT or "probs" not in result:
        raise ConfigError(f"{result.get('model')!r}: not an 'eval --split {HELDOUT} --json' result")
    names = [c.lower() for c in result["class_names"]]
    probs, y = np.asarray(result["probs"], np.float64), np.asarray(result["y_true"], np.int64)
    lesion = np.isin(y, [names.index("benign"), names.index("malignant")])
    score = malignancy_score(probs[lesion], names)
    pred = probs.argmax(axis=1)
    recalls = [float((pred[y == k] == k).mean()) for k in np.unique(y)]
    return {"n": int(len(y)), "auc_bm": auc(score, y[lesion] == names.index("malignant")),
            "balanced_accuracy": float(np.mean(recalls)), "accuracy": float((pred == y).mean())}


def common_seeds(runs: Sequence[dict[str, Any]]) -> list[int]:
    """Seeds that every recipe ran in both directions: the rule compares recipes on the same seeds only."""
    per_recipe = [{s for s in {r["seed"] for r in runs if r["recipe"] == name}
                   if {r["trained_on"] for r in runs if r["recipe"] == name and r["seed"] == s} == set(HOSPITALS)}
                  for name in {r["recipe"] for r in runs}]
    return sorted(set.intersection(*per_recipe)) if per_recipe else []


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-run metrics; per-recipe means over both directions and the seeds every recipe completed; the pick."""
    all_runs = [{**run_name(r), **run_metrics(r)} for r in results]
    keys = [(r["recipe"], r["trained_on"], r["seed"]) for r in all_runs]
    if len(set(keys)) != len(keys):
        raise ConfigError("two results for the same recipe, hospital and seed")
    seeds = common_seeds(all_runs)
    runs = [r for r in all_runs if r["seed"] in seeds]
    recipes: dict[str, dict[str, Any]] = {}
    for name in sorted({r["recipe"] for r in runs}):
        mine = [r for r in runs if r["recipe"] == name]
        recipes[name] = {"runs": len(mine), "directions": sorted({r["trained_on"] for r in mine}),
                         "seeds": sorted({r["seed"] for r in mine}),
                         "auc_bm": float(np.mean([r["auc_bm"] for r in mine])),
                         "balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in mine]))}
        for hospital in HOSPITALS:
            side = [r["auc_bm"] for r in mine if r["trained_on"] == hospital]
            recipes[name][f"auc_bm_trained_on_{hospital}"] = float(np.mean(side)) if side else math.nan
    chosen = pick(recipes)
    return {"rule": RULE, "seeds": seeds, "runs": all_runs, "recipes": recipes, "pick": chosen,
            "paired": paired_with(runs, chosen, seeds)}


def paired_with(runs: Sequence[dict[str, Any]], chosen: str | None, seeds: Sequence[int]) -> dict[str, Any]:
    """The pick minus every other recipe, seed by seed (each seed's AUC the mean of both directions): mean and a
    two-sided 95 % Student-t interval over the seeds — how far apart the recipes are against the seeds' spread."""
    from .seed_summary import t_interval

    def per_seed(recipe: str) -> list[float]:
        return [float(np.mean([r["auc_bm"] for r in runs if r["recipe"] == recipe and r["seed"] == s]))
                for s in seeds]

    if chosen is None:
        return {}
    out = {}
    for other in sorted({r["recipe"] for r in runs} - {chosen}):
        diffs = [a - b for a, b in zip(per_seed(chosen), per_seed(other))]
        out[other] = {"diffs": diffs, "mean": float(np.mean(diffs)), "ci95": t_interval(diffs)}
    return out


def pick(recipes: dict[str, dict[str, Any]]) -> str | None:
    """``RULE`` over recipes that ran in both directions; ``None`` when none did."""
    complete = {k: v for k, v in recipes.items() if set(v["directions"]) == set(HOSPITALS)}
    if not complete:
        return None
    best_auc = max(v["auc_bm"] for v in complete.values())
    tied = [k for k, v in complete.items() if best_auc - v["auc_bm"] < TIE]
    return max(tied, key=lambda k: (complete[k]["balanced_accuracy"], complete[k]["auc_bm"]))


def render_markdown(summary: dict[str, Any]) -> str:
    """The recipe table (common seeds), the table of every run and the pick."""
    lines = ["| recipe | runs | seeds | held-out AUC b-vs-m (mean) | trained on BUSI → BUS-UCLM | "
             "trained on BUS-UCLM → BUSI | balanced acc. |", "|---|---|---|---|---|---|---|"]
    for name, r in summary["recipes"].items():
        lines.append(f"| {name} | {r['runs']} | {','.join(map(str, r['seeds']))} | {r['auc_bm']:.3f} | "
                     f"{r['auc_bm_trained_on_busi']:.3f} | {r['auc_bm_trained_on_bus_uclm']:.3f} | "
                     f"{r['balanced_accuracy']:.3f} |")
    lines += ["", "| run | held-out n | AUC b-vs-m | balanced acc. | accuracy |", "|---|---|---|---|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['recipe']} · trained on {r['trained_on']} · seed {r['seed']} | {r['n']} | "
                     f"{r['auc_bm']:.3f} | {r['balanced_accuracy']:.3f} | {r['accuracy']:.3f} |")
    if summary.get("paired"):
        lines += ["", f"| {summary['pick']} minus | per seed | mean | 95 % t-interval over seeds |",
                  "|---|---|---|---|"]
        for other, d in summary["paired"].items():
            ci = d["ci95"]
            lines.append(f"| {other} | {', '.join(f'{x:+.3f}' for x in d['diffs'])} | {d['mean']:+.3f} | "
                         + (f"{ci[0]:+.3f} … {ci[1]:+.3f} |" if ci else "– |"))
    lines += ["", f"Rule: {summary['rule']}; seeds compared (run by every recipe in both directions): "
              f"{', '.join(map(str, summary['seeds'])) or 'none'}.", "",
              f"**Pick: {summary['pick'] or 'none (no recipe ran in both directions)'}**"]
    return "\n".join(lines) + "\n"


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """A finished run folder's ``summary.json`` (``training.run_dir``): its name and best-epoch validation figures."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        best = summary["best"]
        return {"run": str(run_dir), "name": summary.get("name", Path(run_dir).name), "epoch": int(best["epoch"]),
                "val_acc": float(best["val_acc"]), "val_macro_f1": float(best.get("val_macro_f1", float("nan")))}
    except FileNotFoundError as exc:
        raise ConfigError(f"{run_dir}: no summary.json (the run has not finished)") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def pick_seed(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``SEED_RULE`` over ``run_summary`` records: highest validation accuracy, then macro-F1, then the first."""
    if not runs:
        raise ConfigError("no runs to pick from")

    def key(ir: tuple[int, dict[str, Any]]) -> tuple[float, float, int]:
        i, r = ir
        f1 = r["val_macro_f1"]
        return (r["val_acc"], f1 if math.isfinite(f1) else -1.0, -i)

    return max(enumerate(runs), key=key)[1]


def seed_of(run: dict[str, Any]) -> int:
    """The seed of a run folder named ``…_s<seed>`` (``union_kd_s1`` → 1)."""
    m = re.search(r"_s(\d+)$", run["name"])
    if not m:
        raise ConfigError(f"{run['run']}: the run's name {run['name']!r} does not end in _s<seed>")
    return int(m[1])


def pick_recipe(recipes: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """``RECIPE_RULE`` over ``{recipe: run_summary records}`` (insertion order: the incumbent first): per recipe the
    mean validation accuracy over the seeds all recipes finished, the pick, and the seed ``SEED_RULE`` picks in it."""
    if not recipes or any(not runs for runs in recipes.values()):
        raise ConfigError("every recipe needs at least one finished run")
    seeds = sorted(set.intersection(*[{seed_of(r) for r in runs} for runs in recipes.values()]))
    if not seeds:
        raise ConfigError("the recipes share no seed: nothing to compare")
    means = {name: float(np.mean([r["val_acc"] for r in runs if seed_of(r) in seeds]))
             for name, runs in recipes.items()}
    incumbent = next(iter(recipes))
    best = max(means, key=lambda k: means[k])
    chosen = incumbent if means[best] - means[incumbent] < TIE else best
    return {"rule": RECIPE_RULE, "seeds": seeds, "mean_val_acc": means, "recipe": chosen,
            "picked": pick_seed(list(recipes[chosen]))["run"]}


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens loho", description="Leave-one-hospital-out validation of recipes.")
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("split", help="write loho_busi.csv and loho_bus_uclm.csv from a union split file")
    s.add_argument("union_csv")
    s.add_argument("--out", required=True, help="folder for the two split files")
    m = sub.add_parser("summary", help="the rule over 'eval --split heldout --json' files")
    m.add_argument("results", nargs="+")
    m.add_argument("--md", default=None)
    m.add_argument("--json", default=None)
    k = sub.add_parser("pick-seed", help="the seed of the picked recipe that ships: " + SEED_RULE)
    k.add_argument("runs", nargs="+", help="finished run folders (each with summary.json)")
    k.add_argument("--json", default=None, help="write the runs' figures and the pick")
    r = sub.add_parser("pick-recipe", help="which of several recipes' union runs ships: " + RECIPE_RULE)
    r.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                   help="a recipe's name and its finished run folders (…_s<seed>); the first --recipe is the incumbent")
    r.add_argument("--json", default=None, help="write the figures and the pick")
    return p


def _read_result(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _pick_seed_cli(run_dirs: Sequence[str], json_path: str | None) -> int:
    runs = [run_summary(r) for r in run_dirs]
    chosen = pick_seed(runs)
    for r in runs:
        mark = "  <- picked" if r is chosen else ""
        print(f"{r['name']}: val accuracy {r['val_acc']:.4f}, macro-F1 {r['val_macro_f1']:.4f} "
              f"(epoch {r['epoch']}){mark}")
    print(f"rule: {SEED_RULE}")
    if json_path:
        write_text_atomic(json_path, json.dumps({"rule": SEED_RULE, "runs": runs, "picked": chosen["run"]}, indent=1),
                          "seed pick")
    return 0


def _pick_recipe_cli(groups: Sequence[Sequence[str]], json_path: str | None) -> int:
    if any(len(g) < 2 for g in groups):
        raise ConfigError("--recipe takes a name and at least one run folder")
    if len({g[0] for g in groups}) != len(groups):
        raise ConfigError("two --recipe options with the same name")
    recipes = {g[0]: [run_summary(r) for r in g[1:]] for g in groups}
    result = pick_recipe(recipes)
    seeds = ",".join(map(str, result["seeds"]))
    for name, runs in recipes.items():
        mark = "  <- picked" if name == result["recipe"] else ""
        each = ", ".join(f"{r['name']} {r['val_acc']:.3f}" for r in runs)
        print(f"{name}: mean val accuracy {result['mean_val_acc'][name]:.4f} over seeds {seeds} ({each}){mark}")
    print(f"picked run: {result['picked']}")
    print(f"rule: {RECIPE_RULE}")
    if json_path:
        write_text_atomic(json_path, json.dumps({**result, "runs": recipes}, indent=1), "recipe pick")
    return 0


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "split":
        for path in write_loho_splits(Path(args.union_csv), Path(args.out)):
            print(path)
        return 0
    for out in (getattr(args, "json", None), getattr(args, "md", None)):
        if out:
            check_writable(out, "output")
    if args.action == "pick-seed":
        return _pick_seed_cli(args.runs, args.json)
    if args.action == "pick-recipe":
        return _pick_recipe_cli(args.recipe, args.json)
    summary = summarise([_read_result(p) for p in args.results])
    text = render_markdown(summary)
    print(text, end="")
    if args.md:
        write_text_atomic(args.md, text, "LOHO summary")
    if args.json:
        write_text_atomic(args.json, json.dumps(summary, indent=1), "LOHO summary")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))
