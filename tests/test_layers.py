"""Imports point one way: ground floor → parts (data, models, losses) → tasks → engine → run tools and
analyses → entry points; no module imports one above it, the parts never import each other, and the
import graph has no cycle. Checked on the source (every ``import``, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import podhl

ROOT = Path(podhl.__file__).resolve().parent
LAYERS = {  # top-level module or package -> layer
    "errors": 0,
    "distributed": 0,
    "checks": 0,
    "pedcc": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "tasks": 2,
    "engine": 3,
    "resolvers": 4,
    "config": 4,
    "runs": 4,
    "analysis": 4,
    "train": 5,
    "bench": 5,
    "evaluate": 5,
}
PARTS = {"data", "models", "losses"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        if "conf" in path.relative_to(ROOT).parts:
            continue
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("podhl")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("podhl") and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer():
    assert {_top(m) for m in _modules() if m != "podhl"} <= set(LAYERS)


def test_imports_never_point_up_and_parts_stay_apart():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        if name == "podhl":
            continue
        mine = _top(name)
        for imported in _imports(path):
            other = _top(imported)
            if other in ("", mine):
                continue
            if (
                LAYERS[other] > LAYERS[mine]
                or (mine in PARTS and other in PARTS)
                or (mine == "runs" and other == "analysis")
            ):
                bad.append(f"{name} imports {imported}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {i for i in _imports(path) if i in modules and i != name} for name, path in modules.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt) :] + [node, nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, stack + [node]):
                return True
        state[node] = 2
        return False

    for node in graph:
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, " -> ".join(cycle)
