"""A command whose optional packages are not installed says in one line which extra to install (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import NEUTRAL_CWD, assert_one_line_error

_BLOCKED = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if the package were not installed
from sonolens.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _without(packages: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKED, packages, *args], capture_output=True, text=True,
                          timeout=120, cwd=NEUTRAL_CWD)


@pytest.mark.parametrize("blocked,args,extra", [
    ("torch", ["export", "--help"], "train"),
    ("PyQt6", ["view", "phantom:cyst", "--exit-after-frames", "1"], "app"),
])
def test_missing_extra_is_one_line(blocked, args, extra):
    line = assert_one_line_error(_without(blocked, *args), f"pip install 'sonolens[{extra}]'")
    assert blocked in line


def test_run_and_help_need_no_extra():
    proc = _without("torch,PyQt6,timm", "run", "--help")
    assert proc.returncode == 0 and "usage: sonolens run" in proc.stdout
