"""``sonolens chest-split DATA_DIR --out CSV``: the patient-grouped split of the Kermany
pediatric chest X-rays (``NORMAL/ PNEUMONIA/``), for the NanoRay V2 reproduction.

Why a separate tool and not ``sonolens make-split``: that one groups BUSI images by perceptual hash because BUSI
has no patient IDs. The chest set has what hashing cannot give, a patient key per image (``labels.csv``), and its
8×8 pHashes are all alike (``audit-data`` collapses it into one group), so here the groups come from the labels.

Protocol (deterministic; ``tests/training/test_chest.py`` regenerates the committed CSV and compares bytes):

* ``test`` = the official test set, unchanged (234 normal / 390 pneumonia): comparable with every paper that
  reports on Kermany's test folder.
* The official train set is split into ``train`` / ``val`` **by patient**: all images of one child go to the same
  side. ``patient_key`` numbering restarts in each official split (``person1`` in train and ``person1`` in test
  are different children), so a group is ``<official split>:<patient_key>``.
* Byte-identical copies (``exact_duplicate_of``) are tied to their original's group (union-find), so a copy
  always lands in its original's split even when its file name carries another patient key
  (``NORMAL2-IM-0096`` = ``NORMAL2-IM-0095``).
* Stratified by label: for each class, the tied groups are visited in a seeded random order
  (``numpy.random.default_rng(seed)``) and a group goes to ``val`` while it still fits whole under
  ``round(val_fraction × images of that class)`` (first fit), else to ``train``. Default 10 % val, seed 42.

CSV columns ``file,label,group,split`` (the same contract as ``training/split_csv/busi.csv``), ``file`` relative to the
dataset root, labels lowercased (``normal``, ``pneumonia``), rows sorted by file. Only the standard library and
numpy: it needs neither torch nor the images themselves (``--check-files`` verifies they exist). The command line
is in ``training.chest_split_cli``.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .audit import UnionFind
from .data import SPLIT_COLUMNS
from .splits import round_half_up  # not banker's rounding: the same counts as the BUSI split

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("relpath", "label", "official_split", "patient_key", "exact_duplicate_of")
DEFAULT_SEED = 42
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class ChestRow:
    """One image of ``labels.csv`` with the split it was given."""

    file: str
    label: str
    group: str
    split: str


def read_labels(root: Path | str) -> list[dict[str, str]]:
    """The rows of ``root/labels.csv`` (one per image), checked for the columns the split needs."""
    path = Path(root) / LABELS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: is {root} the Kermany chest X-ray folder (with its labels.csv)?")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise ConfigError(f"{path} lists no images")
    seen: set[str] = set()
    for r in rows:
        if r["relpath"] in seen:
            raise ConfigError(f"{path}: {r['relpath']} is listed twice")
        seen.add(r["relpath"])
        if r["official_split"] not in ("train", "test"):
            raise ConfigError(f"{path}: {r['relpath']} has official_split {r['official_split']!r} (train/test)")
    return rows


def group_of(row: dict[str, str]) -> str:
    """Patient group: the key is only unique within one official split, so it is prefixed with it."""
    return f"{row['official_split']}:{row['patient_key']}"


def tied_groups(rows: Sequence[dict[str, str]]) -> dict[str, str]:
    """Patient group → the representative of its tied set (patient groups joined by byte-identical copies)."""
    by_file = {r["relpath"]: r for r in rows}
    uf = UnionFind()
    for r in rows:
        uf.find(group_of(r))
        orig = r["exact_duplicate_of"].strip()
        if orig:
            if orig not in by_file:
                raise ConfigError(f"{r['relpath']} is a copy of {orig}, which labels.csv does not list")
            if by_file[orig]["official_split"] != r["official_split"]:
                raise ConfigError(f"{r['relpath']} is a copy of {orig} from the other official split: "
                                  f"the official test set would leak")
            uf.union(group_of(r), group_of(by_file[orig]))
    return {g: uf.find(g) for g in {group_of(r) for r in rows}}


def check_val_fraction(val_fraction: float) -> None:
    """A one-line ``ConfigError`` unless ``val_fraction`` is in [0, 1) (NaN included)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val fraction must be in [0, 1), got {val_fraction}")


def chest_split(rows: Sequence[dict[str, str]], seed: int = DEFAULT_SEED,
                val_fraction: float = DEFAULT_VAL_FRACTION) -> list[ChestRow]:
    """Assign every image a split (see the module docstring); rows come back sorted by file."""
    check_val_fraction(val_fraction)
    rows = sorted(rows, key=lambda r: r["relpath"])
    tie = tied_groups(rows)
    split_of: dict[str, str] = {}  # tied set → split
    train_rows = [r for r in rows if r["official_split"] == "train"]
    members: dict[str, list[dict[str, str]]] = {}
    for r in train_rows:
        members.setdefault(tie[group_of(r)], []).append(r)
    for key, rs in members.items():
        labels = {r["label"].lower() for r in rs}
        if len(labels) > 1:  # a child (or a copied image) under two labels cannot be stratified
            raise ConfigError(f"patient group {key} holds images of several labels ({', '.join(sorted(labels))})")
    rng = np.random.default_rng(seed)
    for label in sorted({r["label"].lower() for r in train_rows}):
        keys = sorted(k for k, rs in members.items() if rs[0]["label"].lower() == label)
        n_label = sum(len(members[k]) for k in keys)
        target, count = round_half_up(val_fraction * n_label), 0
        for i in rng.permutation(len(keys)):
            k = keys[i]
            if count + len(members[k]) <= target:
                split_of[k] = "val"
                count += len(members[k])
            else:
                split_of[k] = "train"
    out = []
    for r in rows:
        split = "test" if r["official_split"] == "test" else split_of[tie[group_of(r)]]
        out.append(ChestRow(r["relpath"], r["label"].lower(), group_of(r), split))
    return out


def render_csv(rows: Sequence[ChestRow]) -> str:
    """The CSV text (``\n`` line ends, csv-module quoting): what ``write_csv`` writes and tests compare."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SPLIT_COLUMNS)
    for r in rows:
        w.writerow([r.file, r.label, r.group, r.split])
    return buf.getvalue()


def write_csv(path: Path | str, rows: Sequence[ChestRow]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_csv(rows).encode("utf-8"))


def straddling_groups(rows: Sequence[ChestRow]) -> list[str]:
    """Patient groups found in more than one split (must be empty)."""
    where: dict[str, set[str]] = {}
    for r in rows:
        where.setdefault(r.group, set()).add(r.split)
    return sorted(g for g, s in where.items() if len(s) > 1)


def summary(rows: Sequence[ChestRow]) -> str:
    """Counts per split and label, and patient groups per split, as a Markdown table."""
    labels = sorted({r.label for r in rows})
    img = Counter((r.split, r.label) for r in rows)
    pat = Counter((split, label) for split, label, _ in {(r.split, r.label, r.group) for r in rows})
    head = "| split | " + " | ".join(f"{lab} (patients)" for lab in labels) + " | total |"
    lines = [head, "|---" * (len(labels) + 2) + "|"]
    for split in ("train", "val", "test"):
        cells = [f"{img[split, lab]} ({pat[split, lab]})" for lab in labels]
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {sum(img[split, lab] for lab in labels)} |")
    return "\n".join(lines)


if __name__ == "__main__":  # the old ``python -m sonolens.training.chest_split`` still works
    from sonolens.cli import main

    sys.exit(main(["chest-split", *sys.argv[1:]]))
