"""What one graph's nodes are, counted once and shared by every pass over that graph.

Each pass's rules start from nodes of a few ops (fusion from ``Mul``, ``Div``, ``Add``,
``Relu`` and ``NLL``; simplification from the ops with a neutral number, ``Neg``,
``Sum``, ``Reshape`` and ``Exp``) and most need other ops to be present as well (a
staged softmax needs an ``Exp`` and a ``Sum``).  So a pass asks the census which ops
the graph has and walks only the nodes its rules can start from: a pass that cannot
fire costs a few set lookups instead of a walk over 100,000 nodes.  The census is
built with C-level scans (``map``, ``compress``, ``Counter``), on first use.

A ``Stage`` keeps the census of its graph while the passes change nothing, and builds
a new one for any other graph object (``Stage.census`` compares identities), so a
census never describes a graph a pass has since rewritten (``Rewrite.finish`` makes a
new graph whenever anything changes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from functools import cached_property
from itertools import chain, compress
from operator import attrgetter

from engine.graph.model import Graph, Node

_OP_NAME = attrgetter("op.name")
_INPUTS = attrgetter("inputs")
_KIND = attrgetter("kind")


class Census:
    """The nodes of ``graph`` in order and their ops, how many nodes each op has, the
    constants, and (on first use) which values nodes read, and how many nodes read each."""

    def __init__(self, graph: Graph):
        self.graph = graph
        #: ``graph.nodes[graph.order[i]]``: looked up once (by name, the scans' dearest step)
        self.nodes: list[Node] = list(map(graph.nodes.__getitem__, graph.order))
        #: the op name of ``nodes[i]``
        self.ops: list[str] = list(map(_OP_NAME, self.nodes))
        self.counts: Counter[str] = Counter(self.ops)
        values = graph.values
        #: the names of the constants, in the graph's order of values
        self.constants: list[str] = list(compress(values, map("constant".__eq__,
                                                                map(_KIND, values.values()))))

    def has(self, op: str) -> bool:
        """Whether some node of the graph is of op ``op``."""
        return op in self.counts

    def nodes_of(self, ops: Collection[str]) -> list[str]:
        """The names of the nodes of ``ops``, in the graph's order."""
        if not any(op in self.counts for op in ops):
            return []
        return list(compress(self.graph.order, map(set(ops).__contains__, self.ops)))

    @cached_property
    def read(self) -> set[str]:
        """The values some node reads."""
        return set(chain.from_iterable(map(_INPUTS, self.nodes)))

    @cached_property
    def readers(self) -> Counter[str]:
        """How many nodes read each value (a node reading it twice counts twice)."""
        return Counter(chain.from_iterable(map(_INPUTS, self.nodes)))
