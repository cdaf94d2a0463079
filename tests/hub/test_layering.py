"""How the hub's modules depend on each other: the Hub has no web imports, hub modules import in a tree (no circle,
type-only imports included), and no SQL text lives outside the store package."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

HUB = Path(__file__).resolve().parents[2] / "hub"
WEB = ("fastapi", "starlette", "uvicorn")


def module_name(path: Path) -> str:
    parts = path.relative_to(HUB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def hub_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(HUB.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The hub modules ``path`` names in any import statement, wherever it is (``if TYPE_CHECKING:``, a function)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per dot after the first
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {name for name in names if name in known}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_hub_module_imports_no_web_framework() -> None:
    """Importing hub.hub (the Hub and everything it needs) in a fresh interpreter loads no fastapi, starlette or
    uvicorn module."""
    code = f"import sys, hub.hub\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {WEB!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=HUB.parent, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_hub_modules_import_without_a_circle() -> None:
    """The import graph among hub modules, counting imports under TYPE_CHECKING and inside functions, has no cycle."""
    modules = hub_modules()
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    assert "hub.hub" in graph["hub.app"] and "hub.store" in graph["hub.hub"]
    assert "hub.hub" in graph["hub.sweeps"] and "hub.hub" in graph["hub.dashboard_socket"], "TYPE_CHECKING counts"
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_circle() -> None:
    """The cycle check itself reports a circle hidden behind other edges."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": set()}) == ["b", "c", "b"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


SQL = re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE|PRAGMA|CREATE TABLE|CREATE INDEX|DROP TABLE|DROP INDEX)\b")


def test_no_sql_outside_the_store_package() -> None:
    """No hub module outside hub/store/ holds SQL text (statements, pragmas): the store speaks records."""
    found = [
        f"{path.relative_to(HUB.parent)}:{n}: {line.strip()}"
        for path in sorted(HUB.rglob("*.py"))
        if HUB / "store" not in path.parents
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert found == []
    assert any(SQL.search(p.read_text()) for p in (HUB / "store").rglob("*.py")), "the pattern finds SQL at all"
