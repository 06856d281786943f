"""Located warnings: what a spec may legally say but probably does not mean.

A node whose value nobody reads, an input nothing uses, a parameter the loss's
gradient never reaches, a ``requires_grad`` that changes nothing, and float16's
narrow range.  They are warnings rather than errors because a spec under
construction often has them; ``--strict`` (or ``engine.load(..., strict=True)``)
turns them into errors for CI.
"""

from __future__ import annotations

import numpy as np

from engine.errors import Problem, did_you_mean
from engine.graph.model import Graph, Node, Value
from engine.graph.targets import first_soft_row, row_name

FLOAT16_WARNING = (
    "float16 holds magnitudes up to 65504 only (np.finfo('float16').max, the lesson's limit): "
    "Exp overflows to inf for inputs above 11.09 and sums of many values overflow; use float32 "
    "unless memory demands float16")


def lint(graph: Graph) -> list[Problem]:
    """Every warning about a graph that built without errors."""
    # what backward from the loss reaches, walked once: every value in it is read by a
    # node on the way to the loss, which spares most graphs the walks that find the rest
    reached = None if graph.loss is None else gradient_reach(graph, graph.loss)
    # the checks of tensors and constants, and of NLL nodes, loop over those only: a few in
    # most graphs, where values and nodes may be 100,000
    sources = [value for value in graph.values.values() if value.kind != "node"]
    nll = [(name, node) for name, node in graph.nodes.items() if node.op.name == "NLL"]
    return [*_unreached_nodes(graph, reached), *_unused_sources(graph, sources, reached),
            *_gradients(graph, sources, reached),
            *_float16(sources), *_unused_dims(graph, sources), *_soft_one_hot(graph),
            *_nll_of_non_probabilities(graph, nll), *_nll_weights(graph, nll)]


def _soft_one_hot(graph: Graph) -> list[Problem]:
    """A one-hot target written in the spec whose rows are not one-hot: legal (a soft
    target), but more often a mistake than label smoothing."""
    warnings = []
    for name, target in graph.targets.items():
        value = graph.values[name]
        init = value.decl.init if value.decl is not None else None
        literal, loc = None, value.loc
        if init is not None and init.form == "value":
            literal, loc = init.value, value.loc.at("init", "value")
        elif value.kind == "constant":
            literal, loc = value.literal, value.loc.at("value")
        soft = None if literal is None or not target.one_hot else \
            first_soft_row(np.asarray(literal, dtype=np.float64))
        if soft is not None:
            index, row = soft
            warnings.append(loc.at(*index).problem(
                f"{row_name(index)} of {name!r} is {np.array2string(row, threshold=8)}, not "
                f"one-hot (a single 1, zeros elsewhere): NLL node {target.node!r} takes it as "
                "a soft target, -sum(y * log p); if labels were meant, write one-hot rows"))
    return warnings


def _unreached_nodes(graph: Graph, reached: set[str] | None) -> list[Problem]:
    source = graph.source
    ends = set(graph.outputs) | ({graph.loss} if graph.loss else set())
    if not ends:
        if not graph.nodes:
            return []
        return [source.problem((), "the spec declares no outputs and no loss, so nothing it "
                                   "computes is reported; list values under outputs:")]
    if reached is not None and reached.issuperset(graph.nodes):
        return []  # every node is on the way to the loss
    used = _upstream(graph, ends)
    return [node.loc.problem(f"node {name!r} ({node.op.name}) reaches neither an "
                                      "output nor the loss, so its value is computed and "
                                      "dropped; list it under outputs or remove it")
            for name, node in graph.nodes.items() if name not in used]


def _upstream(graph: Graph, ends: set[str]) -> set[str]:
    """``ends`` and everything they read, in one walk however many ends there are (through
    the nodes' inputs, the DAG's edges, without networkx's cost per call)."""
    seen = set(ends)
    stack = list(ends)
    nodes = graph.nodes
    while stack:
        node = nodes.get(stack.pop())
        for ref in node.inputs if node is not None else ():
            if ref not in seen:
                seen.add(ref)
                stack.append(ref)
    return seen


def _read(graph: Graph) -> set[str]:
    """The values some node reads (the DAG's edges, without building it)."""
    return {ref for node in graph.nodes.values() for ref in node.inputs}


def _unused_sources(graph: Graph, sources: list[Value], reached: set[str] | None
                    ) -> list[Problem]:
    warnings = []
    # a node of bare numbers only is the constant it computes: what it reads is used
    folded = graph.folded
    read: set[str] | None = None  # found only for a value backward does not reach
    for value in sources:
        name = value.name
        if name in graph.outputs or \
                (reached is not None and name in reached and name != graph.loss):
            continue  # reached (the loss aside, which may be a folded node): read by a node
        if read is None:
            read = _read(graph) | {ref for node in folded.values() for ref in node.inputs}
        if name not in read:
            what = f"node {name!r} ({folded[name].op.name})" if name in folded else \
                f"{value.kind} {name!r}"
            warnings.append(value.loc.problem(f"{what} is used by no node; "
                                              "remove it or list it among a node's inputs"))
    return warnings


def gradient_reach(graph: Graph, loss: str) -> set[str]:
    """Values whose gradient backward from ``loss`` computes: only differentiable edges count."""
    reached = {loss}
    stack = [loss]
    nodes = graph.nodes
    while stack:
        node = nodes.get(stack.pop())
        if node is None:
            continue
        for index, ref in enumerate(node.inputs):
            if ref not in reached and node.op.is_differentiable(index):
                reached.add(ref)
                stack.append(ref)
    return reached


def _gradients(graph: Graph, sources: list[Value], reached: set[str] | None
               ) -> list[Problem]:
    source = graph.source
    warnings = []
    tensors = [value for value in sources if value.kind in ("input", "parameter")]
    for value in tensors:
        if value.kind == "parameter" and value.decl is not None and value.decl.requires_grad:
            warnings.append(value.loc.at("requires_grad").problem(
                "requires_grad has no effect: a parameter always gets a gradient; remove it"))
    loss = graph.loss
    if loss is None or reached is None:
        return warnings
    ancestors: set[str] | None = None  # walked only for a value the gradient misses
    read: set[str] | None = None
    for value in tensors:
        name = value.name
        if name in reached:
            continue
        if read is None:
            read = _read(graph)
        if name not in read:  # unused: already warned about
            continue
        if ancestors is None:
            ancestors = _upstream(graph, {loss})
        how = (f"reaches the loss {loss!r} only through inputs that have no gradient (such "
               "as NLL's target or class weights)" if name in ancestors else
               f"does not reach the loss {loss!r}")
        if value.kind == "parameter":
            warnings.append(value.loc.problem(f"parameter {name!r} gets no gradient: it {how}; "
                                              "use it on the way to the loss, or make it a "
                                              "constant"))
        elif value.decl is not None and value.decl.requires_grad:
            warnings.append(value.loc.at("requires_grad").problem(
                f"requires_grad has no effect: input {name!r} {how}; remove requires_grad"))
    if not any(value.requires_grad and value.name in reached for value in tensors):
        warnings.append(source.problem(("loss",), f"the loss {loss!r} depends on no tensor that "
                                                  "requires grad, so backward computes no "
                                                  "gradient; declare parameters or set "
                                                  "requires_grad: true on an input"))
    return warnings


#: Ops that keep each value as it is, so NLL's input is judged by what they read.
_PASS_THROUGH = frozenset({"Reshape", "Transpose"})


def _nll_of_non_probabilities(graph: Graph, nll: list[tuple[str, Node]]) -> list[Problem]:
    warnings = []
    for name, node in nll:
        ref = node.inputs[0]
        source = graph.nodes.get(ref)
        while source is not None and source.op.name in _PASS_THROUGH:
            source = graph.nodes.get(source.inputs[0])
        if source is None or not source.op.not_probabilities:
            continue
        fix = ("NLL takes the log itself: give it Softmax's probabilities, not LogSoftmax's "
               "log-probabilities" if source.op.name == "LogSoftmax" else
               "apply Softmax first (or call nn.cross_entropy, which takes logits)")
        warnings.append(node.loc.at("inputs", 0).problem(
            f"node {name!r} (NLL) takes probabilities, but its input {ref!r} comes from "
            f"{source.op.name}{'' if source.name == ref else f' (node {source.name!r})'}, "
            f"whose values are not probabilities: the loss on them is meaningless and training "
            f"diverges; {fix}"))
    return warnings


def _nll_weights(graph: Graph, nll: list[tuple[str, Node]]) -> list[Problem]:
    """NLL's class weights written in the spec: a negative weight rewards the wrong class
    (the loss falls as that class's probability falls), and all-zero weights make the loss 0
    and its mean 0/0."""
    warnings = []
    for name, node in nll:
        if len(node.inputs) < 3:
            continue
        value = graph.values[node.inputs[2]]
        init = value.decl.init if value.decl is not None else None
        literal, loc = None, value.loc
        if init is not None and init.form == "value":
            literal, loc = np.asarray(init.value, dtype=np.float64), value.loc.at("init", "value")
        elif value.kind == "constant" and value.literal is not None:
            literal, loc = np.asarray(value.literal, dtype=np.float64), value.loc.at("value")
        if literal is None or literal.ndim != 1:
            continue
        negative = np.flatnonzero(literal < 0)
        if negative.size:
            index = int(negative[0])
            warnings.append(loc.at(index).problem(
                f"class weight {literal[index]:g} (class {index}) of NLL node {name!r} is "
                "negative: minimizing the loss then lowers that class's probability; class "
                "weights are >= 0"))
        elif literal.size and not literal.any():
            warnings.append(loc.problem(
                f"every class weight of NLL node {name!r} is 0: the loss is 0 and its mean "
                "0/0 = NaN"))
    return warnings


def _float16(sources: list[Value]) -> list[Problem]:
    for value in sources:
        if value.dtype == "float16" and not value.weak:
            return [value.loc.at("dtype").problem(FLOAT16_WARNING)]
    return []


def _unused_dims(graph: Graph, sources: list[Value]) -> list[Problem]:
    """A default under ``dims:`` that no declared shape names is most likely misspelt."""
    named = {d for v in sources if v.decl is not None for d in v.decl.shape
             if isinstance(d, str)}
    return [graph.source.problem(("dims", name), f"dimension {name!r} is named by no shape"
                                                 f"{did_you_mean(name, named)}, so its default "
                                                 "is never used")
            for name in graph.spec.dims if name not in named]
