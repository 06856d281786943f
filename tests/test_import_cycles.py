"""No import cycles among the modules of ``engine/`` and ``schemas/``.

Every import counts: at the top, under ``TYPE_CHECKING`` and inside functions.
A cycle hidden in a function body or a type-only import still ties two modules
into one unit that cannot be read, tested or replaced apart; data flows one way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from conftest import ROOT

PACKAGES = ("engine", "schemas")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, source: str, known: set[str], is_package: bool = False) -> set[str]:
    """The project modules that module ``name`` imports, anywhere in its ``source``."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # from a.b import c: the module a.b.c where c is one, else a.b itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> nx.DiGraph:
    mods = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(mods)
    for name, path in mods.items():
        targets = imported(name, path.read_text(), set(mods), path.name == "__init__.py")
        graph.add_edges_from((name, target) for target in targets)
    return graph


def test_the_scan_sees_every_kind_of_import() -> None:
    """The scan is only as good as what it reads: type-only, function-body and relative
    imports all count, and a cycle among them is found."""
    known = {"p", "p.a", "p.b", "p.c", "p.d"}
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from p.b import Thing
def late():
    import p.c
    from . import d
"""
    assert imported("p.a", source, known) == {"p.b", "p.c", "p.d"}
    graph = nx.DiGraph([("p.a", "p.b"), ("p.b", "p.a")])
    assert list(nx.simple_cycles(graph))
    assert import_graph().number_of_edges() > 100


def test_no_import_cycles_among_engine_and_schemas_modules() -> None:
    cycles = sorted(nx.simple_cycles(import_graph()), key=len)
    listed = "\n".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles[:10])
    assert not cycles, f"{len(cycles)} import cycles, the shortest first:\n{listed}"


def test_schemas_import_nothing_from_the_engine() -> None:
    graph = import_graph()
    assert not [edge for edge in graph.edges
                if edge[0].startswith("schemas") and edge[1].startswith("engine")]


@pytest.mark.parametrize("first", ["schemas.spec", "engine"])
def test_schemas_and_engine_import_in_either_order(first: str) -> None:
    second = "engine" if first == "schemas.spec" else "schemas.spec"
    code = f"import {first}, {second}, engine.spec.models; engine.Executor"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_engine_package_exports_eagerly() -> None:
    """No PEP 562 ``__getattr__`` hiding a cycle: the public names are plain imports."""
    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert not functions & {"__getattr__", "__dir__"}
    import engine

    assert all(name in vars(engine) for name in engine.__all__)


def test_the_runtime_depends_on_no_training_module() -> None:
    """Running a graph needs no optimizer, data loader or training loop: what both read
    (trained parameters from a checkpoint) lives below both, in ``engine.io``."""
    graph = import_graph()
    assert not [edge for edge in graph.edges
                if edge[0].startswith("engine.runtime") and edge[1].startswith("engine.train")]
