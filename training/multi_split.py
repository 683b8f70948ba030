"""Audits and split files over several datasets at once (BUSI + BUS-UCLM), for training on more than one hospital.

``sonolens audit-data ROOT --datasets busi,bus_uclm --md REPORT.md`` and
``sonolens make-split ROOT --datasets busi,bus_uclm --keep busi=training/split_csv/busi.csv --out CSV``, where
``ROOT`` is the folder that holds the datasets (``../shared/datasets``). Each dataset is read by its own reader
(``data.read_busi``; ``data.read_bus_uclm`` with its patient groups), and every file path in the outputs is
relative to ``ROOT`` (``busi/benign/benign (1).png``, ``bus_uclm/benign/ALWI_000.png``), so the CSV is read by
the usual ``data.read_split_csv(csv, ROOT, split)`` and training needs only ``data.root=../shared/datasets``.

What stays together (union-find over):

* **patients**: a dataset with patient ids (BUS-UCLM's ``split_group``: the patient, CHCO+CHVI merged) keeps each
  patient on one side;
* **near-duplicates** by perceptual hash (``training.audit``): inside BUSI with BUSI's tuned rule (pHash ≤ 10, or
  pHash ≤ 16 and dHash ≤ 13), so BUSI's groups are exactly those of ``busi.csv``; every other pair (inside
  BUS-UCLM, across patients, across datasets) with the stricter ``CROSS_RULE``: pHash ≤ 10 **and** dHash ≤ 13.
  Why stricter: BUSI's rule accepts pHash ≤ 10 alone, and on BUS-UCLM's screen captures (layered tissue,
  the same scanner frame) that matched 13 pairs of *different* patients and one BUSI/BUS-UCLM pair; all 14, viewed
  side by side, show different anatomy, and all have dHash ≥ 19, where real copies sit at 0–13 (the dataset's
  own check found no cross-patient look-alike either: thumbnail correlation ≤ 0.86). The audit report lists these
  pairs, with both rules, so the choice can be re-checked.

Label conflicts: a near-duplicate group whose members carry different labels (the same picture filed under two
classes) cannot grade a model; its whole unit goes to **train** (as in ``busi.csv``). In BUS-UCLM that is patient
CHCO+CHVI: CHVI_020/021 (benign) and CHVI_001/002 (malignant) are near-identical frames, and the "benign" frames
show the malignant mass too.

Split: ``--keep NAME=CSV`` fixes a dataset's images to an existing split (BUSI: the canonical ``busi.csv``, so
the BUSI test set stays the one every BUSI number is reported on; a unit that would straddle two kept splits is
an error). The free units (BUS-UCLM's patients) are assigned to test/val/train so that each *dataset*'s classes
come as close as possible to 20/10/70 % (seeded restarts of a greedy fill, then single moves and swaps while the
squared relative error drops; deterministic for a seed). Columns: ``file,label,group,split,dataset,patient,mask``.

The external test set (``breast_lesions_usg``) is refused: it is never trained on, selected or calibrated on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import write_text_atomic

from .audit import HASH_BITS, ImageHashes, MatchRule, UnionFind, hamming
from .data import (
    BUS_UCLM,
    EXTERNAL_TEST_DATASETS,
    LESION_SPLIT_COLUMNS,
    LesionSample,
    read_bus_uclm,
    read_busi,
)
from .splits import round_half_up

SPLITS = ("train", "val", "test")
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
BUSI = "busi"
BUSI_RULE = MatchRule()  # training.audit's rule, tuned on BUSI
CROSS_RULE = MatchRule(phash=0, confirm_phash=10, dhash=13)  # pHash 0, or pHash <= 10 and dHash <= 13


CITATIONS = {
    BUSI: "BUSI — W. Al-Dhabyani, M. Gomaa, H. Khaled, A. Fahmy, \"Dataset of breast ultrasound images\", "
          "Data in Brief 28:104863, 2020, doi:10.1016/j.dib.2019.104863 (CC BY 4.0)",
    BUS_UCLM: "BUS-UCLM — N. Vallez, G. Bueno, O. Deniz, M. A. Rienda, C. Pastor, \"BUS-UCLM: Breast ultrasound lesion "
              "segmentation dataset\", Scientific Data 12:242, 2025, doi:10.1038/s41597-025-04562-3; data "
              "doi:10.17632/7fvgj4jsp7 (research, non-commercial use)",
}


def _read_busi_lesion(root: Path) -> list[LesionSample]:
    return [LesionSample(s.path, s.label, "", dataset=BUSI) for s in read_busi(root)]


READERS: dict[str, Callable[[Path], list[LesionSample]]] = {
    BUSI: _read_busi_lesion,
    BUS_UCLM: read_bus_uclm,
}


def read_datasets(root: Path | str, names: Sequence[str]) -> list[LesionSample]:
    """The samples of ``root/<name>`` for every name, each by its reader, sorted by path relative to ``root``."""
    root = Path(root)
    if not names:
        raise ConfigError("--datasets needs at least one dataset name")
    if len(set(names)) != len(names):
        raise ConfigError(f"a dataset is named twice in --datasets {','.join(names)}")
    samples: list[LesionSample] = []
    for name in names:
        if name in EXTERNAL_TEST_DATASETS:
            raise ConfigError(f"{name} is the external test set: it is never put in a training split or audited "
                              f"as training data")
        if name not in READERS:
            raise ConfigError(f"no reader for dataset {name!r} (known: {', '.join(sorted(READERS))})")
        samples += READERS[name](root / name)
    samples.sort(key=lambda s: s.path.relative_to(root).as_posix())
    return samples


# --------------------------------------------------------------------------------------------------------
# Twins across datasets
# --------------------------------------------------------------------------------------------------------
@dataclass
class TwinPairs:
    """Every pair of images that the BUSI rule or the cross rule calls twins, with both distances."""

    a: np.ndarray
    b: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray
    busi_rule: np.ndarray  # bool: matched by BUSI's rule
    cross_rule: np.ndarray  # bool: matched by CROSS_RULE
    used: np.ndarray  # bool: the link the split uses (BUSI rule inside BUSI, CROSS_RULE elsewhere)


def twin_pairs(samples: Sequence[LesionSample], hashes: ImageHashes, busi_rule: MatchRule = BUSI_RULE,
               cross_rule: MatchRule = CROSS_RULE) -> TwinPairs:
    ok = np.flatnonzero(hashes.readable)
    dp = hamming(hashes.phash[ok], hashes.phash[ok]).astype(np.int16)
    dd = hamming(hashes.dhash[ok], hashes.dhash[ok]).astype(np.int16)
    ia, ib = np.triu_indices(len(ok), 1)
    p, d = dp[ia, ib], dd[ia, ib]
    m_busi, m_cross = busi_rule.matches(p, d), cross_rule.matches(p, d)
    keep = m_busi | m_cross
    a, b = ok[ia[keep]], ok[ib[keep]]
    both_busi = np.array([samples[i].dataset == BUSI and samples[j].dataset == BUSI for i, j in zip(a, b)], bool)
    used = np.where(both_busi, m_busi[keep], m_cross[keep])
    return TwinPairs(a, b, p[keep].astype(int), d[keep].astype(int), m_busi[keep], m_cross[keep], used)


@dataclass
class UnionGrouping:
    """Units that must stay on one side of a split, and the label-conflicting ones among them."""

    unit: list[str]  # per sample: its unit's name ("busi:g0001", "bus_uclm:ALWI", joined with "+" when merged)
    twin_group: list[int]  # per sample: id of its near-duplicate group (hash links only)
    conflicting_units: set[str]
    busi_group: list[str]  # per sample: BUSI's own near-duplicate group number ("" outside BUSI)


def group_union(samples: Sequence[LesionSample], pairs: TwinPairs) -> UnionGrouping:
    n = len(samples)
    twins = UnionFind()
    busi_twins = UnionFind()
    for i in range(n):
        twins.find(i)
    for a, b, used, both in zip(pairs.a, pairs.b, pairs.used,
                                (samples[i].dataset == BUSI and samples[j].dataset == BUSI
                                 for i, j in zip(pairs.a, pairs.b))):
        if used:
            twins.union(int(a), int(b))
            if both:
                busi_twins.union(int(a), int(b))
    # BUSI's groups numbered as training.audit numbers them (by first member, in sorted-file order)
    busi_idx = [i for i in range(n) if samples[i].dataset == BUSI]
    busi_names: dict[int, str] = {}
    busi_group = [""] * n
    for i in busi_idx:
        r = busi_twins.find(i)
        busi_names.setdefault(r, f"g{len(busi_names) + 1:04d}")
        busi_group[i] = busi_names[r]
    base = [f"{s.dataset}:{s.group}" if s.group else f"{s.dataset}:{busi_group[i] or i}" for i, s in enumerate(samples)]
    units = UnionFind()
    for i in range(n):
        units.union(("s", i), ("b", base[i]))
        units.union(("s", i), ("t", twins.find(i)))
    members: dict[object, set[str]] = {}
    for i in range(n):
        members.setdefault(units.find(("s", i)), set()).add(base[i])
    unit = ["+".join(sorted(members[units.find(("s", i))])) for i in range(n)]
    labels_of: dict[int, set[str]] = {}
    for i in range(n):
        labels_of.setdefault(twins.find(i), set()).add(samples[i].label)
    conflicting = {unit[i] for i in range(n) if len(labels_of[twins.find(i)]) > 1}
    return UnionGrouping(unit, [int(twins.find(i)) for i in range(n)], conflicting, busi_group)


# --------------------------------------------------------------------------------------------------------
# The split
# --------------------------------------------------------------------------------------------------------
def read_kept(csv_path: Path | str, dataset: str) -> dict[str, str]:
    """``{file relative to the dataset root: split}`` of an existing split CSV."""
    path = Path(csv_path)
    if not path.is_file():
        raise ConfigError(f"--keep {dataset}={csv_path}: file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        return {r["file"]: r["split"] for r in csv.DictReader(fh)}


def _cost(counts: np.ndarray, target: np.ndarray) -> float:
    """Σ ((n − T) / max(T, 1))² over (dataset, class) × {val, test}."""
    return float((((counts - target) / np.maximum(target, 1.0)) ** 2).sum())


def assign_units(unit_counts: np.ndarray, target: np.ndarray, seed: int = 42, restarts: int = 300) -> np.ndarray:
    """Destination of each free unit: 0 = train, 1 = val, 2 = test.

    ``unit_counts`` [U, K]: each unit's images per (dataset, class) cell; ``target`` [2, K]: the images val and
    test should get per cell. Seeded greedy fills from ``restarts`` random orders, each polished by single moves
    and pairwise swaps while the cost drops; the cheapest result wins (first on ties)."""
    n_units = unit_counts.shape[0]
    if n_units == 0:
        return np.zeros(0, int)
    rng = np.random.default_rng(seed)
    best, best_cost = np.zeros(n_units, int), float("inf")
    for _ in range(max(1, restarts)):
        dest = np.zeros(n_units, int)
        counts = np.zeros_like(target, dtype=float)
        for u in rng.permutation(n_units):
            options = []
            for k in (0, 1, 2):
                c = counts.copy()
                if k:
                    c[k - 1] += unit_counts[u]
                options.append(_cost(c, target))
            k = int(np.argmin(options))
            dest[u] = k
            if k:
                counts[k - 1] += unit_counts[u]
        dest, cost = _polish(dest, unit_counts, target)
        if cost < best_cost - 1e-12:
            best, best_cost = dest.copy(), cost
    return best


def _counts(dest: np.ndarray, unit_counts: np.ndarray, n_cells: int) -> np.ndarray:
    c = np.zeros((2, n_cells))
    for k in (1, 2):
        c[k - 1] = unit_counts[dest == k].sum(axis=0)
    return c


def _polish(dest: np.ndarray, unit_counts: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    dest = dest.copy()
    cost = _cost(_counts(dest, unit_counts, target.shape[1]), target)
    improved = True
    while improved:
        improved = False
        for u in range(len(dest)):
            for k in (0, 1, 2):
                if k == dest[u]:
                    continue
                trial = dest.copy()
                trial[u] = k
                c = _cost(_counts(trial, unit_counts, target.shape[1]), target)
                if c < cost - 1e-12:
                    dest, cost, improved = trial, c, True
        for u in range(len(dest)):
            for v in range(u + 1, len(dest)):
                if dest[u] == dest[v]:
                    continue
                trial = dest.copy()
                trial[u], trial[v] = dest[v], dest[u]
                c = _cost(_counts(trial, unit_counts, target.shape[1]), target)
                if c < cost - 1e-12:
                    dest, cost, improved = trial, c, True
    return dest, cost


@dataclass
class UnionSplit:
    root: Path
    samples: list[LesionSample]
    grouping: UnionGrouping
    pairs: TwinPairs
    split: list[str]
    kept: dict[str, str]  # dataset -> CSV it was kept from

    def rel(self, i: int) -> str:
        return self.samples[i].path.relative_to(self.root).as_posix()


def union_split(root: Path | str, samples: Sequence[LesionSample], hashes: ImageHashes,
                keep: Mapping[str, Path | str] | None = None, seed: int = 42,
                busi_rule: MatchRule = BUSI_RULE, cross_rule: MatchRule = CROSS_RULE,
                fractions: Mapping[str, float] = FRACTIONS) -> UnionSplit:
    """Split ``samples`` (from ``read_datasets``): units whole, conflicts in train, kept datasets as kept, the rest
    stratified by dataset and class (see the module docstring)."""
    root = Path(root)
    samples = list(samples)
    keep = dict(keep or {})
    unknown = sorted(set(keep) - {s.dataset for s in samples})
    if unknown:
        raise ConfigError(f"--keep names dataset(s) not in --datasets: {', '.join(unknown)}")
    pairs = twin_pairs(samples, hashes, busi_rule, cross_rule)
    grouping = group_union(samples, pairs)
    n = len(samples)
    split = [""] * n
    kept_of: dict[str, str] = {}
    for name, path in keep.items():
        table = read_kept(path, name)
        for i, s in enumerate(samples):
            if s.dataset == name:
                rel = s.path.relative_to(root / name).as_posix()
                if rel not in table:
                    raise ConfigError(f"--keep {name}={path}: {rel} is not in that split file")
                kept_of[grouping.unit[i]] = kept_of.get(grouping.unit[i], table[rel])
                if kept_of[grouping.unit[i]] != table[rel]:
                    raise ConfigError(f"unit {grouping.unit[i]} has images in two kept splits "
                                      f"({kept_of[grouping.unit[i]]} and {table[rel]}): cannot keep {path} as is")
    readable = hashes.readable
    for i in range(n):
        if not readable[i]:
            continue
        u = grouping.unit[i]
        if u in kept_of:
            split[i] = kept_of[u]
        elif u in grouping.conflicting_units:
            split[i] = "train"
    cells = sorted({(s.dataset, s.label) for s, r in zip(samples, readable) if r})
    cell_idx = {c: k for k, c in enumerate(cells)}
    total = np.zeros(len(cells))
    placed = np.zeros((2, len(cells)))
    for i, s in enumerate(samples):
        if readable[i]:
            total[cell_idx[(s.dataset, s.label)]] += 1
            if split[i] in ("val", "test"):
                placed[("val", "test").index(split[i]), cell_idx[(s.dataset, s.label)]] += 1
    target = np.array([[round_half_up(fractions[name] * t) for t in total] for name in ("val", "test")], float)
    free_units = sorted({grouping.unit[i] for i in range(n) if readable[i] and not split[i]})
    # datasets wholly kept need nothing more: only cells with free images carry a target
    free_cells = np.zeros(len(cells), bool)
    unit_counts = np.zeros((len(free_units), len(cells)))
    unit_index = {u: k for k, u in enumerate(free_units)}
    for i, s in enumerate(samples):
        if readable[i] and not split[i]:
            unit_counts[unit_index[grouping.unit[i]], cell_idx[(s.dataset, s.label)]] += 1
            free_cells[cell_idx[(s.dataset, s.label)]] = True
    residual = np.maximum(target - placed, 0) * free_cells
    dest = assign_units(unit_counts, residual, seed)
    for i in range(n):
        if readable[i] and not split[i]:
            split[i] = SPLITS[int(dest[unit_index[grouping.unit[i]]])]  # 0 train, 1 val, 2 test
    return UnionSplit(root, samples, grouping, pairs, split, {k: str(v) for k, v in keep.items()})


def write_union_csv(path: Path | str, result: UnionSplit) -> int:
    n = 0
    fh = io.StringIO()  # the whole table, then one atomic write: a crash or a full disk leaves the old file
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(LESION_SPLIT_COLUMNS)
    for i, s in enumerate(result.samples):
        if not result.split[i]:
            continue
        mask = s.mask.relative_to(result.root).as_posix() if s.mask is not None else ""
        w.writerow([result.rel(i), s.label, result.grouping.unit[i], result.split[i], s.dataset, s.patient, mask])
        n += 1
    write_text_atomic(path, fh.getvalue(), "split file")
    return n


def leaks(result: UnionSplit) -> dict[str, int]:
    """Checks that must be zero: twin links (as used) between images in different splits, units across splits,
    and (for datasets with patients) patients across splits."""
    sp = result.split
    twin_leak = sum(1 for a, b, u in zip(result.pairs.a, result.pairs.b, result.pairs.used)
                    if u and sp[a] and sp[b] and sp[a] != sp[b])
    by_unit: dict[str, set[str]] = {}
    by_patient: dict[tuple[str, str], set[str]] = {}
    for i, s in enumerate(result.samples):
        if sp[i]:
            by_unit.setdefault(result.grouping.unit[i], set()).add(sp[i])
            if s.patient:
                by_patient.setdefault((s.dataset, s.patient), set()).add(sp[i])
    return {"twin_links_across_splits": twin_leak,
            "units_in_two_splits": sum(1 for v in by_unit.values() if len(v) > 1),
            "patients_in_two_splits": sum(1 for v in by_patient.values() if len(v) > 1)}


def rejected_links_across_test(result: UnionSplit) -> list[tuple[str, str, int, int]]:
    """Pairs that only the looser BUSI rule calls twins (not used: different patients or datasets) with one image
    in test and the other not — listed so a reader can look at them."""
    sp = result.split
    return [(result.rel(int(a)), result.rel(int(b)), int(p), int(d))
            for a, b, u, p, d in zip(result.pairs.a, result.pairs.b, result.pairs.used, result.pairs.phash,
                                     result.pairs.dhash)
            if not u and sp[a] and sp[b] and (sp[a] == "test") != (sp[b] == "test")]


def split_report(result: UnionSplit) -> str:
    """Markdown: images per dataset × split × class, patients per split, and the leak checks."""
    sp, samples = result.split, result.samples
    datasets = sorted({s.dataset for s in samples})
    labels = sorted({s.label for s in samples})
    lines = ["| dataset | split | " + " | ".join(labels) + " | total | patients / units |",
             "|---|---|" + "---|" * (len(labels) + 2)]
    for d in datasets:
        for name in SPLITS:
            idx = [i for i, s in enumerate(samples) if s.dataset == d and sp[i] == name]
            counts = [sum(1 for i in idx if samples[i].label == lab) for lab in labels]
            pats = {samples[i].patient for i in idx if samples[i].patient}
            units = {result.grouping.unit[i] for i in idx}
            who = f"{len(pats)} patients" if pats else f"{len(units)} groups"
            lines.append(f"| {d} | {name} | " + " | ".join(map(str, counts)) + f" | {len(idx)} | {who} |")
    lk = leaks(result)
    lines += ["", "Checks (all must be 0): " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in lk.items())]
    rejected = rejected_links_across_test(result)
    if rejected:
        lines.append(f"Pairs only BUSI's looser rule links (different patients or datasets, not used) with one image "
                     f"in test: {len(rejected)} — " + "; ".join(f"{a} ~ {b} (pHash {p}, dHash {d})"
                                                               for a, b, p, d in rejected))
    conf = sorted(result.grouping.conflicting_units)
    if conf:
        lines.append(f"Label-conflicting units (all in train): {len(conf)} — "
                     + ", ".join(c if len(c) < 40 else c[:37] + "…" for c in conf[:12])
                     + (" …" if len(conf) > 12 else ""))
    for d, path in result.kept.items():
        lines.append(f"{d}: kept as in {path}")
    left = sum(1 for x in sp if not x)
    if left:
        lines.append(f"left out {left} unreadable file(s)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# The audit over several datasets
# --------------------------------------------------------------------------------------------------------
def audit_report(root: Path | str, samples: Sequence[LesionSample], hashes: ImageHashes,
                 busi_rule: MatchRule = BUSI_RULE, cross_rule: MatchRule = CROSS_RULE, max_list: int = 40) -> str:
    """Markdown summary: per dataset, the twins each rule finds, between datasets and between patients."""
    root = Path(root)
    pairs = twin_pairs(samples, hashes, busi_rule, cross_rule)
    rel = [s.path.relative_to(root).as_posix() for s in samples]
    datasets = sorted({s.dataset for s in samples})
    kinds = [_pair_kind(samples[int(a)], samples[int(b)]) for a, b in zip(pairs.a, pairs.b)]
    lines = [f"Near-duplicate audit of {', '.join(datasets)} under `{root.name}/` "
             f"({len(samples)} images, {int((~hashes.readable).sum())} unreadable).", "",
             f"- BUSI rule: {busi_rule.describe()}", f"- cross rule: {cross_rule.describe()}", ""]
    lines += _dataset_table(samples, datasets)
    lines += _twin_pair_table(samples, pairs, kinds)
    lines += _suspect_pair_table(pairs, kinds, rel, max_list)
    lines += _nearest_other_dataset(samples, hashes, datasets)
    lines += _conflict_list(samples, group_union(samples, pairs), rel, max_list)
    cites = [CITATIONS[d] for d in datasets if d in CITATIONS]
    if cites:
        lines += ["", "Data: " + "; ".join(cites) + ". The images are not in this repository."]
    return "\n".join(lines) + "\n"


def _pair_kind(sa: LesionSample, sb: LesionSample) -> str:
    if sa.dataset != sb.dataset:
        return "between datasets"
    if sa.patient and sb.patient:
        return "same patient" if sa.group == sb.group else "between patients"
    return "within dataset"


def _dataset_table(samples: Sequence[LesionSample], datasets: Sequence[str]) -> list[str]:
    lines = ["| dataset | images | benign | malignant | normal | patient groups |", "|---|---|---|---|---|---|"]
    for d in datasets:
        idx = [i for i, s in enumerate(samples) if s.dataset == d]
        pats = {samples[i].group for i in idx if samples[i].patient}
        lines.append(f"| {d} | {len(idx)} | " + " | ".join(str(sum(1 for i in idx if samples[i].label == c))
                                                           for c in ("benign", "malignant", "normal"))
                     + f" | {len(pats) if pats else '– (no patient ids)'} |")
    return lines


def _twin_pair_table(samples: Sequence[LesionSample], pairs: TwinPairs, kinds: Sequence[str]) -> list[str]:
    """Pairs per kind (within a dataset, same patient, between patients, between datasets) under each rule."""
    lines = ["", "Twin pairs found (image pairs; a pair counts under every rule that matches it):", "",
             "| where | dataset(s) | BUSI rule | cross rule | used for the split |", "|---|---|---|---|---|"]
    for k in ("within dataset", "same patient", "between patients", "between datasets"):
        sel = [j for j, x in enumerate(kinds) if x == k]
        if not sel and k != "between datasets":
            continue
        ds = sorted({samples[int(pairs.a[j])].dataset for j in sel} | {samples[int(pairs.b[j])].dataset for j in sel})
        lines.append(f"| {k} | {', '.join(ds) or '–'} | {int(pairs.busi_rule[sel].sum()) if sel else 0} | "
                     f"{int(pairs.cross_rule[sel].sum()) if sel else 0} | {int(pairs.used[sel].sum()) if sel else 0} |")
    return lines


def _suspect_pair_table(pairs: TwinPairs, kinds: Sequence[str], rel: Sequence[str], max_list: int) -> list[str]:
    """The pairs between patients or datasets, one row each (up to ``max_list``); nothing when there are none."""
    suspect = [j for j, x in enumerate(kinds) if x in ("between patients", "between datasets")]
    if not suspect:
        return []
    lines = ["", "Pairs between patients or datasets (each looked at side by side; see the module docstring "
                 "of `training/multi_split.py`):", "",
             "| image A | image B | pHash | dHash | BUSI rule | cross rule |", "|---|---|---|---|---|---|"]
    for j in suspect[:max_list]:
        lines.append(f"| {rel[int(pairs.a[j])]} | {rel[int(pairs.b[j])]} | {pairs.phash[j]} | {pairs.dhash[j]} | "
                     f"{'yes' if pairs.busi_rule[j] else 'no'} | {'yes' if pairs.cross_rule[j] else 'no'} |")
    if len(suspect) > max_list:
        lines.append(f"| … {len(suspect) - max_list} more | | | | | |")
    return lines


def _nearest_other_dataset(samples: Sequence[LesionSample], hashes: ImageHashes, datasets: Sequence[str]
                           ) -> list[str]:
    """Per dataset, the nearest image of another dataset by pHash: how far apart the datasets are."""
    ok = np.flatnonzero(hashes.readable)
    near = []
    for d in datasets:
        a = np.array([i for i in ok.tolist() if samples[i].dataset == d], int)
        b = np.array([i for i in ok.tolist() if samples[i].dataset != d], int)
        if len(a) and len(b):
            p = hamming(hashes.phash[a], hashes.phash[b]).astype(int)
            near.append(f"{d}: nearest image of another dataset at pHash {int(p.min())} "
                        f"(median over its images {float(np.median(p.min(axis=1))):.0f} of {HASH_BITS} bits)")
    return ["", "- " + "\n- ".join(near)] if near else []


def _conflict_list(samples: Sequence[LesionSample], grouping: UnionGrouping, rel: Sequence[str], max_list: int
                   ) -> list[str]:
    """The label-conflicting near-duplicate groups (up to ``max_list``) and the units they send to train."""
    conflicts = sorted(grouping.conflicting_units)
    twin_groups: dict[int, list[int]] = {}
    for i, g in enumerate(grouping.twin_group):
        twin_groups.setdefault(g, []).append(i)
    conflict_groups = [m for m in twin_groups.values() if len({samples[i].label for i in m}) > 1]
    lines = ["", f"Label-conflicting near-duplicate groups (rules as used for the split): {len(conflict_groups)} "
                 f"({sum(len(m) for m in conflict_groups)} images); their units go to train:"]
    for m in conflict_groups[:max_list]:
        lines.append("- " + ", ".join(f"{rel[i]} ({samples[i].label})" for i in m[:8])
                     + (f", … (+{len(m) - 8})" if len(m) > 8 else ""))
    lines.append(f"- units: {', '.join(conflicts) if conflicts else '–'}")
    return lines


def write_audit_csv(path: Path | str, root: Path | str, samples: Sequence[LesionSample], hashes: ImageHashes,
                    busi_rule: MatchRule = BUSI_RULE, cross_rule: MatchRule = CROSS_RULE) -> None:
    """One row per image: dataset, file, label, patient, unit (what a split keeps together), near-duplicate group,
    hashes, and the nearest image of ANOTHER dataset with its distances."""
    root = Path(root)
    grouping = group_union(samples, twin_pairs(samples, hashes, busi_rule, cross_rule))
    ok = hashes.readable
    fh = io.StringIO()  # the whole table, then one atomic write: a crash or a full disk leaves the old file
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["dataset", "file", "label", "patient", "unit", "twin_group", "phash", "dhash",
                "nearest_other_dataset_file", "nearest_other_dataset_phash_dist"])
    for i, s in enumerate(samples):
        other = np.array([j for j in range(len(samples)) if ok[j] and samples[j].dataset != s.dataset], int)
        near, dist = "", ""
        if ok[i] and other.size:
            dp = hamming(hashes.phash[[i]], hashes.phash[other])[0].astype(int)
            k = int(np.argmin(dp))
            near, dist = samples[int(other[k])].path.relative_to(root).as_posix(), str(int(dp[k]))
        w.writerow([s.dataset, s.path.relative_to(root).as_posix(), s.label, s.patient, grouping.unit[i],
                    f"t{grouping.twin_group[i]:05d}", f"{int(hashes.phash[i]):016x}" if ok[i] else "",
                    f"{int(hashes.dhash[i]):016x}" if ok[i] else "", near, dist])
    write_text_atomic(path, fh.getvalue(), "audit table")
