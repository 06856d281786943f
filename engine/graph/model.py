"""The Graph every later stage reads: values, nodes, order and inferred shapes.

It is plain data, apart from the spec stage that builds it (``engine.graph.build``),
so the runtime, the pictures and the checks can import it without the builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from engine.errors import Problem
from engine.graph.shapes import Dim, Dims, Shape, format_shape
from engine.limits import DEFAULT_MAX_BYTES
from engine.ops import OpAttrs, OpDef
from engine.spec.source import Location, SourceMap
from schemas.spec import Spec, TensorDecl

Kind = Literal["input", "parameter", "constant", "node"]
@dataclass(slots=True)
class Value:
    """One named value of the graph, with what is known of it before running (slots: a
    graph makes one per node, and they are made faster and smaller without a dict)."""

    name: str
    kind: Kind
    loc: Location
    shape: Shape = ()
    dtype: str = "float64"
    requires_grad: bool = False
    decl: TensorDecl | None = None
    literal: Any = None
    weak: bool = False
    call: str = ""  # the function call it was inlined from, such as probs or h1/linear
    file: Path | None = None  # init: {file: ...}, resolved and confined (engine.spec.paths)

    @property
    def a_kind(self) -> str:
        """Its kind with its article, for messages: "an input", "a parameter"."""
        return ("an " if self.kind[0] in "aeiou" else "a ") + self.kind


@dataclass(unsafe_hash=True, slots=True)
class Node:
    """One op application: which op, its attributes and the names it reads, in order.

    Nothing changes a node once made (passes make new ones with ``dataclasses.replace``),
    and it compares and hashes by its fields as a frozen dataclass would; it is not
    declared frozen because a graph makes one per node, and a frozen one costs three
    times as much to make (each field set through ``object.__setattr__``).
    """

    name: str
    op: OpDef
    attrs: OpAttrs
    inputs: tuple[str, ...]
    loc: Location


@dataclass(frozen=True)
class ClassTarget:
    """The target of NLL node ``node``: class indices (``one_hot`` False) or one-hot rows,
    over ``classes``, the last axis of the probabilities ``probs``."""

    node: str
    probs: str
    classes: Dim
    one_hot: bool
    ignore_index: int | None = None  # a label NLL skips, allowed outside 0..K-1
    op: str = "NLL"  # or CrossEntropy, whose first input holds logits

    def describe(self, values: dict[str, Value], dims: Dims, classes: int) -> str:
        shape = format_shape(dims.shape(values[self.probs].shape))
        skipped = "" if self.ignore_index is None else f" (or its ignore_index {self.ignore_index})"
        return (f"{self.op} node {self.node!r} ({values[self.node].loc.where()}) takes class "
                f"indices 0..{classes - 1}{skipped}, the {classes} classes of {self.probs!r} "
                f"{shape}")


def value_dag(values: dict[str, Value], nodes: dict[str, Node]) -> nx.DiGraph:
    """Every value a vertex (in ``values``' order), an edge (ref, node) per input of each node."""
    dag = nx.DiGraph()  # built in two calls: networkx's cost is per call, not per edge
    dag.add_nodes_from(values)
    dag.add_edges_from((ref, name) for name, node in nodes.items() for ref in node.inputs)
    return dag


@dataclass(repr=False)
class Graph:
    """What ``engine.load`` returns; the executor compiles it into a plan."""

    spec: Spec
    source: SourceMap
    base_dir: Path
    values: dict[str, Value]
    nodes: dict[str, Node]
    order: list[str]
    dims: Dims
    outputs: list[str]
    loss: str | None
    calls: dict[str, str] = field(default_factory=dict)  # call -> function, as in expand()
    warnings: list[Problem] = field(default_factory=list)
    import_roots: list[Path] = field(default_factory=list)  # resolved --import-path folders
    targets: dict[str, ClassTarget] = field(default_factory=dict)  # NLL targets (graph.targets)
    max_bytes: int = DEFAULT_MAX_BYTES  # the budget it was loaded with, for fed shapes too
    #: nodes of bare numbers only as written, each now the constant it computes (in
    #: ``values``; engine.graph.build), and the numbers written in them, which nothing else
    #: reads: kept so that pictures still draw the node the spec wrote
    folded: dict[str, Node] = field(default_factory=dict)
    folded_numbers: dict[str, Value] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return self.source.file

    @cached_property
    def dag(self) -> nx.DiGraph:
        """The values as a networkx DAG, an edge from each input to the node reading it.

        Built on first use, from ``values`` and ``nodes``: loading, compiling and running
        never need it (they walk ``order`` and the nodes' inputs), and at 100,000 nodes it
        costs a third of a second and 300,000 dicts for the cycle collector to walk.
        """
        return value_dag(self.values, self.nodes)

    def summary(self) -> str:
        """One line: name, node count, loss and its dtype (or the first output's)."""
        head = self.loss if self.loss is not None else next(iter(self.outputs), None)
        dtype = self.values[head].dtype if head is not None else "no outputs"
        loss = f"loss {self.loss!r}" if self.loss is not None else "no loss"
        return f"{self.spec.name!r}: {len(self.nodes)} nodes, {loss}, {dtype}"

    def __repr__(self) -> str:
        return f"<Graph {self.summary()}>"

    def where(self, name: str) -> str:
        """``file:line:col`` of a value's definition (and the calls that inlined it)."""
        return self.values[name].loc.where()

    def grad_tensors(self) -> list[str]:
        """Inputs and parameters that get a gradient, in declaration order."""
        return [v.name for v in self.values.values()
                if v.kind in ("input", "parameter") and v.requires_grad]
