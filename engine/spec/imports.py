"""``imports:``: the spec files whose functions a spec calls, found and loaded safely.

A spec names files, never locations on the network: an import resolves to a
file on disk below the importing spec's own folder or below a folder the user
named with ``--import-path``, by the rule every path in a spec follows
(``engine.spec.paths``).  Each file is loaded once
however often it is imported, with a worklist rather than recursion, and an
import cycle is an error that shows the whole cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from engine.cycles import cycle_path, find_cycles
from engine.errors import Problem, Problems, SpecError
from engine.spec.paths import STDLIB, Refused, confine
from engine.spec.source import Location, SourceMap, parse_yaml, read_text
from engine.spec.validation import validate_spec
from schemas.spec import Spec


@dataclass(eq=False)
class Module:
    """One loaded spec file, and the modules its import aliases name."""

    spec: Spec
    source: SourceMap
    data: Any
    folder: Path
    imports: dict[str, Module] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return self.source.file


def load_imports(root: Module, roots: Sequence[Path] = (), root_file: Path | None = None,
                 text_limit: int | None = None) -> list[Module]:
    """Load every file ``root`` imports, directly or not; returns all modules, root first.

    ``roots`` are the resolved ``--import-path`` folders (``engine.spec.paths.folders``).
    ``text_limit`` bounds each file's size (``engine.graph.budget.spec_text_limit``).
    ``root_file`` is the file ``root`` was read from, if any, so that a file that
    imports it back closes a cycle instead of loading it a second time.

    Raises SpecError with every problem: a file that is missing, outside the
    allowed folders, a URL, invalid, or part of an import cycle.
    """
    loaded: dict[Path, Module] = {} if root_file is None else {root_file.resolve(): root}
    modules = [root]
    problems = Problems()
    imports = nx.DiGraph()
    sites: dict[tuple[int, int], Location] = {}  # (importer, imported) -> where it is imported
    stack = [root]
    while stack:
        module = stack.pop()
        for alias, text in module.spec.imports.items():
            site = Location(module.source, ("imports", alias))
            try:
                shown, resolved = confine(text, module.folder, [*roots, STDLIB])
            except Refused as exc:
                problems.append(site.problem(f"import {alias!r}: {exc}"))
                continue
            target = loaded.get(resolved)
            if target is None:
                try:
                    target = _load(shown, resolved, text_limit)
                except SpecError as exc:
                    where = site.where()
                    problems.extend(_imported_by(p, alias, where) for p in exc.problems)
                    continue
                loaded[resolved] = target
                modules.append(target)
                stack.append(target)
            module.imports[alias] = target
            imports.add_edge(id(module), id(target))
            sites[(id(module), id(target))] = site
    problems.extend(_cycles(imports, sites, {id(m): m for m in modules}))
    problems.raise_if_any()
    return modules


def _load(shown: str, resolved: Path, text_limit: int | None) -> Module:
    data, source = parse_yaml(read_text(resolved, text_limit), shown)
    return Module(validate_spec(data, source), source, data, resolved.parent)


def _imported_by(problem: Problem, alias: str, where: str) -> Problem:
    return Problem(problem.file, problem.line, problem.col, problem.path,
                   f"{problem.message} (imported as {alias!r} at {where})")


def _cycles(imports: nx.DiGraph, sites: dict[tuple[int, int], Location],
            modules: dict[int, Module]) -> list[Problem]:
    problems = []
    for cycle in find_cycles(imports, lambda u, _next: modules[u].file):
        site = sites[(cycle[0], cycle[1 % len(cycle)])]
        path = cycle_path([modules[m].file for m in cycle])
        problems.append(site.problem(f"import cycle: {path}; a spec cannot import itself, "
                                     "directly or through the files it imports"))
    return problems
