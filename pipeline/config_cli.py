"""``sonolens config show [--mode run|view] [--config F] [run's flags]``: the resolved configuration, in sections,
and where each value came from (a mode's default, the file, the command line) — the same resolution ``run`` and
``view`` use (``pipeline.config``)."""

from __future__ import annotations

import argparse

from .errors import ConfigError
from .run_cli import parser as run_parser
from .run_cli import resolve_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens config", description="Show the resolved configuration of run/view.")
    sub = p.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", parents=[run_parser()], add_help=False,
                          help="print every setting, resolved, with where it came from")
    show.add_argument("--mode", choices=("run", "view"), default="run", help="whose defaults (default: run)")
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.cmd != "show":  # pragma: no cover - argparse refuses other subcommands
        raise ConfigError(f"unknown config subcommand {args.cmd!r}")
    resolved = resolve_args(args, mode=args.mode)
    for note in resolved.notes:
        print(f"# note: {note}")
    print(resolved.show())
    return 0
