"""A graph compiled once into a flat list of steps over integer slots.

The executor's loops then do no name lookups and no graph walks: forward runs
the steps in order, backward runs the steps that lead to a tensor requiring
grad in reverse, and ``needs`` tells each vjp which input gradients to compute.

Everything that can be decided from the graph alone is decided here, once:
which values backward reads (each op declares whether its vjp reads its inputs,
its output, or neither), after which step each other value is dead and can be
freed, and which input gradients may need summing back over broadcast axes
(only where the inferred shapes of input and output differ), and which
implementation of each op runs: its plain array-API rules, or, for an optimized
run on NumPy, the NumPy fast paths registered beside them (``OpDef.lowered``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

from engine.graph.model import Graph
from engine.ops import OpAttrs, OpDef
from engine.ops.base import Forward, Vjp
from engine.ops.stochastic import RunMode, node_key


@dataclass(frozen=True, repr=False)
class Step:
    """One node: ``slots[output] = forward(xp, attrs, *slots[inputs])``.

    ``forward`` and ``vjp`` are the implementations of ``op`` chosen at compile time
    (its rules, or its NumPy fast paths).

    ``frees`` are the slots that are dead once this step has run (no later step
    reads them, backward does not, and they are not outputs).  ``reduces[i]`` says
    whether input i's gradient may come in a broadcast shape that must be summed
    back to the input's shape.
    """

    name: str
    op: OpDef
    attrs: OpAttrs
    inputs: tuple[int, ...]
    output: int
    needs: tuple[bool, ...]
    forward: Forward
    vjp: Vjp
    frees: tuple[int, ...] = ()
    reduces: tuple[bool, ...] = ()

    def __repr__(self) -> str:
        return (f"<Step {self.name!r} {self.op.name} inputs={list(self.inputs)} "
                f"output={self.output}>")

    @property
    def differentiates(self) -> bool:
        """Whether backward runs this step's vjp at all."""
        return any(self.needs)


@dataclass(frozen=True, repr=False)
class Plan:
    """Slots for every value, and the steps in topological order.

    ``kept`` are the node slots alive after forward: outputs, the loss, and what
    backward reads.  ``sources`` are the slots of inputs, parameters and constants.
    """

    slots: dict[str, int]
    names: tuple[str, ...]
    steps: tuple[Step, ...]
    grad_tensors: tuple[str, ...]
    kept: frozenset[int] = frozenset()
    sources: int = 0
    fast: bool = False

    def __repr__(self) -> str:
        lowering = "NumPy fast paths" if self.fast else "plain rules"
        return (f"<Plan {len(self.steps)} steps over {len(self.names)} slots, "
                f"{len(self.grad_tensors)} gradients, {lowering}>")


def compile_plan(graph: Graph, *, fast: bool = False) -> Plan:
    """Number the values (sources first, then nodes in order) and build the steps.

    ``fast`` picks each op's NumPy fast paths where it has them (only for NumPy arrays).

    One pass over the nodes in order decides what each step reads, what backward
    keeps and where each value is last used; a second builds the steps.
    """
    values = graph.values
    sources = [name for name, v in values.items() if v.kind != "node"]
    names = (*sources, *graph.order)
    slots = {name: index for index, name in enumerate(names)}
    kept = {slots[name] for name in graph.outputs if name in graph.nodes}
    if graph.loss is not None:
        kept.add(slots[graph.loss])
    last_use: dict[int, int] = {}
    compiled = []
    for index, name in enumerate(graph.order):
        node = graph.nodes[name]
        op, output = node.op, slots[name]
        inputs = tuple(slots[ref] for ref in node.inputs)
        shape = values[name].shape
        needs, reduces = [], []
        for i, ref in enumerate(node.inputs):
            need = values[ref].requires_grad and op.is_differentiable(i)
            needs.append(need)
            # a gradient that may come broadcast is summed back: the input's shape is read
            reduces.append(need and values[ref].shape != shape)
        if any(needs):  # backward runs this vjp: keep what it reads
            if op.vjp_uses_inputs:
                kept.update(inputs)
            if op.vjp_uses_output:
                kept.add(output)
            kept.update(slot for slot, r in zip(inputs, reduces, strict=True) if r)
        last_use[output] = index
        for slot in inputs:
            last_use[slot] = index
        compiled.append((node, inputs, output, tuple(needs), tuple(reduces)))
    frees: list[list[int]] = [[] for _ in compiled]
    for slot, index in last_use.items():
        if slot >= len(sources) and slot not in kept:
            frees[index].append(slot)
    steps = tuple(Step(node.name, node.op, node.attrs, inputs, output, needs,
                       *node.op.lowered(fast), tuple(sorted(dead)), reduces)
                  for (node, inputs, output, needs, reduces), dead in zip(compiled, frees,
                                                                         strict=True))
    return Plan(slots, names, steps, tuple(graph.grad_tensors()),
                frozenset(slot for slot in kept if slot >= len(sources)), len(sources), fast)


def bind_mode(plan: Plan, mode: RunMode) -> Plan:
    """The plan with each stochastic op's forward and vjp bound to ``mode`` and its node's key,
    so the executor's loops call every op alike and random ops still see the run's mode."""
    steps = tuple(
        dataclasses.replace(step, forward=partial(step.forward, mode=mode, key=node_key(step.name)),
                            vjp=partial(step.vjp, mode=mode, key=node_key(step.name)))
        if step.op.stochastic else step
        for step in plan.steps)
    return dataclasses.replace(plan, steps=steps)
