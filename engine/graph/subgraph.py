"""The part of a graph that some nodes depend on, as a graph of its own.

``engine predict`` runs only what the requested outputs need, so it asks for
(and refuses to run without) exactly the inputs those outputs read: the labels
that only the loss reads are not needed to predict.
"""

from __future__ import annotations

import dataclasses

import networkx as nx

from engine.graph.model import Graph


def needed_by(graph: Graph, names: list[str]) -> Graph:
    """``graph`` cut down to ``names`` and what they depend on; ``names`` are its outputs
    and it has no loss (unless the loss is among them)."""
    keep = set(names)
    for name in names:
        keep |= nx.ancestors(graph.dag, name)
    return dataclasses.replace(
        graph, values={n: v for n, v in graph.values.items() if n in keep},
        nodes={n: node for n, node in graph.nodes.items() if n in keep},
        order=[n for n in graph.order if n in keep], outputs=list(names),
        loss=graph.loss if graph.loss in names else None,
        targets={n: t for n, t in graph.targets.items() if n in keep and t.node in keep})


def inputs_of(graph: Graph) -> list[str]:
    """The graph's inputs, in declaration order."""
    return [name for name, value in graph.values.items() if value.kind == "input"]
