"""The sidecar's layout: no import circle between its modules, so each subsystem can be read and loaded alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIDECAR = ROOT / "sidecar"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {_module_name(path): path for path in sorted(SIDECAR.rglob("*.py")) if "__pycache__" not in path.parts}


def _imports(path: Path) -> set[str]:
    """Sidecar modules ``path`` imports anywhere (top level, inside functions, under ``TYPE_CHECKING``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {target for target in [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                      if target in MODULES}  # fmt: skip
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import path that leads back to where it started (a depth-first search keeping the current path)."""
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return cycles


def test_no_module_imports_itself_back() -> None:
    """No sidecar module reaches itself through its imports, lazy and type-only imports included."""
    graph = {name: _imports(path) - {name} for name, path in MODULES.items()}
    assert _cycles(graph) == []


def test_cycle_finder_sees_a_circle() -> None:
    """The check above would notice a circle (a finder that sees nothing proves nothing)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


ALLOWED = {
    "sandbox": {"sandbox"},
    "runtime": {"runtime", "sandbox", "settings"},
    "agent": {"agent", "runtime", "sandbox"},
    "host": {"host", "runtime", "sandbox", "settings", "git"},
    "git": {"git", "runtime", "sandbox", "settings"},
}
"""Which parts of the sidecar each subsystem may import: dependencies point one way (``main.py`` wires them all)."""


def test_subsystems_depend_one_way() -> None:
    """sandbox imports no other part of the sidecar, runtime no agent, host or git, agent and host not each other,
    git only the runtime's seams."""
    wrong = []
    for name, path in MODULES.items():
        parts = name.split(".")
        if len(parts) > 2 and parts[1] in ALLOWED:
            used = {target.split(".")[1] for target in _imports(path) if target.count(".") >= 1}
            wrong += [f"{name} imports sidecar.{part}" for part in sorted(used - ALLOWED[parts[1]])]
    assert wrong == []


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name.startswith("sidecar.sandbox.")))
def test_each_sandbox_module_imports_alone(module: str) -> None:
    """Each sandbox module loads first in a fresh interpreter (no order of imports is needed)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
