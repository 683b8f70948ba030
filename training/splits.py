"""``sonolens make-split DIR --out CSV``: the train/val/test split file training and evaluation read.

Two protocols:

``grouped`` (canonical): near-duplicate groups from ``training.audit`` never straddle splits, so no test image
has a twin the model trained on. Groups are assigned whole, stratified by label, 70/10/20 train/val/test of
each class's images, in a seeded random order (first fit). Images of a *label-conflicting* group (the same
picture filed under two classes) all go to **train**, never val/test: we cannot tell which label is right, so
they must not grade the model; kept in train they act as a little label noise on ~2 % of the images (and a
trainer can still drop them: their group has more than one label), and the split keeps every image so its
counts match the dataset's. The CSV keeps each image's folder label.

``paper``: image-level random split reproducing the test composition used by BUSI papers (87 benign /
88 malignant / 88 normal), the rest split 90/10 train/val per class. It ignores groups on purpose — it exists to
measure how much that leak inflates accuracy; the ``group`` column is still filled so the leak can be counted.

CSV columns ``file,label,group,split``; ``file`` is relative to the dataset root (machine-independent).
Unreadable files are left out (with a message). The command line (and ``--datasets``, ``training.multi_split``) is
in ``training.split_cli``.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import write_text_atomic

from .audit import AuditResult
from .data import SPLIT_COLUMNS

SPLITS = ("train", "val", "test")
GROUPED_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
PAPER_TEST_COUNTS = {"benign": 87, "malignant": 88, "normal": 88}
PAPER_VAL_FRACTION = 0.1


def round_half_up(x: float) -> int:
    """``x`` rounded to the nearest integer, halves up (not Python's banker's rounding: ``round(2.5) == 2``)."""
    return int(np.floor(x + 0.5))


def grouped_split(audit: AuditResult, seed: int = 42,
                  fractions: Mapping[str, float] = GROUPED_FRACTIONS) -> list[str]:
    """One split name per sample ("" for unreadable ones). Groups stay whole; conflicting groups go to train."""
    labels = [s.label for s in audit.samples]
    split = [""] * len(labels)
    groups = audit.groups()  # readable samples only, ids in sorted-file order
    conflicting = audit.conflicting_groups()
    for members in conflicting.values():
        for i in members:
            split[i] = "train"
    rng = np.random.default_rng(seed)
    readable = [i for i in range(len(labels)) if audit.group[i]]
    for label in sorted({labels[i] for i in readable}):
        n_label = sum(1 for i in readable if labels[i] == label)
        target = {"test": round_half_up(fractions["test"] * n_label), "val": round_half_up(fractions["val"] * n_label)}
        count = {"test": 0, "val": 0}
        ids = [g for g, m in groups.items() if g not in conflicting and labels[m[0]] == label]
        for k in rng.permutation(len(ids)):
            members = groups[ids[k]]
            dest = "train"
            for name in ("test", "val"):  # first fit: a group goes where it still fits whole
                if count[name] + len(members) <= target[name]:
                    dest = name
                    count[name] += len(members)
                    break
            for i in members:
                split[i] = dest
    return split


def paper_split(audit: AuditResult, seed: int = 42, test_counts: Mapping[str, int] = PAPER_TEST_COUNTS,
                val_fraction: float = PAPER_VAL_FRACTION) -> list[str]:
    """One split name per sample: an image-level random split with a fixed test composition per class."""
    labels = [s.label for s in audit.samples]
    readable = [i for i in range(len(labels)) if audit.group[i]]
    present = {labels[i] for i in readable}
    if present != set(test_counts):
        raise ConfigError(f"the paper protocol needs exactly the classes {', '.join(sorted(test_counts))} "
                          f"(found {', '.join(sorted(present))})")
    split = [""] * len(labels)
    rng = np.random.default_rng(seed)
    for label in sorted(present):
        idx = np.array([i for i in readable if labels[i] == label])
        if len(idx) <= test_counts[label]:
            raise ConfigError(f"class {label!r} has {len(idx)} images, not more than the "
                              f"{test_counts[label]} the paper protocol puts in test")
        idx = idx[rng.permutation(len(idx))]
        test, rest = idx[:test_counts[label]], idx[test_counts[label]:]
        n_val = round_half_up(val_fraction * len(rest))
        for i in test:
            split[i] = "test"
        for k, i in enumerate(rest):
            split[i] = "val" if k < n_val else "train"
    return split


def make_split(audit: AuditResult, protocol: str = "grouped", seed: int = 42) -> list[str]:
    if protocol == "grouped":
        return grouped_split(audit, seed)
    if protocol == "paper":
        return paper_split(audit, seed)
    raise ConfigError(f"unknown split protocol {protocol!r} (use grouped or paper)")


def write_split_csv(path: Path | str, audit: AuditResult, split: Sequence[str]) -> int:
    """Write ``file,label,group,split`` rows for every sample with a split; returns the number of rows."""
    n = 0
    fh = io.StringIO()  # the whole table, then one atomic write: a crash or a full disk leaves the old file
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(SPLIT_COLUMNS)
    for i, s in enumerate(audit.samples):
        if split[i]:
            w.writerow([audit.rel(i), s.label, audit.group[i], split[i]])
            n += 1
    write_text_atomic(path, fh.getvalue(), "split file")
    return n


def leaked_test_images(audit: AuditResult, split: Sequence[str], against: Sequence[str] = ("train",)) -> list[int]:
    """Test images whose near-duplicate group has a member in one of the ``against`` splits."""
    seen: dict[str, set[str]] = {}
    for i, g in enumerate(audit.group):
        if g and split[i]:
            seen.setdefault(g, set()).add(split[i])
    return [i for i, g in enumerate(audit.group) if split[i] == "test" and seen[g] & set(against)]


def split_table(audit: AuditResult, split: Sequence[str]) -> str:
    """Counts per split and class as a Markdown table."""
    labels = sorted({s.label for s, sp in zip(audit.samples, split) if sp})
    rows = ["| split | " + " | ".join(labels) + " | total |", "|---" * (len(labels) + 2) + "|"]
    for name in SPLITS:
        counts = [sum(1 for s, sp in zip(audit.samples, split) if sp == name and s.label == lab) for lab in labels]
        rows.append(f"| {name} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    return "\n".join(rows)


def report(audit: AuditResult, split: Sequence[str], protocol: str) -> str:
    in_split = [sp for sp in split if sp]
    conflict = audit.conflict()
    conflict_where = sorted({split[int(i)] for i in np.flatnonzero(conflict) if split[int(i)]})
    lines = [f"{protocol} split of {len(in_split)} images:", split_table(audit, split),
             f"test images with a near-twin in train: {len(leaked_test_images(audit, split, ('train',)))}; "
             f"in train or val: {len(leaked_test_images(audit, split, ('train', 'val')))}",
             f"label-conflicting images: {int(conflict.sum())} (in: {', '.join(conflict_where) or '-'})"]
    left_out = len(split) - len(in_split)
    if left_out:
        lines.append(f"left out {left_out} unreadable file(s)")
    return "\n".join(lines)


if __name__ == "__main__":  # the old ``python -m sonolens.training.splits`` still works
    from sonolens.cli import main

    sys.exit(main(["make-split", *sys.argv[1:]]))
