"""Index inputs (Gather, ScatterAdd) checked wherever the op itself would not refuse them.

NumPy's ``take`` and ``add.at`` raise on an index out of range, so the NumPy fast
paths need no check.  Everywhere else such an index is a silently different number:
the array-API ScatterAdd is a one-hot product, which drops the update (a gradient
row of zeros); JAX's gather fills in NaN; on Dask both go through unnoticed.  So on
every other path, each step of an op with ``OpDef.indexes`` checks its indices
before it runs and raises a ``DataError`` naming the node: at once on an eager
library (its indices copied to the host, one small transfer), inside the task graph
on Dask (each block of indices checked where it is computed, so nothing is computed
early), and inside the compiled function on ``jax.jit`` (``engine.runtime.jitted``,
which raises after the call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.graph.model import Graph
from engine.ops import OpAttrs
from engine.runtime.plan import Plan, Step

Array = Any


def indices_and_size(step: Step, inputs: Sequence[Array]) -> tuple[Array, int]:
    """The indices ``step`` reads and the size of the axis they index."""
    index, indexed = step.op.indexes  # type: ignore[misc]  # only called where it is set
    data = inputs[indexed]
    return inputs[index], data.shape[step.attrs.axis % data.ndim]


def out_of_range(xp: Any, indices: Array, size: int) -> tuple[Array, Array] | None:
    """(whether an index lies outside ``-size .. size-1``, the first such index) as arrays
    of ``xp`` (traceable by jax.jit), or None when there are no indices."""
    flat = xp.reshape(indices, (-1,))
    if flat.shape[0] == 0:
        return None
    bad = (flat < -size) | (flat >= size)
    return xp.any(bad), flat[xp.argmax(xp.astype(bad, xp.int8))]


def index_error(where: str, index: Any, size: int, axis: int) -> DataError:
    """The error for an index out of range at the node ``where`` describes."""
    return DataError(f"{where} failed in forward: index {int(index)} is out of bounds for "
                     f"axis {axis} with size {size} (indices run from {-size} to {size - 1})")


def describe(step: Step, graph: Graph) -> str:
    return f"node {step.name!r} ({step.op.name}, {graph.where(step.name)})"


def guard_indices(plan: Plan, graph: Graph) -> Plan:
    """The plan with every indexing step checking its indices first; the same plan when it
    has none.  Not for NumPy's fast paths (which refuse such an index themselves) nor for
    jax.jit (which cannot stop inside a trace: ``engine.runtime.jitted`` checks there)."""
    if not any(step.op.indexes for step in plan.steps):
        return plan
    steps = tuple(_guarded(step, graph) if step.op.indexes else step for step in plan.steps)
    return dataclasses.replace(plan, steps=steps)


def _guarded(step: Step, graph: Graph) -> Step:
    inner_forward, inner_vjp, where = step.forward, step.vjp, describe(step, graph)
    position = step.op.indexes[0]  # type: ignore[index]
    axis = step.attrs.axis  # type: ignore[attr-defined]

    def checked(inputs: Sequence[Array], lazy_only: bool) -> Sequence[Array]:
        """``inputs`` with the indices checked: now, or on Dask where they are computed."""
        indices, size = indices_and_size(step, inputs)
        if hasattr(indices, "__dask_graph__"):
            guarded = indices.map_blocks(partial(_check_block, where, size, axis),
                                         dtype=indices.dtype)
            return (*inputs[:position], guarded, *inputs[position + 1:])
        if not lazy_only:
            _check_block(where, size, axis, indices)
        return inputs

    def forward(xp: Any, attrs: OpAttrs, *inputs: Array) -> Array:
        return inner_forward(xp, attrs, *checked(inputs, lazy_only=False))

    def vjp(xp: Any, attrs: OpAttrs, g: Array, out: Array, inputs: Sequence[Array],
            needs: Sequence[bool]) -> tuple[Array | None, ...]:
        # forward checked these indices already, unless they are lazy: then the gradient
        # may be computed without forward's value, and must carry the check itself
        return inner_vjp(xp, attrs, g, out, checked(inputs, lazy_only=True), needs)

    return dataclasses.replace(step, forward=forward, vjp=vjp)


def _check_block(where: str, size: int, axis: int, indices: Array) -> Array:
    """``indices`` (any library's array, or a block of a Dask array) unchanged, or a
    DataError for the first index out of range."""
    host = np.asarray(indices.cpu() if hasattr(indices, "cpu") else indices)
    found = out_of_range(np, host, size)
    if found is not None and found[0]:
        raise index_error(where, found[1], size, axis)
    return indices
