"""The code's shape: small files, no import cycles, a simulator that loads neither Docker nor Flask."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("node", "harness")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports, anywhere in the file.

    A lazy import inside a function is still a dependency, so it counts; only
    ``if TYPE_CHECKING:`` blocks (annotations) are skipped.
    """
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for stmt in ast.walk(tree)
                       if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
                       for n in ast.walk(stmt)}
        for stmt in ast.walk(tree):
            if id(stmt) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            elif isinstance(stmt, ast.ImportFrom):
                base = _resolve(name, is_package, stmt)
                targets = [f"{base}.{alias.name}" for alias in stmt.names]
            for target in targets:
                # `from .m import x` names a module or a symbol: keep the longest prefix that is a module.
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] == package:
                    graph[name].add(target)
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module names, first repeated last), or None."""
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_cycle_finder_sees_a_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    assert cycle_in(import_graph(package)) is None


@pytest.mark.parametrize("folder", ["node", "harness", "bench"])
def test_no_file_over_limit(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"files over {MAX_LINES} lines: {long}"


def test_simulator_imports_neither_docker_nor_flask():
    code = "import sys, harness.sim; print(sorted(m for m in ('docker', 'flask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
