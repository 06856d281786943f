"""A graph's constants and nodes as spec data, for ``engine optimize -o``.

The graph a pass leaves is in memory; only the end result is written.  Its names are
spec names already (engine grad's spec named them), apart from two kinds of constant
the loader makes and that a spec writes differently: an inline number of a node's
inputs (``loss.inputs[1]``, written back inline) and a bare constant given a second
dtype by a second use (``k.float32``, written as ``k``, which takes its use's dtype
again).  Only constants that some node reads are written.
"""

from __future__ import annotations

from typing import Any

from engine.graph.model import Graph, Node, Value
from engine.transform.grad import _constant, _is_inline


def written_nodes(graph: Graph) -> tuple[dict[str, Any], dict[str, Any]]:
    """(constants, nodes) of ``graph`` as a spec writes them, nodes in order."""
    values = graph.values
    read = {ref for node in graph.nodes.values() for ref in node.inputs} | set(graph.outputs)
    constants: dict[str, Any] = {}
    for name in read:
        value = values[name]
        if value.kind == "constant" and not _is_inline(value):
            base = _base(value, values)
            constants[base.name] = _constant(base)
    nodes: dict[str, Any] = {}
    for name in graph.order:
        node = graph.nodes[name]
        nodes[name] = {"op": node.op.name, "inputs": [_ref(values[r], values)
                                                      for r in node.inputs],
                       **op_attrs(node, defaults=False)}
    return dict(sorted(constants.items())), nodes


def op_attrs(node: Node, *, defaults: bool = True) -> dict[str, Any]:
    """A node's attributes, those of its op's model only (a spec node's record also holds its
    ``op``, ``inputs`` and ``description``); ``defaults=False`` leaves out default values."""
    fields = node.op.attrs.model_fields
    return node.attrs.model_dump(mode="json", include=set(fields), exclude_defaults=not defaults)


def _base(value: Value, values: dict[str, Value]) -> Value:
    """A bare constant's second-dtype copy ``k.float32`` stands for ``k``."""
    base, _, dtype = value.name.rpartition(".")
    if value.weak and base in values and dtype == value.dtype:
        return values[base]
    return value


def _ref(value: Value, values: dict[str, Value]) -> str | float:
    if _is_inline(value):
        return float(value.literal)
    if value.kind == "constant":
        return _base(value, values).name
    return value.name
