"""Dead-code elimination: nodes and constants that no output reads are removed.

Exact: the outputs are computed by the same nodes from the same values as before;
what is removed was computed and thrown away.  Inputs and parameters stay, even
unread, since they are what a caller feeds and trains.  Stochastic nodes
(Dropout) draw from their own stream (seed and node name), so removing another
node changes nothing they draw.  One walk from the last node back: linear.
"""

from __future__ import annotations

from engine.transform.passes.stage import Stage


def eliminate_dead_code(stage: Stage) -> Stage:
    spec = stage.edit()
    nodes = spec["nodes"]
    live = set(spec["outputs"])
    matches = []
    for name in reversed(list(nodes)):
        if name in live:
            live.update(r for r in nodes[name]["inputs"] if isinstance(r, str))
        else:
            matches.append(stage.match(name, f"{nodes[name]['op']} is read by no output"))
            del nodes[name]
    matches.reverse()
    for name in list(spec["constants"]):
        if name not in live:
            del spec["constants"][name]
            matches.append(stage.match(name, "constant read by no node"))
    return stage.rebuilt(spec, matches)
