"""Common-subexpression elimination: a node computing what an earlier node computes is
replaced by that node.

Two nodes are the same computation when they have the same op, the same attributes
and the same inputs (the same names, or small constants with the same dtype, shape
and bits, so inline numbers 2 and 2 match while 0.0 and -0.0 differ).  ``Add`` and
``Mul`` are commutative in IEEE arithmetic (the same correctly rounded result either
way round), so their two inputs are compared as a set.  Exact: the ops are
deterministic functions of their inputs, so the two nodes hold identical arrays.
Stochastic ops (Dropout) are never merged: two of them draw two different masks.
One walk in order with a dictionary: linear.
"""

from __future__ import annotations

from typing import Any

from engine.transform.passes.stage import Rewrite, Stage
from engine.transform.passes.written import op_attrs

COMMUTATIVE = frozenset({"Add", "Mul"})

#: Constants up to this many elements are compared by value; larger ones by name.
_BY_VALUE = 16


def eliminate_common_subexpressions(stage: Stage) -> Stage:
    rewrite = Rewrite(stage)
    keys: dict[str, Any] = {}  # small constants stand for their values
    for ref, value in stage.graph.values.items():
        literal = stage.literal(ref)
        if literal is not None and literal.size <= _BY_VALUE:
            keys[ref] = ("#", value.dtype, literal.shape, literal.tobytes())
    has_attrs: dict[str, bool] = {}
    seen: dict[Any, str] = {}
    for name in stage.graph.order:
        node = rewrite.node(name)
        assert node is not None
        op = node.op.name
        if node.op.stochastic or op == "Identity":
            continue
        refs = tuple(map(keys.get, node.inputs, node.inputs))  # C-level: keys.get(r, r)
        if op in COMMUTATIVE:
            refs = tuple(sorted(refs, key=repr))
        attrs = has_attrs.get(op)
        if attrs is None:
            attrs = has_attrs[op] = bool(node.op.attrs.model_fields)
        key = (op, repr(op_attrs(node)) if attrs else "", refs)
        first = seen.setdefault(key, name)
        if first != name:
            rewrite.stands_for(name, first, f"{op} computes what {first} computes")
    return rewrite.finish()
