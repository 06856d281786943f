"""What every pass reads and writes: a spec as plain data, with its loaded, checked graph.

``engine.grad`` builds its result as a spec (plain data) and loads it with the normal
loader; the passes keep that design.  A ``Stage`` is such a spec together with the
``Graph`` the loader made of it, which gives every pass the shapes, dtypes and
literal values it needs to decide, and means each pass's output is checked by the
same loader as a hand-written spec.  Passes edit a copy of ``spec`` (its ``nodes``
and ``constants``) and return ``stage.rebuilt(...)``.

``origins`` maps a name of the spec to where it comes from in the user's files
(``graphs/softmax.yaml:17``; for a gradient node, the forward node whose derivative
it is), so a report can say where a rewrite happened.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.graph.model import Graph, Value
from engine.spec.loader import loads
from engine.transform.grad import spec_text

Ref = str | float  # a name, or an inline number of a node's inputs


@dataclass(frozen=True)
class Match:
    """One rewrite: the node it changed, where that node comes from, and what was done."""

    node: str
    origin: str
    what: str

    def line(self) -> str:
        return f"{self.node} ({self.origin or 'made by a pass'}): {self.what}"


@dataclass
class Stage:
    """A spec (plain data, as ``grad_spec`` writes it) and the graph loaded from it."""

    spec: dict[str, Any]
    graph: Graph
    origins: dict[str, str] = field(default_factory=dict)
    matches: list[Match] = field(default_factory=list)  # of the pass that made this stage

    @classmethod
    def load(cls, spec: dict[str, Any], base_dir: Path, origins: dict[str, str] | None = None,
             file: str = "<optimized spec>", import_paths: Sequence[Path] = ()) -> Stage:
        graph = loads(spec_text(spec, []), file=file, base_dir=base_dir,
                      import_paths=list(import_paths))
        return cls(spec, graph, dict(origins or {}))

    def edit(self) -> dict[str, Any]:
        """A copy of the spec for a pass to change (nodes and constants copied deeply)."""
        spec = dict(self.spec)
        spec["nodes"] = copy.deepcopy(self.spec["nodes"])
        spec["constants"] = dict(self.spec.get("constants", {}))
        spec["outputs"] = list(self.spec["outputs"])
        return spec

    def rebuilt(self, spec: dict[str, Any], matches: list[Match]) -> Stage:
        """The stage of ``spec`` as a pass left it: reloaded (and so checked) if it changed."""
        if not spec.get("constants"):
            spec.pop("constants", None)
        if not matches and spec == self.spec:
            return replace(self, matches=[])
        stage = Stage.load(spec, self.graph.base_dir, self.origins, self.graph.file,
                           self.graph.import_roots)
        stage.matches = matches
        return stage

    def match(self, node: str, what: str) -> Match:
        return Match(node, self.origins.get(node, ""), what)

    # -- reading the graph -----------------------------------------------------------------

    def node_inputs(self, name: str) -> Iterator[tuple[Ref, Value]]:
        """A node's inputs as the spec writes them, each with the value the graph made of it
        (an inline number becomes a constant value; a bare constant, one per dtype)."""
        written = self.spec["nodes"][name]["inputs"]
        return zip(written, (self.graph.values[r] for r in self.graph.nodes[name].inputs),
                   strict=True)

    def literal(self, value: Value) -> np.ndarray | None:
        """A constant's elements in the dtype it has where it is used; None for any other value."""
        if value.kind != "constant" or value.literal is None:
            return None
        return np.asarray(value.literal, dtype=value.dtype)


def attrs_of(entry: dict[str, Any]) -> dict[str, Any]:
    """A node entry's attributes: everything but ``op`` and ``inputs``."""
    return {k: v for k, v in entry.items() if k not in ("op", "inputs")}


def substitute(spec: dict[str, Any], name: str, subst: dict[str, Ref]) -> None:
    """Node ``name`` reads what ``subst`` maps its inputs to (a pass walks in order, so each
    replacement is already final when a later node reads it)."""
    entry = spec["nodes"][name]
    entry["inputs"] = [subst.get(r, r) if isinstance(r, str) else r for r in entry["inputs"]]


def replace_node(spec: dict[str, Any], name: str, by: str, subst: dict[str, Ref]) -> None:
    """Node ``name`` is the value ``by``: its readers read ``by``.  An output keeps its name
    (``engine run`` reports it), as ``Identity(by)``."""
    if name in spec["outputs"]:
        spec["nodes"][name] = {"op": "Identity", "inputs": [by]}
    else:
        del spec["nodes"][name]
    subst[name] = by

