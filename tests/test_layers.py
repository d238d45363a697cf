"""The package's shape: imports point down the floors of docs/architecture.md, and no two packages import
each other in a loop. Every module is parsed (not imported), so lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "advkit"

# floor of each top-level part of advkit; a module may import from its own floor's package or any lower floor
# "__init__" (the package root) sits on top: it re-exports advkit.evaluate and advkit.testing lazily; modules
# that import `advkit` itself (for __version__) are exempt as importers of the root (see test_imports_point_down)
FLOORS = {
    "errors": 0, "registry": 0, "config": 0, "__init__": 9, "__main__": 8,
    "runtime": 1, "viz": 1,
    "attacks": 2, "data": 2, "models": 2, "report": 2,
    "train": 3,
    "eval": 4, "gan": 4,
    "detect": 5,
    "api": 6,
    "testing": 7, "cli": 7,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported advkit module, line) for every advkit import in the package."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                targets = [n for n in names if n.split(".")[0] == "advkit"][:1]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "advkit"]
            else:
                continue
            found += [(module, t, node.lineno) for t in targets]
    return found


def test_every_part_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert parts - set(FLOORS) == set(), "add the new part to FLOORS and to docs/architecture.md"


def test_no_relative_imports():
    rel = [f"{p.relative_to(PKG)}:{n.lineno}" for p in PKG.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
           if isinstance(n, ast.ImportFrom) and n.level]
    assert rel == []


def test_imports_point_down():
    up = [f"{m}:{line} imports {t} (floor {FLOORS[_part(t)]} above {FLOORS[_part(m)]})"
          for m, t, line in _imports()
          if _part(m) != _part(t) and FLOORS[_part(t)] > FLOORS[_part(m)] and _part(t) not in ("__init__",)]
    assert up == [], "\n".join(up)


def test_same_floor_packages_do_not_import_each_other():
    side = [f"{m}:{line} imports {t}" for m, t, line in _imports()
            if _part(m) != _part(t) and FLOORS[_part(t)] == FLOORS[_part(m)] and FLOORS[_part(m)] > 0]
    assert side == [], "\n".join(side)


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    modules = {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in PKG.rglob("*.py")}
    for m, t, _ in _imports():
        while t not in modules and "." in t:  # "from advkit.x import name" names a module or an attribute
            t = t.rsplit(".", 1)[0]
        if t != m and not m.startswith(t + ".") and not t.startswith(m + "."):
            graph.setdefault(m, set()).add(t)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "\n".join(cycles)


@pytest.mark.parametrize("pattern", ["os.environ.get(\"RANK\"", "os.environ[\"RANK\"]", "WORLD_SIZE"])
def test_only_runtime_reads_the_rank(pattern):
    readers = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if pattern in p.read_text()]
    assert set(readers) <= {"runtime/distributed.py"}, readers


def test_no_private_names_across_packages():
    leaks = [f"{m}:{line} uses {t}" for m, t, line in _imports()
             if _part(m) != _part(t) and any(seg.startswith("_") and not seg.startswith("__")
                                             for seg in t.split(".")[1:])]
    assert leaks == [], "\n".join(leaks)
