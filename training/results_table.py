"""Render ``sonolens eval --json`` outputs as the Markdown results table of a model card.

    python -m sonolens.training.results_table NAME=runs/eval/a.json NAME2=runs/eval/b.json ...
    python -m sonolens.training.results_table --leak EVAL.json SPLIT.csv   # accuracy with / without a twin in train
    python -m sonolens.training.results_table --agree A.json B.json        # e.g. fp32 vs INT8 on the same images

Every number in the card's tables comes from this command over the committed eval JSONs, so it can be rerun.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    """Accuracy on the test images that have a near-duplicate (same ``group``) in train/val vs those that do not."""
    import csv

    rows = list(csv.DictReader(open(split_csv, newline="", encoding="utf-8")))
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
    """Share of images where two evaluations pick the same top class, and the largest probability change."""
    if a["files"] != b["files"]:
        raise ValueError("the two evaluations are not over the same images")
    pa, pb = a["probs"], b["probs"]
    same = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__) for x, y in zip(pa, pb))
    return same / len(pa), max(abs(u - v) for x, y in zip(pa, pb) for u, v in zip(x, y))


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--agree":
        same, diff = agreement(*(json.loads(Path(p).read_text()) for p in argv[1:3]))
        print(f"top class agrees on {100 * same:.1f}% of images; largest probability change {diff:.2f}")
        return 0
    if argv and argv[0] == "--leak":
        for name, stats in leak_breakdown(json.loads(Path(argv[1]).read_text()), argv[2]).items():
            print(f"{name}: n={stats['n']} accuracy={100 * stats['accuracy']:.1f}%")
        return 0
    entries = []
    for arg in argv:
        name, _, path = arg.partition("=")
        entries.append((name, json.loads(Path(path).read_text())))
    print(table(entries))
    print()
    print(per_class(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
