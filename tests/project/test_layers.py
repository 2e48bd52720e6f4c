"""The import layers hold (the contracts in pyproject.toml, checked by import-linter) and no module imports
itself round a circle, TYPE_CHECKING imports included (the module graph built with grimp)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections import deque
from typing import Iterable, Iterator, Mapping

import grimp
import pytest

from helpers import REPO

PACKAGES = ("sollol_core", "sollol_tui")
CONTRACTS = [c["id"] for c in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]]

# Runs import-linter's own command line on pyproject.toml in a fresh interpreter (its graph is built from
# the sources on disk; no cache is written into the tree).
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_every_contract_is_checked() -> None:
    assert set(CONTRACTS) >= {"layers", "sim-apart", "core-without-sim", "core-without-ui"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("contract", CONTRACTS)
def test_import_contract_is_kept(contract: str) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    r = subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", "--contract", contract,
                        str(REPO / "pyproject.toml")], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=110, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"contract {contract!r} is broken:\n{_broken_part(r.stdout)}{r.stderr}"


def _broken_part(report: str) -> str:
    """The violations of import-linter's report (the lines after its "Broken contracts" heading)."""
    at = report.find("Broken contracts")
    return report[at:] if at >= 0 else report


# -------------------------------------------------------------------------------------------------- cycles


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=False, exclude_type_checking_imports=False,
                             cache_dir=None)


def _edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def strongly_connected(edges: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """The strongly connected components of a directed graph (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                yield sorted(component)


def a_cycle(edges: Mapping[str, set[str]], component: Iterable[str]) -> list[str]:
    """One shortest cycle through the first module of a strongly connected component, as a path that ends
    where it starts."""
    members = set(component)
    start = min(members)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges.get(node, ())):
            if child not in members:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def test_cycle_finder_finds_a_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    circles = [c for c in strongly_connected(edges) if len(c) > 1 or c[0] in edges[c[0]]]
    assert sorted(circles) == [["a", "b", "c"], ["e"]]
    assert a_cycle(edges, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert a_cycle(edges, ["e"]) == ["e", "e"]


def _imports_within(graph: grimp.ImportGraph, edges: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """Every import between two modules of a circle, with its line numbers."""
    members = set(component)
    out = []
    for importer in component:
        for imported in sorted(edges[importer] & members):
            lines = sorted({d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)})
            out.append(f"    {importer} -> {imported} (l.{', '.join(map(str, lines))})")
    return out


@pytest.mark.timeout(120)
def test_no_import_cycles() -> None:
    graph = _graph()
    edges = _edges(graph)
    assert "sollol_core.prompt_cache.shadow" in edges and "sollol_tui.app" in edges
    circles = [c for c in strongly_connected(edges) if len(c) > 1 or c[0] in edges[c[0]]]
    report = "\n".join(f"{len(c)} modules in a circle, e.g. {' -> '.join(a_cycle(edges, c))}; their imports:\n"
                       + "\n".join(_imports_within(graph, edges, c)) for c in circles)
    assert not circles, f"import cycles (TYPE_CHECKING imports included):\n{report}"
