"""``sonolens audit-data DIR``: near-duplicate groups, label conflicts and unreadable files of a dataset.

Why: BUSI has no patient IDs and about four in ten of its images have a near-twin (the same frame saved again,
sometimes with calipers, a box or text burned in), some of them under another label. A random split puts twins
on both sides and inflates test accuracy; the groups found here are what ``make-split`` keeps together.

How: two perceptual hashes per image (``imagehash``): pHash (DCT of a 32×32 thumbnail, sign of the 8×8 lowest
frequencies against their median) and dHash (sign of horizontal gradients of a 9×8 thumbnail). Both look only at
coarse structure, so thin calipers, a "+" or a label barely move them. Two images are *twins* when

* pHash Hamming distance ≤ ``phash`` (default 10 of 64 bits), or
* pHash ≤ ``confirm_phash`` (16) **and** dHash ≤ ``dhash`` (13): a second, independent hash confirms a
  borderline pHash (annotated or slightly shifted re-saves).

Groups are the transitive closure of twin pairs (union-find): A~B and B~C puts A, B, C in one group even when A
and C differ more, which is what a leak-free split needs.

Tuning on BUSI (780 images; 256×256): pHash distances between unrelated images are centred on 30 bits and fall
below 14 only in a thin tail, while re-saved copies sit at 0–10. Side-by-side inspection of every pair band:
pHash ≤ 10 gave only same-lesion pairs; 12–16 mixed same-lesion re-saves with unrelated look-alikes, and a
dHash ≤ 13 separated them (every inspected pair in that band with dHash ≤ 13 was the same lesion; dHash 14–15
already admitted unrelated images). A blurred, centre-cropped pHash added no pair beyond this rule.
Hashing finds copies, not patients: two different views of one lesion are usually *not* grouped.

The command line (and ``--datasets``, ``training.multi_split``) is in ``training.audit_cli``.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Sample, load_gray, read_class_folders

HASH_BITS = 64
# A group holding more than this fraction of a dataset means the rule chains look-alikes together (on the
# Kermany chest X-rays, whose 8×8 pHashes are all alike, the BUSI thresholds put 99 % in one group).
COLLAPSE_FRACTION = 0.05


@dataclass(frozen=True)
class MatchRule:
    """When two images count as near-duplicates (Hamming distances in bits out of 64; see module docstring)."""

    phash: int = 10
    confirm_phash: int = 16
    dhash: int = 13

    def matches(self, phash_dist: np.ndarray, dhash_dist: np.ndarray) -> np.ndarray:
        return (phash_dist <= self.phash) | ((phash_dist <= self.confirm_phash) & (dhash_dist <= self.dhash))

    def describe(self) -> str:
        return (f"pHash <= {self.phash}, or pHash <= {self.confirm_phash} and dHash <= {self.dhash} "
                f"(Hamming bits of 64)")


def _hash_to_int(h) -> int:
    return int(str(h), 16)


def hash_gray(gray: np.ndarray) -> tuple[int, int]:
    """(pHash, dHash) of a grayscale uint8 image, each a 64-bit integer."""
    import imagehash
    from PIL import Image

    img = Image.fromarray(gray)
    return _hash_to_int(imagehash.phash(img)), _hash_to_int(imagehash.dhash(img))


@dataclass
class ImageHashes:
    """Hashes of a list of samples; unreadable files have ``readable[i] == False`` and an entry in ``errors``."""

    phash: np.ndarray  # uint64 [n]
    dhash: np.ndarray  # uint64 [n]
    readable: np.ndarray  # bool [n]
    errors: dict[int, str] = field(default_factory=dict)


def hash_samples(samples: Sequence[Sample], progress: Callable[[int, int], None] | None = None) -> ImageHashes:
    """Decode and hash every sample (a few ms each). A file that does not decode is recorded, not fatal."""
    n = len(samples)
    ph = np.zeros(n, np.uint64)
    dh = np.zeros(n, np.uint64)
    ok = np.zeros(n, bool)
    errors: dict[int, str] = {}
    for i, s in enumerate(samples):
        try:
            ph[i], dh[i] = hash_gray(load_gray(s.path))
            ok[i] = True
        except Exception as exc:  # a truncated PNG raises in cv2 or PIL alike: that is what we report
            errors[i] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if progress is not None:
            progress(i + 1, n)
    return ImageHashes(ph, dh, ok, errors)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two uint64 hash vectors: [len(a), len(b)] uint8."""
    return np.bitwise_count(a[:, None] ^ b[None, :])


class UnionFind:
    """Disjoint sets over any orderable keys; the smallest key of a set is its root, so the grouping does not
    depend on the order unions happen in (used for near-duplicate groups here and patient groups in
    ``chest_split``)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class AuditResult:
    """Everything ``audit-data`` found, one entry per sample (in the reader's sorted order)."""

    root: Path
    samples: list[Sample]
    hashes: ImageHashes
    rule: MatchRule
    group: list[str]  # "g0001"…, numbered by first member; "" for unreadable files
    nearest: np.ndarray  # index of the closest other readable image by (pHash, dHash), -1 if none
    nearest_phash: np.ndarray
    nearest_dhash: np.ndarray
    seconds: float = 0.0

    def rel(self, i: int) -> str:
        return self.samples[i].path.relative_to(self.root).as_posix()

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, g in enumerate(self.group):
            if g:
                out.setdefault(g, []).append(i)
        return out

    def conflicting_groups(self) -> dict[str, list[int]]:
        return {g: m for g, m in self.groups().items() if len({self.samples[i].label for i in m}) > 1}

    def conflict(self) -> np.ndarray:
        flags = np.zeros(len(self.samples), bool)
        for members in self.conflicting_groups().values():
            flags[members] = True
        return flags

    def group_size(self) -> np.ndarray:
        sizes = {g: len(m) for g, m in self.groups().items()}
        return np.array([sizes.get(g, 0) for g in self.group], int)

    def summary(self) -> dict[str, int | float]:
        readable = int(self.hashes.readable.sum())
        sizes = self.group_size()
        with_twin = int((sizes > 1).sum())
        return {
            "images": len(self.samples),
            "readable": readable,
            "unreadable": len(self.samples) - readable,
            "groups": len(self.groups()),
            "groups_with_twins": sum(1 for m in self.groups().values() if len(m) > 1),
            "largest_group": int(sizes.max()) if readable else 0,
            "images_with_twin": with_twin,
            "twin_fraction": with_twin / readable if readable else 0.0,
            "conflicting_groups": len(self.conflicting_groups()),
            "conflicting_images": int(self.conflict().sum()),
        }

    def collapsed(self, max_fraction: float = COLLAPSE_FRACTION) -> bool:
        """True when one group swallowed a large part of the dataset: chained look-alikes, not copies."""
        sizes = self.group_size()
        return bool(sizes.size) and sizes.max() > max(10, max_fraction * self.hashes.readable.sum())

    def format_summary(self, max_list: int = 20) -> str:
        s = self.summary()
        lines = [
            f"audit of {self.root}  ({self.seconds:.1f} s; twins: {self.rule.describe()})",
            f"  images                {s['images']}",
            f"  unreadable            {s['unreadable']}",
            f"  groups with >1 image  {s['groups_with_twins']}  (largest: {s['largest_group']} images)",
            f"  images with a twin    {s['images_with_twin']}  ({100 * s['twin_fraction']:.1f}% of readable)",
            f"  conflicting groups    {s['conflicting_groups']}  ({s['conflicting_images']} images)",
        ]
        if self.collapsed():
            lines.append(f"WARNING: one group holds {s['largest_group']} of {s['readable']} images: the thresholds "
                         f"(tuned on BUSI) are too loose for this dataset's images; lower --threshold and "
                         f"--dhash-threshold (the CSV's nearest_*_dist columns show the distances)")
        conflicts = self.conflicting_groups()
        if conflicts:
            lines.append("label conflicts (same picture, different labels):")
            for g, members in list(conflicts.items())[:max_list]:
                more = f", … (+{len(members) - 8})" if len(members) > 8 else ""
                lines.append(f"  {g}: " + ", ".join(self.rel(i) for i in members[:8]) + more)
            if len(conflicts) > max_list:
                lines.append(f"  … {len(conflicts) - max_list} more (see the CSV)")
        if self.hashes.errors:
            lines.append("unreadable files:")
            for i, err in list(self.hashes.errors.items())[:max_list]:
                lines.append(f"  {self.rel(i)}: {err}")
            if len(self.hashes.errors) > max_list:
                lines.append(f"  … {len(self.hashes.errors) - max_list} more (see the CSV)")
        return "\n".join(lines)

    def write_csv(self, path: Path | str) -> None:
        sizes, conflict = self.group_size(), self.conflict()
        with Path(path).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["file", "label", "group", "group_size", "conflict", "status", "phash", "dhash",
                        "nearest_file", "nearest_phash_dist", "nearest_dhash_dist"])
            for i, s in enumerate(self.samples):
                ok = bool(self.hashes.readable[i])
                j = int(self.nearest[i])
                w.writerow([
                    self.rel(i), s.label, self.group[i], int(sizes[i]), int(conflict[i]),
                    "ok" if ok else "unreadable",
                    f"{int(self.hashes.phash[i]):016x}" if ok else "",
                    f"{int(self.hashes.dhash[i]):016x}" if ok else "",
                    self.rel(j) if j >= 0 else "",
                    int(self.nearest_phash[i]) if j >= 0 else "",
                    int(self.nearest_dhash[i]) if j >= 0 else "",
                ])


def find_groups(root: Path | str, samples: Sequence[Sample], hashes: ImageHashes,
                rule: MatchRule = MatchRule(), chunk: int = 1024) -> AuditResult:
    """Group near-duplicates transitively. Pairwise distances go in row chunks: 6k images stay well under 1 GB."""
    samples = list(samples)
    idx = np.flatnonzero(hashes.readable)
    ph, dh = hashes.phash[idx], hashes.dhash[idx]
    m = len(idx)
    uf = UnionFind()
    nearest = np.full(len(samples), -1, int)
    near_p = np.full(len(samples), HASH_BITS + 1, int)
    near_d = np.full(len(samples), HASH_BITS + 1, int)
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        dp = hamming(ph[start:stop], ph).astype(np.int16)
        dd = hamming(dh[start:stop], dh).astype(np.int16)
        rows = np.arange(stop - start)
        dp[rows, rows + start] = HASH_BITS + 1  # not one's own twin
        dd[rows, rows + start] = HASH_BITS + 1
        for a, b in zip(*np.nonzero(rule.matches(dp, dd))):
            if b > a + start:
                uf.union(int(a + start), int(b))
        if m > 1:
            best = np.argmin(dp * (HASH_BITS + 2) + dd, axis=1)  # nearest by pHash, ties by dHash
            nearest[idx[start:stop]] = idx[best]
            near_p[idx[start:stop]] = dp[rows, best]
            near_d[idx[start:stop]] = dd[rows, best]
    roots = [uf.find(k) for k in range(m)]
    # Number groups by their first member in the (sorted) sample order: stable ids for a stable file list.
    names: dict[int, str] = {}
    group = [""] * len(samples)
    for k, r in enumerate(roots):
        if r not in names:
            names[r] = f"g{len(names) + 1:04d}"
        group[idx[k]] = names[r]
    return AuditResult(Path(root), samples, hashes, rule, group, nearest, near_p, near_d)


def audit_samples(root: Path | str, samples: Sequence[Sample], rule: MatchRule = MatchRule(),
                  hashes: ImageHashes | None = None) -> AuditResult:
    """Hash (unless ``hashes`` is given, e.g. cached) and group ``samples`` whose paths lie under ``root``."""
    t0 = time.perf_counter()
    if hashes is None:
        hashes = hash_samples(samples)
    result = find_groups(root, samples, hashes, rule)
    result.seconds = time.perf_counter() - t0
    return result


def audit_dir(root: Path | str, rule: MatchRule = MatchRule()) -> AuditResult:
    """Audit a folder-per-class dataset (masks ignored)."""
    return audit_samples(root, read_class_folders(root), rule)


if __name__ == "__main__":  # the old ``python -m sonolens.training.audit`` still works
    from sonolens.cli import main

    sys.exit(main(["audit-data", *sys.argv[1:]]))
