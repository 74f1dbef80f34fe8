"""Dependencies point one way: p2pnode -> protocols -> (training, storage), no loops.

Reads every module of the four packages with ``ast`` (no imports run), including
imports inside functions and under ``TYPE_CHECKING``, and checks the file-level graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("p2pnode", "protocols", "training", "storage", "ledger")
ALLOWED: dict[str, set[str]] = {
    "p2pnode": {"protocols", "training", "storage", "ledger"},
    "protocols": {"training", "storage", "ledger"},
    "training": set(),
    "storage": set(),
    "ledger": set(),
}
"""Which other packages each package may import (``distro_errors`` is open to all)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "pb" not in path.relative_to(REPO).parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, resolved to files (``from a import b`` -> a.b)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    return module.partition(".")[0]


def test_no_import_loops_between_files() -> None:
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_loop() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dependencies_point_one_way() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if package_of(target) != package_of(source)
        and package_of(target) not in ALLOWED[package_of(source)]
    )
    assert upward == []


def test_web3_only_in_ledger() -> None:
    """The EVM client libraries stay in ``ledger/`` (issue 14)."""
    heavy = ("web3", "eth_account", "eth_utils", "eth_abi")
    offenders = []
    for name, path in modules().items():
        if package_of(name) == "ledger":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            roots = []
            if isinstance(node, ast.Import):
                roots = [alias.name.partition(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = [node.module.partition(".")[0]]
            offenders += [f"{name}: {root}" for root in roots if root in heavy]
    assert offenders == []
