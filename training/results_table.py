"""Render ``sonolens eval --json`` outputs as the Markdown results table of a model card.

    python -m sonolens.training.results_table NAME=runs/eval/a.json NAME2=runs/eval/b.json ...

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


def main(argv: list[str]) -> int:
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
