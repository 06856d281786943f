"""A graph compiled once into a flat list of steps over integer slots.

The executor's loops then do no name lookups and no graph walks: forward runs
the steps in order, backward runs the steps that lead to a tensor requiring
grad in reverse, and ``needs`` tells each vjp which input gradients to compute.

Everything that can be decided from the graph alone is decided here, once:
which values backward reads (each op declares whether its vjp reads its inputs,
its output, or neither), after which step each other value is dead and can be
freed, and which input gradients may need summing back over broadcast axes
(only where the inferred shapes of input and output differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.graph import Graph
from engine.ops import OpAttrs, OpDef


@dataclass(frozen=True)
class Step:
    """One node: ``slots[output] = op.forward(xp, attrs, *slots[inputs])``.

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
    frees: tuple[int, ...] = ()
    reduces: tuple[bool, ...] = ()

    @property
    def differentiates(self) -> bool:
        """Whether backward runs this step's vjp at all."""
        return any(self.needs)


@dataclass(frozen=True)
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


def compile_plan(graph: Graph) -> Plan:
    """Number the values (sources first, then nodes in order) and build the steps."""
    sources = [name for name, v in graph.values.items() if v.kind != "node"]
    names = (*sources, *graph.order)
    slots = {name: index for index, name in enumerate(names)}
    nodes = [graph.nodes[name] for name in graph.order]
    needs_of = [tuple(graph.values[ref].requires_grad and node.op.is_differentiable(i)
                      for i, ref in enumerate(node.inputs)) for node in nodes]
    reduces_of = [tuple(need and graph.values[ref].shape != graph.values[node.name].shape
                        for ref, need in zip(node.inputs, needs, strict=True))
                  for node, needs in zip(nodes, needs_of, strict=True)]
    kept = {slots[name] for name in graph.outputs if name in graph.nodes}
    if graph.loss is not None:
        kept.add(slots[graph.loss])
    for node, needs, reduces in zip(nodes, needs_of, reduces_of, strict=True):
        if any(needs):  # backward runs this vjp: keep what it reads
            if node.op.vjp_uses_inputs:
                kept.update(slots[ref] for ref in node.inputs)
            if node.op.vjp_uses_output:
                kept.add(slots[node.name])
            # an input whose gradient is summed back to its shape: the shape is read
            kept.update(slots[ref] for ref, r in zip(node.inputs, reduces, strict=True) if r)
    last_use = {slots[node.name]: index for index, node in enumerate(nodes)}
    for index, node in enumerate(nodes):
        for ref in node.inputs:
            last_use[slots[ref]] = index
    frees: list[list[int]] = [[] for _ in nodes]
    for slot, index in last_use.items():
        if slot >= len(sources) and slot not in kept:
            frees[index].append(slot)
    steps = []
    for index, (node, needs, reduces) in enumerate(zip(nodes, needs_of, reduces_of,
                                                       strict=True)):
        steps.append(Step(node.name, node.op, node.attrs,
                          tuple(slots[ref] for ref in node.inputs), slots[node.name], needs,
                          tuple(sorted(frees[index])), reduces))
    return Plan(slots, names, tuple(steps), tuple(graph.grad_tensors()),
                frozenset(slot for slot in kept if slot >= len(sources)), len(sources))
