"""A graph compiled once into a flat list of steps over integer slots.

The executor's loops then do no name lookups and no graph walks: forward runs
the steps in order, backward runs the steps that lead to a tensor requiring
grad in reverse, and ``needs`` tells each vjp which input gradients to compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.graph import Graph
from engine.ops import OpAttrs, OpDef


@dataclass(frozen=True)
class Step:
    """One node: ``slots[output] = op.forward(xp, attrs, *slots[inputs])``."""

    name: str
    op: OpDef
    attrs: OpAttrs
    inputs: tuple[int, ...]
    output: int
    needs: tuple[bool, ...]

    @property
    def differentiates(self) -> bool:
        """Whether backward runs this step's vjp at all."""
        return any(self.needs)


@dataclass(frozen=True)
class Plan:
    """Slots for every value, and the steps in topological order."""

    slots: dict[str, int]
    names: tuple[str, ...]
    steps: tuple[Step, ...]
    grad_tensors: tuple[str, ...]


def compile_plan(graph: Graph) -> Plan:
    """Number the values (sources first, then nodes in order) and build the steps."""
    sources = [name for name, v in graph.values.items() if v.kind != "node"]
    names = (*sources, *graph.order)
    slots = {name: index for index, name in enumerate(names)}
    steps = []
    for name in graph.order:
        node = graph.nodes[name]
        needs = tuple(graph.values[ref].requires_grad and node.op.is_differentiable(i)
                      for i, ref in enumerate(node.inputs))
        steps.append(Step(name, node.op, node.attrs, tuple(slots[ref] for ref in node.inputs),
                          slots[name], needs))
    return Plan(slots, names, tuple(steps), tuple(graph.grad_tensors()))
