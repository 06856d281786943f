"""What every pass reads and writes: a graph in memory, and how a pass rewrites it.

A ``Stage`` is a ``Graph`` (as ``engine.load`` makes it, or a pass left it) with what
the report needs: where each name comes from in the user's files and what the last
pass did.  A pass works on a ``Rewrite``, a working copy of the node table: it
replaces, adds or removes ``Node`` records and returns ``rewrite.finish()``, the next
stage.  Nothing goes through YAML text: ``finish`` builds the new graph directly,
asking each new or changed node's op for its shape and dtype (the same rules the
loader asks, so there is one source of truth), and checks that a name that survives
keeps the dtype and shape the user's graph inferred for it (what ``engine check``
prints is what runs).  Unchanged nodes keep their records, so a pass that finds
nothing costs at most one walk (a few C-level scans where its census shows that
nothing can match: ``engine.transform.passes.census``) and returns the same graph,
and a pass that changes k nodes costs one walk plus k inferences: linear in the
graph's size.

``keep`` are names whose values must stay computed under their names (the outputs,
the loss, the node a gradient starts from): a pass may compute such a value another
way, but never removes it.  ``origins`` maps a name to where it comes from in the
user's files (``graphs/softmax.yaml:17``; for a gradient node, the forward node whose
derivative it is), so a report can say where a rewrite happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.graph.model import Graph, Node, Value
from engine.graph.shapes import Dims
from engine.graph.targets import class_targets
from engine.ops import REGISTRY
from engine.spec.loader import loads
from engine.transform.grad import spec_text
from engine.transform.passes.census import Census
from engine.transform.passes.written import written_nodes


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
    """A graph between passes, the names the passes must keep, and the last pass's rewrites."""

    graph: Graph
    keep: frozenset[str] = frozenset()
    origins: dict[str, str] = field(default_factory=dict)
    matches: list[Match] = field(default_factory=list)  # of the pass that made this stage
    #: the census of ``graph`` once a pass asked for it (see ``census``)
    _census: Census | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, graph: Graph, keep: Sequence[str] = (),
           origins: dict[str, str] | None = None) -> Stage:
        """The stage of a loaded graph; its outputs and loss are always kept."""
        kept = {*graph.outputs, *([graph.loss] if graph.loss is not None else []), *keep}
        return cls(graph, frozenset(kept), dict(origins or {}))

    @classmethod
    def load(cls, spec: dict[str, Any], base_dir: Path, origins: dict[str, str] | None = None,
             file: str = "<optimized spec>", import_paths: Sequence[Path] = ()) -> Stage:
        """The stage of a spec given as plain data (engine grad's), loaded once."""
        graph = loads(spec_text(spec, []), file=file, base_dir=base_dir,
                      import_paths=list(import_paths))
        return cls.of(graph, origins=origins)

    @property
    def census(self) -> Census:
        """The census of this stage's graph (``engine.transform.passes.census``): kept from
        stage to stage while the graph object is the same, and built anew for any other."""
        census = self._census
        if census is None or census.graph is not self.graph:
            census = self._census = Census(self.graph)
        return census

    def unchanged(self) -> Stage:
        """The next stage of a pass that changed nothing: the same graph (and census)."""
        return replace(self, matches=[])

    @property
    def spec(self) -> dict[str, Any]:
        """The graph's constants and nodes as a spec writes them (``engine optimize -o``)."""
        constants, nodes = written_nodes(self.graph)
        return {"constants": constants, "nodes": nodes}

    def match(self, node: str, what: str) -> Match:
        return Match(node, self.origins.get(node, ""), what)

    def literal(self, name: str) -> np.ndarray | None:
        """A constant's elements in the dtype it has where it is used; None for any other value."""
        value = self.graph.values.get(name)
        if value is None or value.kind != "constant" or value.literal is None:
            return None
        return np.asarray(value.literal, dtype=value.dtype)


class Rewrite:
    """A pass's working copy of a stage's nodes.

    Nodes are replaced, never changed in place (``Node`` is frozen), so ``finish`` tells
    a changed node from an unchanged one by identity.  ``subst`` maps a removed node to
    the value that stands for it; ``node(name)`` applies it to a node's inputs, so a
    pass that walks in order sees every earlier replacement.
    """

    def __init__(self, stage: Stage):
        self.stage = stage
        self.graph = stage.graph
        self.nodes: dict[str, Node] = dict(stage.graph.nodes)
        self.subst: dict[str, str] = {}
        self.constants: dict[str, Value] = {}  # constants a pass made (folding)
        self.dropped: set[str] = set()  # constants a pass removed
        self.matches: list[Match] = []

    # -- reading ---------------------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        """The current node ``name`` (None if it is no node), its inputs substituted."""
        node = self.nodes.get(name)
        if node is not None and self.subst and any(r in self.subst for r in node.inputs):
            node = self.nodes[name] = replace(
                node, inputs=tuple(self.subst.get(r, r) for r in node.inputs))
        return node

    def op_of(self, name: str, op: str) -> Node | None:
        """Node ``name`` if it is one of op ``op``."""
        node = self.node(name)
        return node if node is not None and node.op.name == op else None

    def value(self, name: str) -> Value:
        """What the graph before this pass knows of ``name``: shape, dtype, kind."""
        return self.graph.values[name]

    def literal(self, name: str) -> np.ndarray | None:
        made = self.constants.get(name)
        if made is not None:
            return np.asarray(made.literal, dtype=made.dtype)
        return self.stage.literal(name)

    # -- writing ---------------------------------------------------------------------------

    def note(self, name: str, what: str) -> None:
        self.matches.append(self.stage.match(name, what))

    def put(self, name: str, op: str, inputs: Sequence[str], what: str, **attrs: Any) -> Node:
        """Node ``name`` becomes op ``op`` of ``inputs`` (attributes validated by the op's
        model), at the place and location of the node it replaces."""
        opdef = REGISTRY[op]
        node = Node(name, opdef, opdef.attrs(**attrs), tuple(inputs), self.graph.values[name].loc)
        self.nodes[name] = node
        self.note(name, what)
        return node

    def drop(self, name: str) -> None:
        """Remove node ``name``, which nothing reads any more."""
        del self.nodes[name]

    def stands_for(self, name: str, by: str, what: str) -> None:
        """Node ``name`` is the value ``by`` (``what`` says why): its readers read ``by``.  A
        kept name stays too, as ``Identity(by)`` (an output is reported under its name)."""
        self.note(name, what)
        if name in self.stage.keep:
            node = self.nodes[name]
            self.nodes[name] = Node(name, REGISTRY["Identity"], REGISTRY["Identity"].attrs(),
                                    (by,), node.loc)
        else:
            del self.nodes[name]
        self.subst[name] = by

    def fold(self, name: str, value: Value, what: str) -> None:
        """Node ``name`` becomes the constant ``value`` (of the same name)."""
        del self.nodes[name]
        self.constants[name] = value
        self.note(name, what)

    # -- the next stage --------------------------------------------------------------------

    def finish(self) -> Stage:
        """The stage after this pass: the same graph when nothing changed, else a new graph
        whose new and changed nodes' shapes and dtypes come from their ops' rules."""
        stage, graph = self.stage, self.graph
        if not self.matches and not self.constants and not self.dropped:
            return stage.unchanged()
        values = {name: v for name, v in graph.values.items()
                  if v.kind != "node" and name not in self.dropped}
        values.update(self.constants)
        dims = graph.dims.copy()
        nodes: dict[str, Node] = {}
        for name in graph.order:
            node = self.node(name)
            if node is None:
                continue
            nodes[name] = node
            old = graph.nodes.get(name)
            values[name] = graph.values[name] if node is old else _inferred(node, values, dims,
                                                                           graph.values[name])
        result = replace(graph, values=values, nodes=nodes, order=list(nodes), dims=dims,
                         targets=class_targets(nodes, values), warnings=[])
        return replace(stage, graph=result, matches=self.matches)


def _inferred(node: Node, values: dict[str, Value], dims: Dims, before: Value) -> Value:
    """The value of a new or changed node, by its op's shape and dtype rules.  It has the name
    of a value of the graph before (``before``): a rewrite computes the same value another
    way, so it must have the same dtype and shape; anything else is a bug in a pass."""
    ins = [values[ref] for ref in node.inputs]
    op = node.op
    try:
        shape = op.shape(node.attrs, dims, *[v.shape for v in ins])
        dtype = op.result_dtype(node.attrs, [v.dtype for v in ins])
    except ValueError as exc:
        raise EngineError(f"an optimization pass made node {node.name!r} ({op.name}) of inputs "
                          f"it cannot take: {exc} (a bug in the pass)") from None
    resolved, want = dims.shape(shape), dims.shape(before.shape)
    if dtype != before.dtype or len(resolved) != len(want) or any(
            isinstance(a, int) and isinstance(b, int) and a != b
            for a, b in zip(resolved, want, strict=True)):
        raise EngineError(f"an optimization pass rewrote node {node.name!r} as {op.name}, which "
                          f"gives {list(resolved)} {dtype} where the graph has {list(want)} "
                          f"{before.dtype} (a bug in the pass)")
    requires_grad = any(values[ref].requires_grad and op.is_differentiable(i)
                        for i, ref in enumerate(node.inputs))
    if before.kind == "node" and requires_grad == before.requires_grad:
        return before
    return replace(before, kind="node", requires_grad=requires_grad, literal=None, weak=False)
