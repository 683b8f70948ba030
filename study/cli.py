"""``sonolens study plan | report | export``: the reader-study tools that need no display (``study run``, the
participant's screen, is the viewer's: ``app.study_run``, dispatched by ``sonolens.cli``)."""

from __future__ import annotations

import argparse
import sys

from . import export


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens study", description="Reader studies: plan, run, report, export.")
    sub = p.add_subparsers(dest="cmd", required=True)
    export.add_parser(sub)
    return p


def cli_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
