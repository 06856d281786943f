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

``schedule`` then turns the steps into the forward program the executor runs
(``Plan.blocks``), and on NumPy plans its memory from the same liveness: an
elementwise step (an op with a ``ufunc``) writes its result into the buffer of a
value that dies at that step, and a chain of elementwise steps whose
intermediate values nothing else reads runs as one block, each writing into the
previous one's buffer, so the intermediates never take memory of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain, compress, count, filterfalse, repeat
from operator import attrgetter, not_
from types import CodeType, FunctionType
from typing import Any

from engine.graph.model import Graph
from engine.ops import OpAttrs, OpDef
from engine.ops.base import Forward, Vjp
from engine.ops.stochastic import RunMode, node_key

_REQUIRES_GRAD = attrgetter("requires_grad")
_INPUTS, _OUTPUT = attrgetter("inputs"), attrgetter("output")
_SHAPE = attrgetter("shape")


@dataclass(slots=True, repr=False, eq=False)
class Step:
    """One node: ``slots[output] = forward(xp, attrs, *slots[inputs])``.

    Not frozen, though nothing assigns to a step after ``compile_plan`` made it (later
    stages make new ones with ``dataclasses.replace``): a plan makes one step per node,
    and a frozen dataclass's ``__init__`` costs five times a plain one's.

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


@dataclass(slots=True, repr=False, eq=False)
class Block:
    """One forward instruction: ``slots[output] = call(*slots[inputs])``, then ``frees`` go.
    Not frozen, for the reason ``Step`` is not.

    ``steps`` are the nodes it computes: one node, or a chain of elementwise nodes
    whose intermediate values only the next node of the chain reads (they never
    reach a slot).  ``writes`` pairs a node with the value whose buffer its result
    is written into (``out=``), for each node that reuses one; the others' results
    are new arrays.
    """

    call: Callable[..., Any]
    inputs: tuple[int, ...]
    output: int
    frees: tuple[int, ...]
    steps: tuple[Step, ...]
    writes: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        into = "".join(f", {node} into {donor}'s buffer" for node, donor in self.writes)
        return f"<Block {' -> '.join(step.name for step in self.steps)}{into}>"


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
    blocks: tuple[Block, ...] = ()

    def reuses(self) -> dict[str, str]:
        """``{node: value}`` for every node whose result is written into the buffer of a
        value that is dead by then (the memory plan; empty when nothing is reused)."""
        return {node: donor for block in self.blocks for node, donor in block.writes}

    def __repr__(self) -> str:
        lowering = "NumPy fast paths" if self.fast else "plain rules"
        return (f"<Plan {len(self.steps)} steps over {len(self.names)} slots, "
                f"{len(self.grad_tensors)} gradients, {lowering}>")


def compile_plan(graph: Graph, *, fast: bool = False) -> Plan:
    """Number the values (sources first, then nodes in order) and build the steps.

    ``fast`` picks each op's NumPy fast paths where it has them (only for NumPy arrays).

    One pass over the nodes in order decides what each step reads and what backward
    keeps; C-level scans find where each value is last used; a second pass builds the
    steps.  What depends only on an op and which of its inputs require grad (``needs``),
    and an op's implementations, are decided once per op and pattern, not per node.
    """
    values, nodes = graph.values, list(map(graph.nodes.__getitem__, graph.order))
    sources = list(filterfalse(graph.nodes.__contains__, values))
    names = (*sources, *graph.order)
    slots = dict(zip(names, count()))
    first = len(sources)  # node i's slot is first + i
    held = list(map(values.__getitem__, names))
    requires = list(map(_REQUIRES_GRAD, held))
    shapes = list(map(_SHAPE, held))
    kept = {slots[name] for name in graph.outputs if name in graph.nodes}
    if graph.loss is not None:
        kept.add(slots[graph.loss])
    slot_of = slots.__getitem__
    reads = [tuple(map(slot_of, node.inputs)) for node in nodes]
    patterns: dict[tuple[str, tuple[bool, ...]], tuple[bool, ...]] = {}
    needs_of, reduces_of = [], []
    for output, node, inputs in zip(count(first), nodes, reads):  # plain: once per node
        op = node.op
        key = (op.name, tuple(map(requires.__getitem__, inputs)))
        needs = patterns.get(key)
        if needs is None:
            needs = patterns[key] = tuple(r and op.is_differentiable(i)
                                          for i, r in enumerate(key[1]))
        needs_of.append(needs)
        if True not in needs:
            reduces_of.append((False,) * len(inputs))
            continue
        # backward runs this vjp: keep what it reads, and sum back a gradient that may
        # come broadcast (the input's shape is read)
        shape = shapes[output]
        reduces = tuple([need and shapes[slot] != shape
                         for need, slot in zip(needs, inputs, strict=True)])
        reduces_of.append(reduces)
        if op.vjp_uses_inputs:
            kept.update(inputs)
        if op.vjp_uses_output:
            kept.add(output)
        if True in reduces:
            kept.update(compress(inputs, reduces))
    # the step after which each value is dead: its last reader's (dict keeps the last)
    last_use = dict(zip(range(first, len(names)), count()))
    last_use.update(zip(chain.from_iterable(reads),
                        chain.from_iterable(map(repeat, count(), map(len, reads))), strict=True))
    frees: list[list[int]] = [[] for _ in nodes]
    for slot, index in last_use.items():
        if slot >= first and slot not in kept:
            frees[index].append(slot)
    lowered: dict[str, tuple[Forward, Vjp]] = {}
    steps = []
    for node, inputs, output, needs, reduces, dead in zip(nodes, reads, count(first), needs_of,
                                                          reduces_of, frees):
        op = node.op
        implementations = lowered.get(op.name) or lowered.setdefault(op.name, op.lowered(fast))
        steps.append(Step(node.name, op, node.attrs, inputs, output, needs, *implementations,
                          tuple(dead) if len(dead) < 2 else tuple(sorted(dead)), reduces))
    return Plan(slots, names, tuple(steps), tuple(graph.grad_tensors()),
                frozenset(slot for slot in kept if slot >= first), first, fast)


def bind_mode(plan: Plan, mode: RunMode) -> Plan:
    """The plan with each stochastic op's forward and vjp bound to ``mode`` and its node's key,
    so the executor's loops call every op alike and random ops still see the run's mode."""
    steps = tuple(
        dataclasses.replace(step, forward=partial(step.forward, mode=mode, key=node_key(step.name)),
                            vjp=partial(step.vjp, mode=mode, key=node_key(step.name)))
        if step.op.stochastic else step
        for step in plan.steps)
    return dataclasses.replace(plan, steps=steps)


def schedule(plan: Plan, graph: Graph, xp: Any, *, reuse: bool, keep_values: bool) -> Plan:
    """The plan with its forward program (``blocks``): one block per step, or, with ``reuse``
    (NumPy, optimized, ops not wrapped for tracing), the memory plan below.

    ``keep_values``: nothing is freed (the plain path and the NaN report read every value).

    The memory plan, from the liveness ``compile_plan`` decided: a step's result may be
    written into the buffer of a value ``v`` when
    - the step is elementwise (its op has a ``ufunc``: the result is computed element by
      element, so writing over an input of the same shape is exact),
    - ``v`` dies at this step: no later step reads it, backward does not (``kept``), it is
      no output, and it is no input, parameter or constant (those are the caller's),
    - ``v``'s memory is its own: an elementwise step made it and only elementwise steps
      read it, so no view of it (a Reshape, a Transpose) is alive elsewhere,
    - ``v`` has the result's inferred shape and dtype, and at least one axis (a 0-d
      result is a NumPy scalar, not a buffer).
    Consecutive elementwise steps, each of whose results only the next one reads, become
    one block: the intermediate values never reach a slot, and each writes into the
    previous one's buffer under the same conditions.  A step whose op passes a residual
    to its vjp (``OpDef.fast_forward_saving``) runs those fast paths (``_saving``).
    """
    if not reuse:
        frees = (lambda step: ()) if keep_values else (lambda step: step.frees)
        return dataclasses.replace(plan, blocks=tuple(
            Block(partial(step.forward, xp, step.attrs), step.inputs, step.output, frees(step),
                  (step,))
            for step in plan.steps))
    steps = tuple(map(_saving, plan.steps))
    plan = dataclasses.replace(plan, steps=steps)
    values, names, kept = graph.values, plan.names, plan.kept
    # an op passing a residual runs its own forward, which keeps it
    elementwise = [step.op.ufunc is not None and step.op.fast_forward_saving is None
                   for step in steps]
    # where each slot is read, found by C-level scans: its first and last reader (a dict
    # keeps the last value given a key), and whether a step that is not elementwise reads it
    reads = list(map(_INPUTS, steps))
    slots = list(chain.from_iterable(reads))
    readers = list(chain.from_iterable(map(repeat, count(), map(len, reads))))
    first_reader = dict(zip(reversed(slots), reversed(readers), strict=True))
    last_reader = dict(zip(slots, readers, strict=True))
    # memory only this value refers to (see the docstring): made and read by elementwise
    # steps only
    owned = set(compress(map(_OUTPUT, steps), elementwise)).difference(
        chain.from_iterable(compress(reads, map(not_, elementwise))))

    def fits(slot: int, step: Step) -> bool:
        have, want = values[names[slot]], values[step.name]
        return len(want.shape) > 0 and have.shape == want.shape and have.dtype == want.dtype

    groups: list[tuple[list[Step], bool]] = []  # steps, and whether they are elementwise
    for index, step, alike in zip(count(), steps, elementwise):
        if alike and groups and groups[-1][1]:
            previous = groups[-1][0][-1].output
            if previous not in kept and first_reader.get(previous) == index and \
                    last_reader[previous] == index:  # read by this step alone
                groups[-1][0].append(step)
                continue
        groups.append(([step], alike))
    return dataclasses.replace(plan, blocks=tuple(
        _block(group, names, owned, fits) if alike
        else Block(partial(group[0].forward, xp, group[0].attrs), group[0].inputs,
                   group[0].output, group[0].frees, (group[0],))
        for group, alike in groups))


def _saving(step: Step) -> Step:
    """``step`` running its op's residual-passing fast paths, when it has them: forward
    keeps the residual in a box of this step's own, which its vjp reads in place of the
    output; the next forward replaces it."""
    op = step.op
    if op.fast_forward_saving is None or op.fast_vjp_saved is None:
        return step
    saving, saved = op.fast_forward_saving, op.fast_vjp_saved
    box: list[Any] = [None]

    def forward(xp: Any, attrs: Any, *inputs: Any) -> Any:
        box[0] = None  # the last pass's residual goes first: never two alive at once
        value, box[0] = saving(xp, attrs, *inputs)
        return value

    def vjp(xp: Any, attrs: Any, g: Any, out: Any, inputs: Any, needs: Any) -> Any:
        return saved(xp, attrs, g, box[0], inputs, needs)

    return dataclasses.replace(step, forward=forward, vjp=vjp)


def _block(chain: list[Step], names: tuple[str, ...], owned: set[int],
           fits: Callable[[int, Step], bool]) -> Block:
    """One block running ``chain`` (elementwise steps, each read only by the next);
    ``owned``: the slots whose memory only their value refers to."""
    inputs: list[int] = []  # the slots the block reads, in order of first use
    pattern = []  # per step: its operands (-1: the previous step's result), its out=
    writes = []
    running = -1  # the slot of the previous step's result, which stays inside (none: -1)
    for step in chain:
        refs = []
        for slot in step.inputs:
            if slot == running:
                refs.append(-1)
            elif slot in inputs:
                refs.append(inputs.index(slot))
            else:
                refs.append(len(inputs))
                inputs.append(slot)
        out: int | None = None
        if running >= 0 and fits(running, step):
            out = -1
            writes.append((step.name, names[running]))
        else:
            for slot in step.inputs:  # the first that may be a donor
                if slot != running and slot in owned and slot in step.frees \
                        and fits(slot, step):
                    out = inputs.index(slot)
                    writes.append((step.name, names[slot]))
                    break
        pattern.append((tuple(refs), out))
        running = step.output
    last = chain[-1]
    if len(chain) == 1:
        frees = last.frees
        if out is None and pattern[0][0] == tuple(range(len(inputs))):
            # the ufunc itself: no Python frame in between
            return Block(last.op.ufunc, last.inputs, last.output, frees, (last,), ())
    else:
        internal = {step.output for step in chain[:-1]}
        frees = tuple(sorted({slot for step in chain for slot in step.frees} - internal))
    call = _block_function(tuple(pattern), len(inputs), tuple([step.op.ufunc for step in chain]))
    return Block(call, tuple(inputs), last.output, frees, tuple(chain), tuple(writes))


@lru_cache(maxsize=1024)
def _block_function(pattern: tuple[tuple[tuple[int, ...], int | None], ...], arity: int,
                    ufuncs: tuple[Any, ...]) -> Callable[..., Any]:
    """A block's function: ``_block_code`` with step k's ufunc bound to ``u{k}``.  It keeps
    no state, so blocks of the same pattern and ufuncs share one (the blocks of a chain of
    100,000 nodes share one or two instead of making 50,000)."""
    return FunctionType(_block_code(pattern, arity),
                        {f"u{k}": ufunc for k, ufunc in enumerate(ufuncs)}, "block")


@lru_cache(maxsize=1024)
def _block_code(pattern: tuple[tuple[tuple[int, ...], int | None], ...], arity: int) -> CodeType:
    """The code of a block's function, one line per step, written once per pattern of
    operands (``a0..``: the block's inputs, ``v``: the previous step's result) and
    ``out=`` targets; step k calls the ufunc bound to ``u{k}``.  Python code, not a loop
    over steps: a 100,000-node chain of blocks shares a handful of these."""
    lines = [f"def block({', '.join(f'a{i}' for i in range(arity))}):"]
    for k, (refs, out) in enumerate(pattern):
        operands = ", ".join("v" if ref < 0 else f"a{ref}" for ref in refs)
        target = "" if out is None else f", out={'v' if out < 0 else f'a{out}'}"
        lines.append(f"    v = u{k}({operands}{target})")
    lines.append("    return v")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<engine block>", "exec"), namespace)  # our own text
    return namespace["block"].__code__
