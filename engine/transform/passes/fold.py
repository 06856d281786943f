"""Constant folding: a node whose inputs are all constants becomes a constant.

The value is computed now with the op's own forward rule (the NumPy reference the
executor's plain path runs), on the constants in the dtypes they have at that use,
so the folded constant holds exactly the array the node would hold at run time
(up to the rounding of an op's NumPy fast path, where the executor takes one).
It keeps the node's name, so outputs keep their names; written as a spec, its
floats are written by their shortest round-tripping decimal, so it loads back bit
for bit.  Not folded: stochastic ops (Dropout draws at run time), results of a
dtype a constant cannot have (bool), and results larger than ``MAX_ELEMENTS``
(folding a BroadcastTo would write a large array into the spec).  One walk in
order, from the first node that reads constants only: linear.
"""

from __future__ import annotations

from itertools import compress, count, islice
from operator import attrgetter

import numpy as np

from engine.graph.model import Value
from engine.transform.passes.stage import Rewrite, Stage

MAX_ELEMENTS = 1024
_CONSTANT_DTYPES = ("float16", "float32", "float64", "int64")


def fold_constants(stage: Stage) -> Stage:
    graph = stage.graph
    known = {name for name in stage.census.constants if graph.values[name].literal is not None}
    # The first node to fold reads constants only (a later one may read folded nodes too):
    # found with one C-level scan, and the walk starts there; none, nothing folds.
    nodes = stage.census.nodes
    start = next(compress(count(), map(known.issuperset, map(attrgetter("inputs"), nodes))),
                 None)
    if start is None:
        return stage.unchanged()
    rewrite = Rewrite(stage)
    for node in islice(nodes, start, None):
        name = node.name
        if not known.issuperset(node.inputs):
            continue
        value = graph.values[name]
        if node.op.stochastic or value.dtype not in _CONSTANT_DTYPES:
            continue
        arrays = [rewrite.literal(ref) for ref in node.inputs]
        result = np.asarray(node.op.forward(np, node.attrs, *arrays), dtype=value.dtype)
        if result.size > MAX_ELEMENTS:
            continue
        known.add(name)
        rewrite.fold(name, Value(name, "constant", value.loc, result.shape, value.dtype,
                                 literal=result, call=value.call),
                     f"{node.op.name} of constants is the constant {_show(result)}")
    return rewrite.finish()


def _show(array: np.ndarray) -> str:
    return repr(array.item()) if array.ndim == 0 else f"of shape {list(array.shape)}"
