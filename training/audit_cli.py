"""``sonolens audit-data DIR``: the command line of ``training.audit`` (one dataset) and of the audit over several
datasets (``--datasets``, ``training.multi_split``).

Also the pieces ``make-split`` (``training.split_cli``) shares with it: the twin-rule options and the reading and
hashing of ``--datasets``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sonolens.pipeline.errors import ConfigError, SonolensError, reason
from sonolens.pipeline.outputs import check_writable, write_text_atomic

from .audit import HASH_BITS, ImageHashes, MatchRule, audit_dir, hash_samples
from .data import LesionSample
from .multi_split import audit_report, read_datasets, write_audit_csv

T = TypeVar("T")


def add_rule_options(p: argparse.ArgumentParser) -> None:
    """The twin-rule options, shared by ``audit-data`` and ``make-split``."""
    d = MatchRule()
    p.add_argument("--threshold", type=int, default=d.phash,
                   help=f"pHash Hamming distance (bits of 64) at or below which two images are twins "
                        f"(default {d.phash})")
    p.add_argument("--confirm-threshold", type=int, default=d.confirm_phash,
                   help=f"pHash distance up to which a close dHash can confirm a twin (default {d.confirm_phash})")
    p.add_argument("--dhash-threshold", type=int, default=d.dhash,
                   help=f"dHash distance that confirms a borderline pHash (default {d.dhash})")


def rule_from_args(args: argparse.Namespace) -> MatchRule:
    """The twin rule of the options of ``add_rule_options``; a distance outside 0–64 bits is a ``ConfigError``."""
    for name in ("threshold", "confirm_threshold", "dhash_threshold"):
        if not 0 <= getattr(args, name) <= HASH_BITS:
            raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and {HASH_BITS}")
    return MatchRule(args.threshold, max(args.confirm_threshold, args.threshold), args.dhash_threshold)


def check_outputs(outputs: dict[str, Path | None]) -> None:
    """Before any reading or hashing: every given output (``{what: path}``) can be written, else a one-line
    ``ConfigError`` (``pipeline.outputs.check_writable``: a path under a file, a folder, a read-only folder…)."""
    for what, path in outputs.items():
        if path is not None:
            check_writable(path, what)


def write_output(what: str, path: Path, write: Callable[[Path], T]) -> T:
    """``write(path)``'s result; an OS error (a full disk, the folder removed meanwhile) is one line, not a
    traceback."""
    try:
        return write(path)
    except OSError as exc:
        raise SonolensError(f"writing the {what} to {path} failed: {reason(exc)}") from None


def dataset_names(datasets: str) -> list[str]:
    """The names of a ``--datasets`` value: comma-separated, blanks dropped."""
    return [d.strip() for d in datasets.split(",") if d.strip()]


def read_and_hash(root: Path, datasets: str) -> tuple[list[LesionSample], ImageHashes]:
    """The samples of ``--datasets`` (comma-separated names of folders under ``root``) and their hashes."""
    samples = read_datasets(root, dataset_names(datasets))
    return samples, hash_samples(samples)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens audit-data",
        description="Find near-duplicate images (perceptual hashes, grouped transitively), twins with "
                    "conflicting labels, and unreadable files in a folder-per-class dataset.")
    p.add_argument("dir", type=Path, help="dataset root with one sub-folder per class (e.g. BUSI)")
    p.add_argument("--csv", type=Path, help="write one row per image (group, conflict, hashes, nearest twin)")
    p.add_argument("--datasets", default=None,
                   help="audit several datasets under DIR together, comma-separated (e.g. busi,bus_uclm): twins "
                        "within and between datasets and patients (training.multi_split)")
    p.add_argument("--md", type=Path, default=None, help="with --datasets: write the summary as Markdown")
    add_rule_options(p)
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    rule = rule_from_args(args)  # every option and output is checked before the first image is read
    if args.md and not args.datasets:
        raise ConfigError("--md needs --datasets (one dataset's summary is printed; --csv writes its rows)")
    check_outputs({"audit CSV (--csv)": args.csv, "audit summary (--md)": args.md})
    if args.datasets:
        return _union_main(args, rule)
    result = audit_dir(args.dir, rule)
    print(result.format_summary())
    if args.csv:
        write_output("audit CSV", args.csv, result.write_csv)
        print(f"wrote {args.csv}")
    return 0


def _union_main(args: argparse.Namespace, rule: MatchRule) -> int:
    samples, hashes = read_and_hash(args.dir, args.datasets)
    report = audit_report(args.dir, samples, hashes, busi_rule=rule)
    print(report, end="")
    if args.md:
        write_text_atomic(args.md, report, "audit summary")
        print(f"wrote {args.md}")
    if args.csv:
        write_output("audit CSV", args.csv,
                     lambda path: write_audit_csv(path, args.dir, samples, hashes, busi_rule=rule))
        print(f"wrote {args.csv}")
    return 0
