"""Passes over a graph in memory: each a function ``Stage -> Stage``.

A ``Stage`` (``engine.transform.passes.stage``) is a ``Graph`` and the names the
passes must keep.  Each pass lives in its own module, whose docstring says what it
rewrites and why the rewrite is exact (or how it changes rounding: fusion); each
walks the nodes at most once (linear in the graph's size), only those its rules
start from (``engine.transform.passes.census``, which all passes over one graph
share), and builds the next graph in memory, with no YAML in between.  ``PASSES``
is the default order: fusion first; then folding makes the numbers that
simplification looks for, and both expose common subexpressions and dead nodes,
which the last two passes remove.

``Executor(graph)`` runs ``optimized(graph)``, every pass on the forward graph
(its backward is then the executor's walk over the fused ops' vjps);
``engine optimize`` runs fusion on the forward graph and the other passes on engine
grad's joint forward and backward graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.errors import UsageError, did_you_mean
from engine.gcpause import collector_paused
from engine.graph.model import Graph
from engine.transform.passes.cse import eliminate_common_subexpressions
from engine.transform.passes.dce import eliminate_dead_code
from engine.transform.passes.fold import fold_constants
from engine.transform.passes.fuse import fuse
from engine.transform.passes.simplify import simplify
from engine.transform.passes.stage import Match, Stage

Pass = Callable[[Stage], Stage]

#: Passes on the forward graph, run before engine grad differentiates it (so that the
#: backward is the fused op's derivative), whatever their place in a list.
FORWARD_PASSES: dict[str, Pass] = {"fuse": fuse}

#: Passes on the joint forward and backward graph.
JOINT_PASSES: dict[str, Pass] = {
    "fold": fold_constants,
    "simplify": simplify,
    "cse": eliminate_common_subexpressions,
    "dce": eliminate_dead_code,
}

PASSES: dict[str, Pass] = {**FORWARD_PASSES, **JOINT_PASSES}


@dataclass(frozen=True)
class PassReport:
    """What one pass did: node counts before and after, and each rewrite."""

    name: str
    before: int
    after: int
    matches: list[Match]


def parse_passes(text: str) -> list[str]:
    """``--passes simplify,cse``: known names, in the order given; a UsageError otherwise."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--passes: no pass named; the passes: {', '.join(PASSES)}")
    for name in names:
        if name not in PASSES:
            raise UsageError(f"--passes: unknown pass {name!r}{did_you_mean(name, PASSES)}; "
                             f"the passes: {', '.join(PASSES)}")
    return names


def run_passes(stage: Stage, names: Sequence[str] = tuple(PASSES)
               ) -> tuple[Stage, list[PassReport]]:
    """``stage`` after each pass of ``names`` in turn, and what each did."""
    reports = []
    with collector_paused():  # many small records that all survive (engine.gcpause)
        for name in names:
            before = len(stage.graph.nodes)
            stage = PASSES[name](stage)
            reports.append(PassReport(name, before, len(stage.graph.nodes), stage.matches))
    return stage, reports


def optimized(graph: Graph, passes: Sequence[str] = tuple(PASSES)) -> Graph:
    """``graph`` after ``passes``, its outputs and loss kept: what ``Executor(graph)`` runs.
    The same graph object when no pass changes anything."""
    stage, _ = run_passes(Stage.of(graph), passes)
    return stage.graph
