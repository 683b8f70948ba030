"""``sonolens make-split DIR --out CSV``: the command line of ``training.splits`` (one dataset) and of the split over
several datasets (``--datasets``, ``training.multi_split``).

The twin-rule options and the reading of ``--datasets`` are ``audit-data``'s (``training.audit_cli``); the closing
lines (``print_split_written``) are shared with ``chest-split`` (``training.chest_split_cli``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import refuse_inputs_as_outputs

from .audit import MatchRule, audit_samples
from .audit_cli import (
    add_rule_options,
    check_outputs,
    dataset_names,
    read_and_hash,
    rule_from_args,
    write_output,
)
from .data import read_class_folders
from .multi_split import split_report, union_split, write_union_csv
from .splits import make_split, report, write_split_csv


def print_split_written(summary: str, n_rows: int, out: Path) -> int:
    """The last lines of a split command: the split's summary and how many rows went to which file; exit code 0."""
    print(summary)
    print(f"wrote {n_rows} rows to {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens make-split",
        description="Write a train/val/test split CSV (file,label,group,split). 'grouped' keeps near-duplicate "
                    "groups (see audit-data) on one side and label conflicts out of test; 'paper' is the "
                    "image-level split of the BUSI papers (87/88/88 test), leaky on purpose for comparison.")
    p.add_argument("dir", type=Path, help="dataset root with one sub-folder per class (with --datasets: the folder "
                                          "holding the datasets, e.g. ../shared/datasets)")
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.add_argument("--datasets", default=None,
                   help="several datasets under DIR, comma-separated (e.g. busi,bus_uclm): one split grouped by "
                        "patient and near-duplicate, stratified by dataset and class (training.multi_split)")
    p.add_argument("--keep", action="append", default=[], metavar="DATASET=CSV",
                   help="with --datasets: keep this dataset's images where an existing split CSV puts them "
                        "(e.g. busi=training/split_csv/busi.csv, so the canonical BUSI test set stays the same)")
    p.add_argument("--protocol", choices=("grouped", "paper"), default="grouped")
    p.add_argument("--seed", type=int, default=42)
    add_rule_options(p)
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # every option and the output are checked before the first image is read (hashing takes minutes)
    rule = rule_from_args(args)
    keep: dict[str, Path] = {}
    if args.datasets:
        if args.protocol != "grouped":
            raise ConfigError("--datasets makes grouped splits only")
        keep = _kept_splits(args.keep, dataset_names(args.datasets))
    elif args.keep:
        raise ConfigError("--keep needs --datasets")
    refuse_inputs_as_outputs({"split CSV (--out)": args.out},
                             {f"--keep {name} split": path for name, path in keep.items()})
    check_outputs({"split CSV (--out)": args.out})
    return _union_main(args, rule, keep) if args.datasets else _one_dataset_main(args, rule)


def _one_dataset_main(args: argparse.Namespace, rule: MatchRule) -> int:
    root = args.dir
    samples = read_class_folders(root)
    audit = audit_samples(root, samples, rule)
    if audit.collapsed() and args.protocol == "grouped":
        raise ConfigError(f"near-duplicate grouping collapsed ({audit.summary()['largest_group']} images in one "
                          f"group): the twin thresholds are too loose for {root}; see 'sonolens audit-data'")
    split = make_split(audit, args.protocol, args.seed)
    n = write_output("split CSV", args.out, lambda path: write_split_csv(path, audit, split))
    return print_split_written(report(audit, split, args.protocol), n, args.out)


def _union_main(args: argparse.Namespace, rule: MatchRule, keep: dict[str, Path]) -> int:
    samples, hashes = read_and_hash(args.dir, args.datasets)
    result = union_split(args.dir, samples, hashes, keep=keep, seed=args.seed, busi_rule=rule)
    n = write_output("split CSV", args.out, lambda path: write_union_csv(path, result))
    return print_split_written(split_report(result), n, args.out)


def _kept_splits(items: list[str], datasets: list[str]) -> dict[str, Path]:
    """``--keep DATASET=CSV`` options as ``{dataset: CSV}``; each DATASET one of ``--datasets``, each CSV a file."""
    keep: dict[str, Path] = {}
    for item in items:
        name, sep, given = item.partition("=")
        if not sep or not name or not given:
            raise ConfigError(f"--keep {item!r} is not DATASET=CSV")
        keep[name] = Path(given)
    unknown = sorted(set(keep) - set(datasets))
    if unknown:
        raise ConfigError(f"--keep names dataset(s) not in --datasets: {', '.join(unknown)}")
    for name, csv_path in keep.items():
        if not csv_path.is_file():
            raise ConfigError(f"--keep {name}={csv_path}: file not found")
    return keep
