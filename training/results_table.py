"""``sonolens results-table``: render ``sonolens eval --json`` outputs as the Markdown results table of a model card.

    sonolens results-table NAME=runs/eval/a.json NAME2=runs/eval/b.json ...
    sonolens results-table --leak EVAL.json SPLIT.csv   # accuracy with / without a twin in train
    sonolens results-table --agree A.json B.json        # e.g. fp32 vs INT8 on the same images

Every number in the card's tables comes from this command over the committed eval JSONs, so it can be rerun.
A missing or malformed file is a ``ConfigError`` (one line, exit status 2 from ``sonolens``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

TABLE_KEYS = ("n", "per_class")  # what ``table`` / ``per_class`` need of each eval JSON
PREDICTION_KEYS = ("files", "y_true", "probs")  # what ``leak_breakdown`` / ``agreement`` need


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object; ``ConfigError`` (one line) if it cannot be read, is not JSON, or is not an
    object (then the message says it is not ``what``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not {what}")
    return data


def read_eval(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``sonolens eval --json`` file as a dict.

    Raises ``ConfigError`` if it cannot be read, is not a JSON object, or lacks one of ``keys``.
    """
    path = Path(path)
    data = read_json_object(path, "an evaluation JSON of 'sonolens eval --json'")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ConfigError(f"{path}: not an evaluation JSON of 'sonolens eval --json' "
                          f"(missing {', '.join(missing)})")
    return data


def _ci(r: dict, key: str, pct: bool = True) -> str:
    v, ci = r.get(key), r.get(f"{key}_ci95")
    if v is None:
        return "—"
    f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]" if ci else f(v)


def table(entries: list[tuple[str, dict]]) -> str:
    pos = next((r.get("auc_positive_class") for _, r in entries if r.get("auc_positive_class")), "positive")
    head = (f"| model | n | accuracy % [95% CI] | macro-F1 [95% CI] | AUC {pos} [95% CI] | sensitivity % | "
            f"specificity % |\n|---|---|---|---|---|---|---|")
    rows = [f"| {name} | {r['n']} | {_ci(r, 'accuracy')} | {_ci(r, 'macro_f1', False)} | "
            f"{_ci(r, 'auc_positive', False)} | {_ci(r, 'sensitivity')} | {_ci(r, 'specificity')} |"
            for name, r in entries]
    return "\n".join([head, *rows])


def per_class(entries: list[tuple[str, dict]]) -> str:
    classes = list(entries[0][1]["per_class"])
    head = "| model | " + " | ".join(f"{c} P / R / F1" for c in classes) + " |\n|---|" + "---|" * len(classes)
    rows = []
    for name, r in entries:
        cells = [f"{r['per_class'][c]['precision']:.2f} / {r['per_class'][c]['recall']:.2f} / "
                 f"{r['per_class'][c]['f1']:.2f}" if c in r["per_class"] else "—" for c in classes]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def leak_breakdown(result: dict, split_csv: str | Path) -> dict[str, dict[str, float]]:
    """Accuracy on the test images that have a near-duplicate (same ``group``) in train/val vs those that do not.

    ``result`` needs ``files``, ``y_true`` and ``probs``; ``split_csv`` the columns ``file,group,split``
    (``ConfigError`` if it cannot be read or lacks one).
    """
    try:
        with open(split_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("file", "group", "split") if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{split_csv}: not a split CSV (missing column(s) {', '.join(missing)})")
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read {split_csv}: {exc.strerror or exc}") from None
    seen = {r["group"] for r in rows if r["split"] in ("train", "val")}
    twin = {Path(r["file"]).as_posix(): r["group"] in seen for r in rows if r["split"] == "test"}
    out: dict[str, list[bool]] = {"with a twin in train/val": [], "without": []}
    for f, y, p in zip(result["files"], result["y_true"], result["probs"]):
        key = next((k for k in twin if f.replace("\\", "/").endswith(k)), None)
        if key is None:
            continue
        correct = max(range(len(p)), key=p.__getitem__) == y
        out["with a twin in train/val" if twin[key] else "without"].append(correct)
    return {k: {"n": len(v), "accuracy": (sum(v) / len(v)) if v else float("nan")} for k, v in out.items()}


def agreement(a: dict, b: dict) -> tuple[float, float]:
    """Share of images where two evaluations pick the same top class, and the largest probability change.

    Raises ``ConfigError`` if the two are not over the same images (in the same order) or over none.
    """
    if a["files"] != b["files"]:
        raise ConfigError("the two evaluations are not over the same images")
    if not a["files"]:
        raise ConfigError("the two evaluations hold no images")
    pa, pb = a["probs"], b["probs"]
    same = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__) for x, y in zip(pa, pb))
    return same / len(pa), max(abs(u - v) for x, y in zip(pa, pb) for u, v in zip(x, y))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens results-table",
        description="Render 'sonolens eval --json' outputs as the Markdown results tables of a model card "
                    "(overall metrics with 95% CIs, then per class); or, with --leak / --agree, the two "
                    "comparisons the card quotes.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--leak", nargs=2, metavar=("EVAL_JSON", "SPLIT_CSV"),
                      help="accuracy on the test images with / without a near-duplicate in train/val")
    mode.add_argument("--agree", nargs=2, metavar=("A_JSON", "B_JSON"),
                      help="how often two evaluations of the same images pick the same top class "
                           "(e.g. fp32 vs INT8)")
    p.add_argument("entries", nargs="*", metavar="NAME=EVAL_JSON", help="one table row per evaluation")
    return p


def cli_main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    if (args.agree or args.leak) and args.entries:
        p.error("--leak / --agree take no NAME=EVAL_JSON rows")
    if args.agree:
        same, diff = agreement(*(read_eval(path, PREDICTION_KEYS) for path in args.agree))
        print(f"top class agrees on {100 * same:.1f}% of images; largest probability change {diff:.2f}")
        return 0
    if args.leak:
        eval_json, split_csv = args.leak
        for name, stats in leak_breakdown(read_eval(eval_json, PREDICTION_KEYS), split_csv).items():
            print(f"{name}: n={stats['n']} accuracy={100 * stats['accuracy']:.1f}%")
        return 0
    if not args.entries:
        p.error("give at least one NAME=EVAL_JSON (or --leak / --agree)")
    entries = []
    for arg in args.entries:
        name, sep, path = arg.partition("=")
        if not sep or not name or not path:
            p.error(f"expected NAME=EVAL_JSON, got {arg!r}")
        entries.append((name, read_eval(path, TABLE_KEYS)))
    print(table(entries))
    print()
    print(per_class(entries))
    return 0


if __name__ == "__main__":  # the old ``python -m sonolens.training.results_table`` still works
    from sonolens.cli import main

    sys.exit(main(["results-table", *sys.argv[1:]]))
