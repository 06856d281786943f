"""The census the passes share (engine.transform.passes.census), and the passes' short cuts
that rest on it: each test is a graph where a wrong census, a stale one, or a short cut
that skips a node it must visit, gives a different rewrite than the one derived by hand
from the pass's rules."""

from __future__ import annotations

from test_passes import X, assert_same, ops, stage

from engine.transform.passes import run_passes
from engine.transform.passes.census import Census
from engine.transform.passes.cse import eliminate_common_subexpressions
from engine.transform.passes.dce import eliminate_dead_code
from engine.transform.passes.fuse import fuse

LABELS = {"shape": [4], "dtype": "int64", "init": {"labels": {"classes": 3}}}


def test_the_census_lists_ops_in_order_constants_and_readers() -> None:
    s = stage({"a": {"op": "Exp", "inputs": ["x"]}, "b": {"op": "Mul", "inputs": ["a", "k"]},
               "c": {"op": "Mul", "inputs": ["b", "a"]}}, ["c"],
              constants={"k": 2.0, "spare": 5.0})
    census = Census(s.graph)
    assert [node.name for node in census.nodes] == ["a", "b", "c"]
    assert census.ops == ["Exp", "Mul", "Mul"]
    assert dict(census.counts) == {"Exp": 1, "Mul": 2}
    assert census.has("Mul") and not census.has("Sum")
    assert census.constants == ["k", "spare"]
    assert census.nodes_of({"Mul", "Sum"}) == ["b", "c"] and census.nodes_of({"Sum"}) == []
    assert census.read == {"x", "a", "k", "b"}
    assert dict(census.readers) == {"x": 1, "a": 2, "k": 1, "b": 1}


def test_a_stage_keeps_its_census_while_the_graph_stays_and_takes_a_new_one_after() -> None:
    s = stage({"a": {"op": "Exp", "inputs": ["x"]}}, ["a"])
    census = s.census
    assert eliminate_dead_code(s).census is census  # nothing dead: the same graph
    changed = eliminate_dead_code(stage({"a": {"op": "Exp", "inputs": ["x"]},
                                         "b": {"op": "Log", "inputs": ["x"]}}, ["a"]))
    assert changed.census.graph is changed.graph and changed.census.ops == ["Exp"]


def test_a_pass_after_a_rewrite_reads_the_rewritten_graph() -> None:
    # fold makes c the constant [1, 1, 1]; simplify must then see it (the census of the graph
    # before has the constants [3, 3, 3] and 2.0 only, neither of them a neutral number)
    before = stage({"c": {"op": "Sub", "inputs": ["k", 2.0]},
                    "y": {"op": "Mul", "inputs": ["x", "c"]},
                    "z": {"op": "Exp", "inputs": ["y"]}}, ["z"], constants={"k": [3.0, 3.0, 3.0]})
    after, reports = run_passes(before, ["fold", "simplify"])
    assert [[m.node for m in r.matches] for r in reports] == [["c"], ["y"]]
    assert ops(after) == {"z": "Exp"} and after.spec["nodes"]["z"]["inputs"] == ["x"]
    assert_same(before, after)


def test_fusion_makes_the_softmax_its_cross_entropy_rule_reads() -> None:
    # no Softmax in the graph: the staged one (by division) becomes one, then the NLL of it
    staged = {"raised": {"op": "Exp", "inputs": ["x"]},
              "summed": {"op": "Sum", "inputs": ["raised"], "axis": -1, "keepdims": True},
              "probs": {"op": "Div", "inputs": ["raised", "summed"]},
              "loss": {"op": "NLL", "inputs": ["probs", "labels"]}}
    before = stage(staged, ["loss"], inputs={"x": X, "labels": LABELS})
    after = fuse(before)
    assert [m.node for m in after.matches] == ["probs", "loss"]
    assert after.spec["nodes"]["loss"] == {"op": "CrossEntropy", "inputs": ["x", "labels"]}


def test_cse_merges_products_by_two_numbers_written_twice_either_way_round() -> None:
    # two inline 2.0s are two constants of one value: only the value makes a and b equal
    before = stage({"a": {"op": "Mul", "inputs": ["x", 2.0]},
                    "b": {"op": "Mul", "inputs": [2.0, "x"]},
                    "s": {"op": "Add", "inputs": ["a", "b"]}}, ["s"])
    after = eliminate_common_subexpressions(before)
    assert [m.node for m in after.matches] == ["b"]
    assert after.spec["nodes"]["s"]["inputs"] == ["a", "a"]
    assert_same(before, after)


def test_dce_drops_an_unread_constant_where_every_node_is_read() -> None:
    before = stage({"a": {"op": "Exp", "inputs": ["x"]}, "b": {"op": "Mul", "inputs": ["a", "k"]}},
                   ["b"], constants={"k": 2.0, "spare": 5.0})
    after = eliminate_dead_code(before)
    assert [m.node for m in after.matches] == ["spare"] and ops(after) == ops(before)
    assert "spare" not in after.graph.values
