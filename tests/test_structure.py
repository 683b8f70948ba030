"""The code's shape, checked over its syntax trees (no import, no timing):

* no function or method in ``pipeline/``, ``training/``, ``bench/``, ``models/`` or ``batch/`` is longer than 80
  lines, counted from its first decorator (or ``def``) to its last line, docstring included;
* no module of a package imports, directly or through other modules of that package, a module that imports it
  back — imports inside functions count, imports under ``if TYPE_CHECKING:`` do not. The same rule is an
  import-linter ``acyclic_siblings`` contract (``lint-imports``, pyproject.toml); this test keeps it in the README's
  test command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 80
SHORT_PACKAGES = ("pipeline", "training", "bench", "models", "batch")
PACKAGES = ("pipeline", "pipeline/sources", "training", "bench", "models", "app", "study", "simulator", "batch")


def long_functions(root: Path, base: Path = REPO) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                n = (node.end_lineno or node.lineno) - first + 1
                if n > MAX_LINES:
                    out.append(f"{path.relative_to(base)}:{node.lineno} {node.name} ({n} lines)")
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def sibling_imports(path: Path, package: str) -> set[str]:
    """Names of the modules of ``package`` (e.g. ``"pipeline"``, ``"pipeline.sources"``) that ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip, full = _type_checking_nodes(tree), f"sonolens.{package}"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                module = node.module
            elif node.level == 0 and node.module and (node.module == full or node.module.startswith(full + ".")):
                module = node.module[len(full) + 1:] or None
            else:
                continue
            found.update([module.split(".")[0]] if module else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name[len(full) + 1:].split(".")[0] for a in node.names if a.name.startswith(full + "."))
    return found


def import_cycles(folder: Path, package: str) -> list[list[str]]:
    """Strongly connected groups (more than one module) of the package's import graph."""
    modules = {p.stem for p in folder.glob("*.py")}
    graph = {m: (sibling_imports(folder / f"{m}.py", package) & modules) - {m} for m in modules}
    reach = {m: _reachable(graph, m) for m in graph}
    groups = {frozenset({m} | {n for n in reach[m] if m in reach[n]}) for m in graph}
    return sorted(sorted(g) for g in groups if len(g) > 1)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


@pytest.mark.parametrize("package", SHORT_PACKAGES)
def test_functions_are_short(package):
    assert long_functions(REPO / package) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within_a_package(package):
    assert import_cycles(REPO / package, package.replace("/", ".")) == []


def test_the_checks_can_fail(tmp_path):
    """A long function and a two-module cycle (through a function-level import) are found; a
    TYPE_CHECKING-only import is not counted."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "a.py").write_text(f"from . import b\n\ndef long():\n{body}\n", encoding="utf-8")
    (pkg / "b.py").write_text("def f():\n    from .a import long\n    return long\n", encoding="utf-8")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import x\n",
                              encoding="utf-8")
    (pkg / "d.py").write_text("from sonolens.pkg.c import TYPE_CHECKING\n", encoding="utf-8")
    assert [s.split(" ")[1] for s in long_functions(pkg, base=tmp_path)] == ["long"]
    assert import_cycles(pkg, "pkg") == [["a", "b"]]
