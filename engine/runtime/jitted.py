"""The jax backend's compiled passes: an executor's forward and backward, traced into jax.jit.

Op by op, JAX dispatches every op (and every vjp) from Python, each a few
microseconds of overhead on arrays that take less to compute; a small graph's
step is then mostly dispatch.  So on the jax backend the executor's own loops
(``Executor._run_forward`` and ``_backward_pass``, the same code that runs on
NumPy, with the ops' plain array-API rules) are traced once into one function
that XLA compiles: forward alone, backward alone, and forward then backward
from the loss (a training step, ``Executor.forward_backward``).  A call then
does no Python work per op.

The sources (inputs, parameters, constants) are the arguments and every value
forward keeps (outputs, the loss, what backward reads) the results, so ``value``,
``loss`` and a later ``backward`` read them as on any backend.  ``jax.jit``
caches one compiled function per set of argument shapes and dtypes: a new batch
size is traced and compiled again (once), the same shapes never are.

What must not be baked into a trace is done on the host, around the call: the
label-range checks (``Executor._bind``, before every call), and the masks of
random ops, drawn with NumPy from (seed, step, node) exactly as op by op and
passed in as arguments (``RunMode.masks``), so each step drops other elements.
An index out of range (Gather, ScatterAdd), which NumPy refuses but a compiled
gather turns into NaN, is checked inside the function beside each indexing step
(``engine.runtime.indexcheck``) and raised after the call as a ``DataError`` naming
the node, as on NumPy.

NumPy arguments (fed arrays, the trainer's parameters) go in as they are: JAX on
the CPU may read them in place, without a copy, while the call runs on after it
returned (JAX dispatches asynchronously), so a caller (an optimizer updating its
parameters in place) writing into one would change the result.  Every call
therefore waits for its results before it returns.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from engine.graph.model import Graph
from engine.graph.shapes import Dims
from engine.ops.stochastic import RunMode, keep_factor, node_key
from engine.runtime.backends import Backend
from engine.runtime.indexcheck import describe, index_error, indices_and_size, out_of_range
from engine.runtime.plan import Plan

Array = Any
#: slot -> value: what forward keeps, the compiled functions' arguments and results
Values = dict[int, Array]
#: Per indexing step, (whether an index is out of range, the first such, the axis size);
#: None for a step without indices
Checks = list[tuple[Array, Array, Array] | None]


#: One instruction of the executor's forward program (``executor.Run``: ``call``, ``block``).
Instruction = Any


class Compiled:
    """One executor's three compiled functions; the executor calls them with its slots.

    It is handed what it traces rather than the executor itself (so the two modules do not
    import each other): the executor's ``plan`` and forward ``program``, the ``graph`` the
    plan runs, its ``mode`` and ``backend``, ``dims()`` (the dims bound by the last feeds),
    and its two loops, ``run_forward(slots, program)`` and ``backward_pass(slots, starts,
    kept)``."""

    def __init__(self, *, plan: Plan, program: list[Instruction], graph: Graph, mode: RunMode,
                 backend: Backend, dims: Callable[[], Dims],
                 run_forward: Callable[[list[Array], list[Instruction]], None],
                 backward_pass: Callable[[list[Array], Values | None, dict[int, str]],
                                         dict[str, Array]]):
        jax = importlib.import_module("jax")
        self._graph, self._mode, self._backend, self._dims = graph, mode, backend, dims
        self._run, self._backward_pass = run_forward, backward_pass
        values = graph.values
        self._sources = plan.sources
        self._slot_count = len(plan.names)
        #: (node key, attrs, inferred shape, dtype) of each random step, whose masks go in
        self._random = [(node_key(step.name), step.attrs, values[step.name].shape,
                         values[step.name].dtype) for step in plan.steps if step.op.stochastic]
        #: The forward program, each indexing step also checking its indices (``_checked``).
        self._program = [self._checked(run) if run.block.steps[-1].op.indexes else run
                         for run in program]
        self._indexing = [run.block.steps[-1] for run in self._program
                          if run.block.steps[-1].op.indexes]
        self._checks: Checks = []  # filled while a forward is traced
        #: How many times a function was traced (and so compiled): once per set of shapes.
        self.traces = 0
        self._forward: Callable[..., tuple[Values, Checks]] = jax.jit(self._forward_traced)
        self._backward: Callable[..., dict[str, Array]] = jax.jit(
            self._backward_traced, static_argnums=(2,))
        self._joint: Callable[..., tuple[Values, dict[str, Array], Checks]] = jax.jit(
            self._joint_traced)
        self._ready: Callable[[Any], Any] = jax.block_until_ready

    # -- what the executor calls -------------------------------------------------------------

    def forward(self, slots: list[Array]) -> None:
        """Forward from the sources in ``slots``; the values it keeps are written there."""
        kept, checks = self._ready(self._forward(tuple(slots[:self._sources]), self._masks()))
        self._raise_out_of_range(checks)
        for slot, value in kept.items():
            slots[slot] = value

    def forward_backward(self, slots: list[Array]) -> dict[str, Array]:
        """``forward``, then backward from the loss, in one call: the gradients."""
        kept, grads, checks = self._ready(self._joint(tuple(slots[:self._sources]),
                                                      self._masks()))
        self._raise_out_of_range(checks)
        for slot, value in kept.items():
            slots[slot] = value
        return grads

    def backward(self, slots: list[Array], starts: Values | None,
                 kept: dict[int, str]) -> dict[str, Array]:
        """Backward over forward's ``slots`` from ``starts`` (None: the loss), with the
        gradients of the ``kept`` nodes (one compiled function per choice of them)."""
        present = {slot: value for slot, value in enumerate(slots) if value is not None}
        return self._ready(self._backward(present, starts, tuple(sorted(kept.items())),
                                          self._masks()))

    def _masks(self) -> Values:
        """Each random node's factor for this pass, drawn on the host (none when it keeps
        every element: then the trace has no mask and the node is the identity)."""
        masks, dims = {}, self._dims()
        for key, attrs, shape, dtype in self._random:
            factor = keep_factor(attrs, dims.shape(shape), self._mode, key)
            if factor is not None:
                masks[key] = self._backend.asarray(factor, dtype)
        return masks

    # -- what jax.jit traces -----------------------------------------------------------------

    def _raise_out_of_range(self, checks: Checks) -> None:
        for step, check in zip(self._indexing, checks, strict=True):
            if check is not None and bool(check[0]):
                _, index, size = check
                raise index_error(describe(step, self._graph), index, int(size),
                                  step.attrs.axis)

    def _checked(self, run: Instruction) -> Instruction:
        """``run`` (an indexing step) also recording ``out_of_range`` of its indices."""
        step, call, xp = run.block.steps[-1], run.call, self._backend.xp

        def checked(*inputs: Array) -> Array:
            indices, size = indices_and_size(step, inputs)
            found = out_of_range(xp, indices, size)
            self._checks.append(None if found is None else (*found, size))
            return call(*inputs)

        return run._replace(call=checked)

    def _run_forward(self, sources: tuple[Array, ...], masks: Values
                     ) -> tuple[list[Array], Checks]:
        slots = [*sources, *(None,) * (self._slot_count - self._sources)]
        self._checks = []
        with _masks_bound(self._mode, masks):
            self._run(slots, self._program)
        checks, self._checks = self._checks, []
        return slots, checks

    def _kept(self, slots: list[Array]) -> Values:
        return {slot: value for slot, value in enumerate(slots)
                if slot >= self._sources and value is not None}

    def _forward_traced(self, sources: tuple[Array, ...], masks: Values
                        ) -> tuple[Values, Checks]:
        self.traces += 1
        slots, checks = self._run_forward(sources, masks)
        return self._kept(slots), checks

    def _backward_traced(self, present: Values, starts: Values | None,
                         kept: tuple[tuple[int, str], ...], masks: Values) -> dict[str, Array]:
        self.traces += 1
        slots: list[Array] = [None] * self._slot_count
        for slot, value in present.items():
            slots[slot] = value
        with _masks_bound(self._mode, masks):
            return self._backward_pass(slots, starts, dict(kept))

    def _joint_traced(self, sources: tuple[Array, ...], masks: Values
                      ) -> tuple[Values, dict[str, Array], Checks]:
        self.traces += 1
        slots, checks = self._run_forward(sources, masks)
        with _masks_bound(self._mode, masks):
            grads = self._backward_pass(slots, None, {})
        return self._kept(slots), grads, checks


@contextmanager
def _masks_bound(mode: RunMode, masks: Values) -> Iterator[None]:
    """While tracing: the random ops read their masks from the arguments (``RunMode.masks``)."""
    mode.masks = masks
    try:
        yield
    finally:
        mode.masks = None
