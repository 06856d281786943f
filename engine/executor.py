"""Runs a compiled plan: forward in order, then backward in reverse, micrograd-simple.

Forward is a flat loop writing each node's value into its slot; each node runs
once however many consumers it has.  Backward seeds the loss with 1, walks the
steps in reverse, asks each vjp only for the gradients that are needed, sums a
gradient back to the shape of a broadcast input, and adds the gradients of a
value that feeds several nodes.  There is no recursion, so 100,000-node graphs
run.  Arrays the user passes in are never written to: only gradient buffers
the executor created itself are updated in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from engine.errors import DataError, EngineError, did_you_mean
from engine.feeds import bind_feeds, initial_value
from engine.graph import Graph
from engine.instrument import Trace, instrument
from engine.plan import Plan, Step, compile_plan
from engine.shapes import ShapeError, format_shape, sum_to

Array = Any


class Executor:
    """Compiles a graph once; ``forward(feeds)`` then ``backward()`` as often as needed.

    ``xp`` is the array namespace to run on (NumPy by default; any namespace of
    the Python array API standard, such as ``array_api_strict``, works).
    ``seed`` overrides the spec's seed for default values of inputs and parameters.
    ``check_finite`` raises ``NonFiniteError`` at the first node whose value or gradient
    holds NaN or inf; ``trace`` fills ``self.trace`` with per-node statistics and timings.
    """

    def __init__(self, graph: Graph, *, xp: ModuleType | None = None, seed: int | None = None,
                 check_finite: bool = False, trace: bool = False):
        self.graph = graph
        self.trace: Trace | None = Trace(graph) if trace else None
        self.plan: Plan = instrument(compile_plan(graph), graph, trace=self.trace,
                                     check_finite=check_finite)
        self.xp = np if xp is None else xp
        self.seed = graph.spec.seed if seed is None else seed
        self._slots: list[Array] = [None] * len(self.plan.names)
        self._defaults: dict[tuple[str, tuple[Any, ...]], Array] = {}
        self._ran_forward = False
        dims = graph.dims
        self.parameters: dict[str, Array] = {
            name: self._array(initial_value(graph, v, dims, self.seed), v.dtype)
            for name, v in graph.values.items() if v.kind == "parameter"
        }
        for name, v in graph.values.items():
            if v.kind == "constant":
                self._slots[self.plan.slots[name]] = self._array(v.literal, v.dtype)

    def _array(self, array: np.ndarray, dtype: str) -> Array:
        if self.xp is np:
            return np.asarray(array, dtype=dtype)
        return self.xp.asarray(np.asarray(array, dtype=dtype), dtype=getattr(self.xp, dtype))

    # -- forward ---------------------------------------------------------------------------

    def forward(self, feeds: Mapping[str, Any] | None = None) -> dict[str, Array]:
        """Run every node once; returns ``{output name: value}``. Missing inputs use their init."""
        fed, dims = bind_feeds(self.graph, feeds or {})
        slots, plan = self._slots, self.plan
        for name, v in self.graph.values.items():
            if v.kind == "input":
                if name in fed:
                    slots[plan.slots[name]] = self._array(fed[name], v.dtype)
                else:
                    slots[plan.slots[name]] = self._default(name, dims)
            elif v.kind == "parameter":
                slots[plan.slots[name]] = self.parameters[name]
        xp = self.xp
        step: Step | None = None
        try:
            for step in plan.steps:
                slots[step.output] = step.op.forward(
                    xp, step.attrs, *[slots[i] for i in step.inputs])
        except (ValueError, TypeError, IndexError) as exc:
            assert step is not None
            raise self._step_error(step, "forward", exc) from exc
        self._ran_forward = True
        return {name: slots[plan.slots[name]] for name in self.graph.outputs}

    def _default(self, name: str, dims: Any) -> Array:
        value = self.graph.values[name]
        key = (name, dims.shape(value.shape))
        if key not in self._defaults:
            self._defaults[key] = self._array(initial_value(self.graph, value, dims, self.seed),
                                              value.dtype)
        return self._defaults[key]

    def value(self, name: str) -> Array:
        """The value of any named value from the last forward pass."""
        if name not in self.plan.slots:
            raise KeyError(name)
        return self._slots[self.plan.slots[name]]

    @property
    def loss(self) -> float | None:
        """The loss of the last forward pass, or None when the spec declares no loss."""
        if self.graph.loss is None or not self._ran_forward:
            return None
        return float(self.value(self.graph.loss))

    # -- backward --------------------------------------------------------------------------

    def backward(self, seed: Mapping[str, Any] | None = None, *,
                 keep: Iterable[str] = ()) -> dict[str, Array]:
        """Gradients ``{tensor: d loss / d tensor}`` for every input and parameter requiring grad.

        Without ``seed`` backward starts at the spec's loss with gradient 1; with
        ``{node: upstream}`` it starts from those nodes with those gradients.  ``keep``
        names nodes whose gradients are returned too (they are freed otherwise), which
        is how the lesson's intermediate gradients, such as the one on ``raised``, are seen.
        """
        if not self._ran_forward:
            raise EngineError("backward() needs a forward() first: it uses the forward values")
        xp, plan, slots = self.xp, self.plan, self._slots
        grads: list[Array] = [None] * len(plan.names)
        owned = [False] * len(plan.names)
        kept = {self._node_slot(name): name for name in keep}
        result: dict[str, Array] = {}
        for slot, upstream in self._seeds(seed).items():
            grads[slot] = upstream
        step: Step | None = None
        try:
            for step in reversed(plan.steps):
                g = grads[step.output]
                if g is None or not step.differentiates:
                    continue
                if step.output in kept:
                    result[kept[step.output]] = g
                grads[step.output] = None  # consumed: free it
                inputs = [slots[i] for i in step.inputs]
                parts = step.op.vjp(xp, step.attrs, g, slots[step.output], inputs, step.needs)
                for slot, x, part, need in zip(step.inputs, inputs, parts, step.needs,
                                               strict=True):
                    if not need or part is None:
                        continue
                    if part.shape != x.shape:
                        part = self._sum_to(step, part, tuple(x.shape))
                    if grads[slot] is None:
                        grads[slot] = part
                    elif owned[slot]:
                        grads[slot] += part
                    else:  # never write into an array we did not create
                        grads[slot] = grads[slot] + part
                        owned[slot] = True
        except (ValueError, TypeError, IndexError) as exc:
            assert step is not None
            raise self._step_error(step, "backward", exc) from exc
        for name in plan.grad_tensors:
            slot = plan.slots[name]
            g = grads[slot]
            result[name] = xp.zeros_like(slots[slot]) if g is None else g
        return result

    def _seeds(self, seed: Mapping[str, Any] | None) -> dict[int, Array]:
        graph, plan, xp = self.graph, self.plan, self.xp
        if seed is None:
            if graph.loss is None:
                raise EngineError("the spec declares no loss: pass backward({node: upstream}) "
                                  "to say where backward starts")
            slot = plan.slots[graph.loss]
            return {slot: xp.ones_like(self._slots[slot])}
        seeds = {}
        for name, upstream in seed.items():
            slot = self._node_slot(name)
            value = self._slots[slot]
            if isinstance(upstream, (np.ndarray, list, float, int)):
                upstream = self._array(np.asarray(upstream), graph.values[name].dtype)
            if tuple(upstream.shape) != tuple(value.shape):
                raise DataError(f"upstream gradient for {name!r} has shape "
                                f"{format_shape(upstream.shape)}, but {name!r} has shape "
                                f"{format_shape(value.shape)}")
            seeds[slot] = upstream
        return seeds

    def _node_slot(self, name: str) -> int:
        if name not in self.graph.nodes:
            raise DataError(f"{name!r} is not a node{did_you_mean(name, self.graph.nodes)}")
        return self.plan.slots[name]

    def _sum_to(self, step: Step, grad: Array, shape: tuple[int, ...]) -> Array:
        try:
            return sum_to(self.xp, grad, shape)
        except ShapeError as exc:  # a vjp bug, not a user error: say which op
            raise EngineError(f"node {step.name!r} ({step.op.name}): its vjp is wrong: "
                              f"{exc}") from None

    def _step_error(self, step: Step, phase: str, exc: Exception) -> DataError:
        shapes = ", ".join(
            f"{self.plan.names[i]}: {format_shape(getattr(self._slots[i], 'shape', ()))}"
            for i in step.inputs)
        node = self.graph.nodes[step.name]
        return DataError(f"node {step.name!r} ({step.op.name}, {self.graph.where(node.name)}) "
                         f"failed in {phase} with inputs {shapes}: {exc}")
