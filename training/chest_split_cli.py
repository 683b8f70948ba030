"""``sonolens chest-split DATA_DIR --out CSV``: the command line of ``training.chest_split`` (the patient-grouped
split of the Kermany chest X-rays)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable, refuse_inputs_as_outputs

from .chest_split import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    LABELS_FILE,
    check_val_fraction,
    chest_split,
    read_labels,
    straddling_groups,
    summary,
    write_csv,
)
from .split_cli import print_split_written


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens chest-split",
        description="Write the patient-grouped split CSV (file,label,group,split) of the Kermany chest X-rays: "
                    "official test set kept, official train split into train/val by patient, stratified by label.")
    p.add_argument("dir", type=Path, help="dataset root holding labels.csv, NORMAL/ and PNEUMONIA/")
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="share of each class's official-train images that goes to val "
                        f"(default {DEFAULT_VAL_FRACTION})")
    p.add_argument("--check-files", action="store_true", help="also check that every listed image exists")
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    check_val_fraction(args.val_fraction)  # options and output first: nothing is read before they pass
    refuse_inputs_as_outputs({"split CSV (--out)": args.out}, {"labels file": args.dir / LABELS_FILE})
    check_writable(args.out, "split CSV (--out)")
    rows = read_labels(args.dir)
    if args.check_files:
        absent = [r["relpath"] for r in rows if not (args.dir / r["relpath"]).is_file()]
        if absent:
            raise ConfigError(f"{len(absent)} image(s) of labels.csv missing under {args.dir} (first: {absent[0]})")
    split = chest_split(rows, args.seed, args.val_fraction)
    bad = straddling_groups(split)
    if bad:  # cannot happen by construction; a guard against future edits
        raise ConfigError(f"patient groups in several splits: {', '.join(bad[:5])}")
    try:
        write_csv(args.out, split)
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    return print_split_written(summary(split), len(split), args.out)
