"""What the forward and backward pictures of a graph show, independent of any drawing format.

The pictures are described once, here, as boxes and arrows with their roles; the
renderers (``engine/render.py``) only decide how a role looks in DOT or Mermaid.
So the two formats cannot disagree about what the graph is, and tests can check
the description itself.

The backward picture follows the lesson's figure: every edge that carries a
gradient is reversed and labelled ``d(name)``; where a value feeds several
consumers, their gradients meet in a visible sum; the backward pass starts at
the loss with gradient 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.errors import EngineError
from engine.graph.model import Graph, Node, Value
from engine.graph.shapes import format_shape

BoxKind = Literal["input", "parameter", "constant", "node", "sum", "seed"]
ArrowKind = Literal["value", "gradient", "no-gradient"]


FORWARD_LEGEND = ("ellipse: input, 3-D box: parameter, folded note: constant, rounded box: op; "
                  "bold border: output or loss; arrows carry the named value")
BACKWARD_LEGEND = ("red d(name): gradient of the loss with respect to name; +: gradients summed; "
                   "double border: kept for backward; grey dashed: needs no gradient")


@dataclass(frozen=True)
class Box:
    """One box: ``title`` on top, ``lines`` below; ``muted`` greys it out."""

    id: str
    title: str
    lines: tuple[str, ...]
    kind: BoxKind
    muted: bool = False
    kept: bool = False
    output: bool = False
    group: str = ""  # the function call it belongs to ('' for none), such as h1/linear


@dataclass(frozen=True)
class Arrow:
    """One arrow from ``tail`` to ``head``, labelled with what it carries."""

    tail: str
    head: str
    label: str
    kind: ArrowKind = "value"


@dataclass(frozen=True)
class Picture:
    """A whole picture; ``backward`` pictures are laid out right to left, as the pass runs."""

    title: str
    legend: str
    backward: bool
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    groups: dict[str, str] = field(default_factory=dict)  # call -> its label, outer first


def forward_picture(graph: Graph) -> Picture:
    """One box per value, one arrow per use of a value, labelled with the value's name."""
    values = {**graph.values, **graph.folded_numbers}
    boxes = tuple(_box(graph, value) for value in _used_values(graph))
    arrows = tuple(Arrow(ref, node.name, _carried(values[ref]))
                   for node in _drawn_nodes(graph) for ref in node.inputs)
    return Picture(f"{graph.spec.name}: forward", FORWARD_LEGEND, False, boxes, arrows,
                   _groups(graph))


def backward_picture(graph: Graph) -> Picture:
    """The forward edges reversed: red ``d(name)`` where a gradient flows, dotted where none does.

    A value that receives gradients from several consumers gets a sum box ``+``
    (its id is ``+name``) that all of them point into; one arrow leaves it.
    """
    if graph.loss is None:
        raise EngineError(f"{graph.file}: the spec declares no loss, and the backward picture "
                          "starts from it; add 'loss: NODE' or draw the forward picture")
    flows = gradient_edges(graph)
    needing = {graph.loss} | {ref for ref, _, _ in flows}
    kept = set()
    for name in {node for _, node, _ in flows}:
        kept.add(name)
        kept.update(graph.nodes[name].inputs)
    consumers: dict[str, list[str]] = {}
    for ref, node, _ in flows:
        consumers.setdefault(ref, []).append(node)
    boxes = [_box(graph, value, muted=value.name not in needing, kept=value.name in kept)
             for value in _used_values(graph)]
    arrows = [Arrow("d" + graph.loss, graph.loss, f"d({graph.loss})", "gradient")]
    boxes.append(Box("d" + graph.loss, "1", ("start",), "seed"))
    for name, users in consumers.items():
        if len(users) > 1:
            boxes.append(Box("+" + name, "+", (), "sum", group=graph.values[name].call))
            arrows.append(Arrow("+" + name, name, f"d({name})", "gradient"))
    flowing = {(ref, node, index) for ref, node, index in flows}
    for node in (graph.nodes[n] for n in graph.order):
        for index, ref in enumerate(node.inputs):
            if (ref, node.name, index) not in flowing:
                arrows.append(Arrow(node.name, ref, "", "no-gradient"))
            elif len(consumers[ref]) > 1:
                arrows.append(Arrow(node.name, "+" + ref, f"d({ref})", "gradient"))
            else:
                arrows.append(Arrow(node.name, ref, f"d({ref})", "gradient"))
    arrows.extend(Arrow(node.name, ref, "", "no-gradient")  # each is a constant now
                  for node in graph.folded.values() for ref in node.inputs)
    return Picture(f"{graph.spec.name}: backward from {graph.loss}", BACKWARD_LEGEND, True,
                   tuple(boxes), tuple(arrows), _groups(graph))


def _groups(graph: Graph) -> dict[str, str]:
    """Each function call, labelled ``name: function``; a call's parent comes before it."""
    return {call: f"{call.rpartition('/')[2]}: {graph.calls[call]}"
            for call in sorted(graph.calls)}


def gradient_edges(graph: Graph, start: str | None = None) -> list[tuple[str, str, int]]:
    """``(value, node, input index)`` for every use through which backward from ``start`` flows.

    A use carries a gradient when the op is differentiable in that input, the value
    requires grad, and the node itself lies on the way back from ``start`` (the loss).
    A value used twice by one node (``Mul(x, x)``) gives two uses.
    """
    start = graph.loss if start is None else start
    reached = {start}
    edges = []
    for name in reversed(graph.order):
        if name not in reached:
            continue
        node = graph.nodes[name]
        for index, ref in enumerate(node.inputs):
            if graph.values[ref].requires_grad and node.op.is_differentiable(index):
                edges.append((ref, name, index))
                reached.add(ref)
    return edges


def _drawn_nodes(graph: Graph) -> list[Node]:
    """The nodes the spec wrote: those that run, and those of bare numbers only, which the
    graph holds as the constants they compute (``Graph.folded``)."""
    return [*graph.folded.values(), *(graph.nodes[n] for n in graph.order)]


def _used_values(graph: Graph) -> list[Value]:
    """Every node, and every other value that a node uses or the spec outputs (a declared
    tensor nothing touches would float alone)."""
    used = {ref for node in _drawn_nodes(graph) for ref in node.inputs}
    return [v for v in (*graph.values.values(), *graph.folded_numbers.values())
            if v.kind == "node" or v.name in graph.folded or v.name in used
            or v.name in graph.outputs]


def _carried(value: Value) -> str:
    """An edge's label: the value's name, or the number an inline constant holds."""
    if value.kind == "constant" and value.loc.path[-2:-1] == ("inputs",):
        return _number(value)
    return value.name


def _number(value: Value) -> str:
    return f"{value.literal.item():g}" if value.literal.ndim == 0 else format_shape(
        value.literal.shape)


def _box(graph: Graph, value: Value, *, muted: bool = False, kept: bool = False) -> Box:
    return replace(_value_box(graph, value, muted, kept), group=value.call)


def _value_box(graph: Graph, value: Value, muted: bool, kept: bool) -> Box:
    shape = f"{format_shape(value.shape)} {value.dtype}"
    output = value.name in graph.outputs or value.name == graph.loss
    if value.kind == "node" or value.name in graph.folded:
        node = graph.nodes.get(value.name) or graph.folded[value.name]
        attrs = node.attrs.model_dump(exclude_unset=True, exclude={"op", "inputs"})
        written = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                            for k, v in attrs.items())
        lines = (written, value.name, shape) if written else (value.name, shape)
        return Box(value.name, node.op.name, lines, "node", muted, kept, output)
    if value.kind == "constant":
        inline = value.loc.path[-2:-1] == ("inputs",)
        title = _number(value) if inline else value.name
        lines = ("constant",) if inline else (f"constant {_number(value)}", shape)
        return Box(value.name, title, lines, "constant", muted, kept, output)
    grad = ", requires grad" if value.requires_grad and value.kind == "input" else ""
    return Box(value.name, value.name, (value.kind + grad, shape), value.kind, muted, kept, output)
