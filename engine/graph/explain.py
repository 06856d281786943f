"""Derivative chains: d(of)/d(wrt) as a sum over paths of products of local partial derivatives.

This is the chain rule written out the way the lesson writes it.  Every path
from ``wrt`` to ``of`` through differentiable uses contributes one product; a
value used twice by one node (``Mul(x, x)``) gives two paths.  Paths are
counted first, by dynamic programming over the topological order (linear in
the graph's size), and listed only when there are few, so a graph with 2^40
paths answers at once instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from engine.errors import DataError, EngineError, did_you_mean
from engine.graph.model import Graph

DEFAULT_MAX_PATHS = 64


@dataclass(frozen=True)
class Factor:
    """One local partial derivative: ``d node / d ref``, through the node's input ``index``."""

    node: str
    ref: str
    index: int
    op: str
    role: str
    repeated: bool  # the node uses ref more than once, so the role must be named


@dataclass(frozen=True)
class Chains:
    """The answer: how many paths, and (when at most ``limit``) each path's factors."""

    of: str
    wrt: str
    count: int
    limit: int
    paths: tuple[tuple[Factor, ...], ...] | None
    blocked: tuple[str, ...]  # why uses of wrt carry no derivative (non-differentiable inputs)


def derivative_chains(graph: Graph, wrt: str, of: str | None = None,
                      limit: int = DEFAULT_MAX_PATHS) -> Chains:
    """The chains of ``of`` (default: the loss) with respect to the value ``wrt``."""
    of = _check_names(graph, wrt, of)
    counts = count_paths(graph, of)
    count = counts.get(wrt, 0)
    blocked = tuple(
        f"{node.name} ({node.op.name}) takes no derivative in its input "
        f"{node.op.input_name(i)!r}"
        for node in graph.nodes.values() for i, ref in enumerate(node.inputs)
        if ref == wrt and not node.op.is_differentiable(i))
    paths = tuple(_paths(graph, wrt, of, counts)) if 0 < count <= limit else None
    return Chains(of, wrt, count, limit, paths if count else (), blocked)


def count_paths(graph: Graph, of: str) -> dict[str, int]:
    """``{value: number of differentiable paths from it to of}``; values with none are left out."""
    counts = {of: 1}
    for name in reversed(graph.order):
        through = counts.get(name)
        if not through:
            continue
        node = graph.nodes[name]
        for index, ref in enumerate(node.inputs):
            if node.op.is_differentiable(index):
                counts[ref] = counts.get(ref, 0) + through
    return counts


def _uses(graph: Graph, counts: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """``{value: [(node, input index), ...]}`` for the uses that lie on some path, in order."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for name in graph.order:
        if name not in counts:
            continue
        node = graph.nodes[name]
        for index, ref in enumerate(node.inputs):
            if node.op.is_differentiable(index) and ref in counts:
                uses.setdefault(ref, []).append((name, index))
    return uses


def _paths(graph: Graph, wrt: str, of: str,
           counts: dict[str, int]) -> Iterator[tuple[Factor, ...]]:
    """Every path from wrt to of, as factors from of down to wrt; iterative, so long paths work."""
    uses = _uses(graph, counts)
    stack: list[tuple[str, tuple[Factor, ...]]] = [(wrt, ())]
    while stack:
        value, factors = stack.pop()
        if value == of:
            yield factors
            continue
        for node_name, index in reversed(uses.get(value, [])):
            node = graph.nodes[node_name]
            factor = Factor(node_name, value, index, node.op.name, node.op.input_name(index),
                            node.inputs.count(value) > 1)
            stack.append((node_name, (factor, *factors)))


def _check_names(graph: Graph, wrt: str, of: str | None) -> str:
    if wrt not in graph.values:
        raise DataError(f"--wrt {wrt!r} names no value of {graph.file}"
                        f"{did_you_mean(wrt, graph.values)}")
    if of is None:
        if graph.loss is None:
            raise EngineError(f"{graph.file} declares no loss: say which node to differentiate "
                              "with --of NODE")
        return graph.loss
    if of not in graph.nodes:
        what = "is not a node" if of in graph.values else "names nothing"
        raise DataError(f"--of {of!r} {what} in {graph.file}{did_you_mean(of, graph.nodes)}")
    return of


# -- plain text ------------------------------------------------------------------------------


def _partial(top: str, bottom: str) -> str:
    return f"∂{_grouped(top)}/∂{_grouped(bottom)}"


def _grouped(name: str) -> str:
    """A name from a function call (``probs/raised``) in parentheses, so the / is not a fraction."""
    return f"({name})" if "/" in name else name


def _factor_text(factor: Factor) -> str:
    text = _partial(factor.node, factor.ref)
    return f"({text} as {factor.role})" if factor.repeated else text


def as_text(chains: Chains) -> str:
    """The chains as the lesson writes them, one product per line, then what each factor is."""
    head = _partial(chains.of, chains.wrt)
    if chains.count == 0:
        why = "".join(f"\n  {reason}" for reason in chains.blocked)
        return (f"{head} = 0: no path from {chains.wrt} to {chains.of} carries a derivative"
                f"{why}\n")
    if chains.paths is None:
        return _too_many(chains) + "\n"
    noun = "path" if chains.count == 1 else "paths"
    lines = [f"{head} = sum over {chains.count} {noun} of products of local partial "
             "derivatives", ""]
    for number, path in enumerate(chains.paths, 1):
        route = " -> ".join([chains.wrt, *(f.node for f in reversed(path))])
        lines.append(f"  path {number}: {route}")
        sign = "=" if number == 1 else "+"
        lines.append(f"    {sign} " + (" · ".join(_factor_text(f) for f in path) or "1"))
    seen: dict[str, str] = {}
    for path in chains.paths:
        for f in path:
            seen.setdefault(_factor_text(f), f"{f.op}, with respect to its input {f.role!r}")
    if seen:
        width = max(len(k) for k in seen)
        lines += ["", "local partial derivatives:"]
        lines += [f"  {key.ljust(width)}  {meaning}" for key, meaning in seen.items()]
    return "\n".join(lines) + "\n"


def _too_many(chains: Chains) -> str:
    power = chains.count.bit_length() - 1
    exact = chains.count == 1 << power
    if power < 200:
        count = f"{chains.count} paths" + (f" (2^{power})" if exact else f" (about 2^{power})")
    else:  # no decimal digits: Python refuses to write integers of over 4,300 of them
        count = f"2^{power} paths" if exact else f"about 2^{power} paths"
    return (f"{_partial(chains.of, chains.wrt)} is a sum over {count}, too "
            f"many to write out (the limit is {chains.limit}); raise it with --max-paths, or "
            "explain a nearer pair with --of and --wrt")


# -- LaTeX -----------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\backslash{}", "_": r"\_", "#": r"\#", "$": r"\$", "%": r"\%",
                  "&": r"\&", "{": r"\{", "}": r"\}", "~": r"\sim{}", "^": r"\hat{}"}


def _latex_name(name: str) -> str:
    return r"\mathrm{" + "".join(_LATEX_SPECIAL.get(c, c) for c in name) + "}"


def _latex_partial(top: str, bottom: str) -> str:
    return rf"\frac{{\partial {_latex_name(top)}}}{{\partial {_latex_name(bottom)}}}"


def _latex_factor(factor: Factor) -> str:
    text = _latex_partial(factor.node, factor.ref)
    if factor.repeated:
        return text + r"\Big|_{" + _latex_name(factor.role) + "}"
    return text


def as_latex(chains: Chains) -> str:
    """An amsmath ``aligned`` block (one path per line) to put inside ``\\[ ... \\]``."""
    head = _latex_partial(chains.of, chains.wrt)
    if chains.count == 0:
        return f"{head} = 0\n"
    if chains.paths is None:
        return "% " + _too_many(chains) + "\n"
    rows = [" ".join(_latex_factor(f) for f in path) or "1" for path in chains.paths]
    body = [f"{head} ={{}}& {rows[0]}"] + [f"{{}}+{{}}& {row}" for row in rows[1:]]
    return "\\begin{aligned}\n" + " \\\\\n".join(body) + "\n\\end{aligned}\n"
