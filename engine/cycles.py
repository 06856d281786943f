"""Cycles of a directed graph, found and written the same way by every stage that forbids them.

Three stages refuse cycles: the graph's nodes (``engine.graph.build``), function
calls (``engine.spec.inline``) and imported files (``engine.spec.imports``).
Each reports one cycle per strongly connected component, started where it comes
first in the user's files, so that messages are stable and read in file order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import networkx as nx

N = TypeVar("N", bound=Hashable)


def find_cycles(graph: nx.DiGraph, first: Callable[[N, N], Any]) -> list[list[N]]:
    """One cycle through each strongly connected component that holds one, as its nodes in
    order, starting at the edge ``(u, next)`` for which ``first(u, next)`` is smallest."""
    cycles = []
    for component in nx.strongly_connected_components(graph):
        some = next(iter(component))
        if len(component) == 1 and not graph.has_edge(some, some):
            continue
        cycle = [u for u, _ in nx.find_cycle(graph.subgraph(component))]
        following = dict(zip(cycle, cycle[1:] + cycle[:1], strict=True))
        start = cycle.index(min(cycle, key=lambda u: first(u, following[u])))
        cycles.append(cycle[start:] + cycle[:start])
    return cycles


def cycle_path(labels: list[str]) -> str:
    """``a -> b -> a``: the cycle's labels, back to the first."""
    return " -> ".join([*labels, labels[0]])
