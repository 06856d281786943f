"""Common-subexpression elimination: a node computing what an earlier node computes is
replaced by that node.

Two nodes are the same computation when they have the same op, the same attributes
and the same inputs (the same names, or small constants with the same dtype, shape
and bits, so inline numbers 2 and 2 match while 0.0 and -0.0 differ).  ``Add`` and
``Mul`` are commutative in IEEE arithmetic (the same correctly rounded result either
way round), so their two inputs are compared as a set.  Exact: the ops are
deterministic functions of their inputs, so the two nodes hold identical arrays.
Stochastic ops (Dropout) are never merged: two of them draw two different masks.
One walk in order with a dictionary, after a C-level scan that finds whether any two
nodes may compute the same (none: no walk): linear.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import attrgetter
from typing import Any

from engine.ops import REGISTRY
from engine.transform.passes.stage import Rewrite, Stage
from engine.transform.passes.written import op_attrs

COMMUTATIVE = frozenset({"Add", "Mul"})

#: Constants up to this many elements are compared by value; larger ones by name.
_BY_VALUE = 16

_INPUTS = attrgetter("inputs")


def eliminate_common_subexpressions(stage: Stage) -> Stage:
    keys: dict[str, Any] = {}  # small constants stand for their values
    for ref in stage.census.constants:
        literal = stage.literal(ref)
        if literal is not None and literal.size <= _BY_VALUE:
            keys[ref] = ("#", literal.dtype.name, literal.shape, literal.tobytes())
    if not _may_repeat(stage, keys):
        return stage.unchanged()
    rewrite = Rewrite(stage)
    has_attrs: dict[str, bool] = {}
    seen: dict[Any, str] = {}
    for name in stage.graph.order:
        node = rewrite.node(name)
        assert node is not None
        op = node.op.name
        if node.op.stochastic or op == "Identity":
            continue
        refs: Any = tuple(map(keys.get, node.inputs, node.inputs))  # C-level: keys.get(r, r)
        if op in COMMUTATIVE:
            refs = frozenset(refs)  # two inputs either way round ({x}: x twice)
        attrs = has_attrs.get(op)
        if attrs is None:
            attrs = has_attrs[op] = bool(node.op.attrs.model_fields)
        key = (op, repr(op_attrs(node)) if attrs else "", refs)
        first = seen.setdefault(key, name)
        if first != name:
            rewrite.stands_for(name, first, f"{op} computes what {first} computes")
    return rewrite.finish()


def _may_repeat(stage: Stage, keys: dict[str, Any]) -> bool:
    """Whether two nodes might compute the same before any merge (a merge makes the next:
    without a first pair, there is none).  A coarser test than the walk's, in C-level scans:
    the op and the set of inputs, attributes left out, each small constant read as the
    first constant of its value.  True for every pair the walk merges, and sometimes for
    one it does not (``Sub(a, b)``, ``Sub(b, a)``), which then costs the walk."""
    census = stage.census
    same: dict[str, str] = {}  # a constant -> the first one of its value
    first: dict[Any, str] = {}
    for ref, key in keys.items():
        if first.setdefault(key, ref) != ref:
            same[ref] = first[key]
    inputs = list(map(_INPUTS, census.nodes))
    if same:
        inputs = list(map(tuple, map(map, repeat(same.get), inputs, inputs)))
    merged = {op for op, count in census.counts.items()
              if count > 1 and op != "Identity" and not REGISTRY[op].stochastic}
    pairs = list(compress(zip(census.ops, map(frozenset, inputs), strict=True),
                          map(merged.__contains__, census.ops)))
    return len(set(pairs)) < len(pairs)
