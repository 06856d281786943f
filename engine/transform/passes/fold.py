"""Constant folding: a node whose inputs are all constants becomes a constant.

The value is computed now with the op's own forward rule (the NumPy reference the
executor's plain path runs), on the constants in the dtypes they have at that use,
so the folded constant holds exactly the array the node would hold at run time
(up to the rounding of an op's NumPy fast path, where the executor takes one).
It is written as ``{value: ..., dtype: ...}`` with the node's name, so outputs
keep their names; floats are written by their shortest round-tripping decimal,
so the constant loads back bit for bit.  Not folded: stochastic ops (Dropout
draws at run time), results of a dtype a constant cannot have (bool), and results
larger than ``MAX_ELEMENTS`` (folding a BroadcastTo would write a large array
into the spec).  One walk in order: linear.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.graph.model import Value
from engine.transform.passes.stage import Stage

MAX_ELEMENTS = 1024
_CONSTANT_DTYPES = ("float16", "float32", "float64", "int64")


def fold_constants(stage: Stage) -> Stage:
    spec = stage.edit()
    nodes, constants = spec["nodes"], spec["constants"]
    graph = stage.graph
    folded: dict[str, np.ndarray] = {}
    matches = []
    for name in list(nodes):
        node = graph.nodes[name]
        if node.op.stochastic or graph.values[name].dtype not in _CONSTANT_DTYPES:
            continue
        arrays = [folded[v.name] if v.name in folded else stage.literal(v)
                  for _, v in stage.node_inputs(name)]
        if any(a is None for a in arrays):
            continue
        result = np.asarray(node.op.forward(np, node.attrs, *arrays),
                            dtype=graph.values[name].dtype)
        if result.size > MAX_ELEMENTS:
            continue
        folded[name] = result
        del nodes[name]
        constants[name] = _entry(result, graph.values[name])
        matches.append(stage.match(name, f"{node.op.name} of constants is the constant "
                                         f"{_show(result)}"))
    return stage.rebuilt(spec, matches)


def _entry(array: np.ndarray, value: Value) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": array.tolist(), "dtype": value.dtype}
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        entry["allow_nonfinite"] = True
    return entry


def _show(array: np.ndarray) -> str:
    return repr(array.item()) if array.ndim == 0 else f"of shape {list(array.shape)}"
