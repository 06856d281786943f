"""Common-subexpression elimination: a node computing what an earlier node computes is
replaced by that node.

Two nodes are the same computation when they have the same op, the same attributes
and the same inputs (the same names, or inline numbers with the same bits, so 0.0
and -0.0 differ).  ``Add`` and ``Mul`` are commutative in IEEE arithmetic (the same
correctly rounded result either way round), so their two inputs are compared as a
set.  Exact: the ops are deterministic functions of their inputs, so the two nodes
hold identical arrays.  Stochastic ops (Dropout) are never merged: two of them
draw two different masks.  One walk in order with a dictionary: linear.
"""

from __future__ import annotations

import json
from typing import Any

from engine.ops import REGISTRY
from engine.transform.passes.stage import Ref, Stage, attrs_of, replace_node, substitute

COMMUTATIVE = frozenset({"Add", "Mul"})


def _key(entry: dict[str, Any]) -> tuple[Any, ...]:
    refs = tuple(r if isinstance(r, str) else ("#", float(r).hex()) for r in entry["inputs"])
    if entry["op"] in COMMUTATIVE:
        refs = tuple(sorted(refs, key=repr))
    return (entry["op"], json.dumps(attrs_of(entry), sort_keys=True), refs)


def eliminate_common_subexpressions(stage: Stage) -> Stage:
    spec = stage.edit()
    nodes = spec["nodes"]
    seen: dict[tuple[Any, ...], str] = {}
    subst: dict[str, Ref] = {}
    matches = []
    for name in list(nodes):
        substitute(spec, name, subst)
        entry = nodes[name]
        if REGISTRY[entry["op"]].stochastic or entry["op"] == "Identity":
            continue
        key = _key(entry)
        first = seen.setdefault(key, name)
        if first != name:
            matches.append(stage.match(name, f"{entry['op']} computes what {first} computes"))
            replace_node(spec, name, first, subst)
    return stage.rebuilt(spec, matches)
