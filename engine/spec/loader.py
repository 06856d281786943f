"""Spec files to validated ``Graph`` objects.

The pipeline, each stage a call here and data flowing one way: YAML with
positions (``engine.spec.source``), pydantic (``engine.spec.validation``), the
imported files (``engine.spec.imports``), function calls inlined
(``engine.spec.inline``), the graph (``engine.graph.build``), its memory budget
(``engine.graph.budget``), then its warnings (``engine.graph.lint``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.errors import ArgumentError, Problem, SpecError
from engine.gcpause import collector_paused
from engine.graph.budget import check_budget
from engine.graph.build import build_graph
from engine.graph.lint import lint
from engine.graph.model import Graph
from engine.limits import DEFAULT_MAX_BYTES, spec_text_limit
from engine.spec.imports import Module, load_imports
from engine.spec.inline import expand
from engine.spec.paths import folders
from engine.spec.source import parse_yaml, read_text
from engine.spec.validation import validate_spec


def load(path: str | Path, import_paths: Sequence[str | Path] = (), *, strict: bool = False,
         max_bytes: int = DEFAULT_MAX_BYTES) -> Graph:
    """Load, validate and build the graph of a spec file; raises SpecError with locations.

    Imports, init files and training data resolve below the spec's folder, or below one
    of ``import_paths`` (a list of folders; a single string is refused).
    Warnings end up in ``graph.warnings``; ``strict=True`` raises them as errors
    instead.  ``max_bytes`` bounds what the values take at their declared shapes, the
    spec file's size (a 128th of it) and, later, fed arrays and data files.
    """
    if not isinstance(path, str | os.PathLike):
        raise ArgumentError(f"load() takes the path of a spec file, found "
                            f"{type(path).__name__}; for spec text use engine.loads")
    _check_max_bytes(max_bytes)
    path = Path(path)
    roots = folders(import_paths)  # before reading: a string here is refused
    return _build(read_text(path, spec_text_limit(max_bytes)), str(path), path.parent, roots,
                  path, strict, max_bytes)


def loads(text: str, file: str = "<string>", base_dir: str | Path = ".",
          import_paths: Sequence[str | Path] = (), *, strict: bool = False,
          max_bytes: int = DEFAULT_MAX_BYTES) -> Graph:
    """Like ``load`` for spec text; ``base_dir`` stands for the spec's folder.

    Relative ``init: {file: ...}`` paths and imports resolve against it.
    """
    if not isinstance(text, str):
        raise ArgumentError(f"loads() takes spec text (a str), found {type(text).__name__}"
                            + ("; decode bytes first" if isinstance(text, bytes) else ""))
    _check_max_bytes(max_bytes)
    roots = folders(import_paths)
    if len(text) > spec_text_limit(max_bytes):
        raise SpecError([Problem(file, 1, 1, "", f"the spec text is larger than "
                                 f"{spec_text_limit(max_bytes):,} characters, the most that "
                                 "max_bytes allows (parsing YAML takes about 100 times the "
                                 "text's size)")])
    return _build(text, file, Path(base_dir), roots, None, strict, max_bytes)


def _check_max_bytes(max_bytes: object) -> None:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ArgumentError(f"max_bytes is a whole number of bytes >= 0, found {max_bytes!r}")


def _build(text: str, file: str, base_dir: Path, roots: list[Path], path: Path | None,
           strict: bool, max_bytes: int) -> Graph:
    with collector_paused():
        data, source = parse_yaml(text, file)
        spec = validate_spec(data, source)
        root = Module(spec, source, data, base_dir)
        modules = load_imports(root, roots, path, spec_text_limit(max_bytes))
        graph = build_graph(spec, source, base_dir, expand(modules), max_bytes=max_bytes,
                            import_roots=roots)
        over = check_budget(graph, max_bytes)  # before anything is allocated
        if over is not None:
            raise SpecError([over])
        graph.warnings = sorted(set(lint(graph)))
    if strict and graph.warnings:
        raise SpecError(graph.warnings)
    return graph
