"""Dead-code elimination: nodes and constants that no kept value reads are removed.

Exact: the kept values (outputs, loss) are computed by the same nodes from the same
values as before; what is removed was computed and thrown away.  Inputs and
parameters stay, even unread, since they are what a caller feeds and trains.
Stochastic nodes (Dropout) draw from their own stream (seed and node name), so
removing another node changes nothing they draw.  One walk from the last node
back, where a node or constant is read by nothing and not kept (else none): linear.
"""

from __future__ import annotations

from itertools import filterfalse

from engine.transform.passes.stage import Rewrite, Stage


def eliminate_dead_code(stage: Stage) -> Stage:
    graph = stage.graph
    read, keep = stage.census.read, stage.keep
    # Something is dead only if some node or constant is read by no node and not kept (the
    # last dead node is such a node): C-level scans, no walk, find none.
    if keep.issuperset(filterfalse(read.__contains__, graph.nodes)) and \
            keep.issuperset(filterfalse(read.__contains__, stage.census.constants)):
        return stage.unchanged()
    rewrite = Rewrite(stage)
    live = set(stage.keep)
    dead = []
    for name in reversed(graph.order):
        node = graph.nodes[name]
        if name in live:
            live.update(node.inputs)
        else:
            dead.append(name)
            rewrite.drop(name)
    for name in reversed(dead):
        rewrite.note(name, f"{graph.nodes[name].op.name} is read by no output")
    for name in stage.census.constants:
        if name not in live:
            rewrite.dropped.add(name)
            rewrite.note(name, "constant read by no node")
    return rewrite.finish()
