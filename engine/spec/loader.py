"""Spec files to validated ``Graph`` objects.

The pipeline, each stage a call here and data flowing one way: YAML with
positions (``engine.spec.source``), pydantic (``engine.spec.validation``), the
imported files (``engine.spec.imports``), function calls inlined
(``engine.spec.inline``), the graph (``engine.graph.build``), its memory budget
(``engine.graph.budget``), then its warnings (``engine.graph.lint``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.errors import SpecError
from engine.gcpause import collector_paused
from engine.graph.budget import DEFAULT_MAX_BYTES, check_budget
from engine.graph.build import build_graph
from engine.graph.lint import lint
from engine.graph.model import Graph
from engine.spec.imports import Module, load_imports
from engine.spec.inline import expand
from engine.spec.source import parse_yaml, read_text
from engine.spec.validation import validate_spec


def load(path: str | Path, import_paths: Sequence[str | Path] = (), *, strict: bool = False,
         max_bytes: int = DEFAULT_MAX_BYTES) -> Graph:
    """Load, validate and build the graph of a spec file; raises SpecError with locations.

    Imports resolve below the spec's folder, or below one of ``import_paths``.
    Warnings end up in ``graph.warnings``; ``strict=True`` raises them as errors
    instead.  ``max_bytes`` bounds what the values take at their declared shapes.
    """
    path = Path(path)
    return _build(read_text(path), str(path), path.parent, import_paths, path, strict,
                  max_bytes)


def loads(text: str, file: str = "<string>", base_dir: str | Path = ".",
          import_paths: Sequence[str | Path] = (), *, strict: bool = False,
          max_bytes: int = DEFAULT_MAX_BYTES) -> Graph:
    """Like ``load`` for spec text; ``base_dir`` stands for the spec's folder.

    Relative ``init: {file: ...}`` paths and imports resolve against it.
    """
    return _build(text, file, Path(base_dir), import_paths, None, strict, max_bytes)


def _build(text: str, file: str, base_dir: Path, import_paths: Sequence[str | Path],
           path: Path | None, strict: bool, max_bytes: int) -> Graph:
    with collector_paused():
        data, source = parse_yaml(text, file)
        spec = validate_spec(data, source)
        root = Module(spec, source, data, base_dir)
        modules = load_imports(root, [Path(p) for p in import_paths], path)
        graph = build_graph(spec, source, base_dir, expand(modules))
        over = check_budget(graph, max_bytes)  # before anything is allocated
        if over is not None:
            raise SpecError([over])
        graph.warnings = sorted(set(lint(graph)))
    if strict and graph.warnings:
        raise SpecError(graph.warnings)
    return graph
