"""The optimization passes one by one: where each fires, where it must not, and that the
rewritten graph computes what the original computes (both run by the executor, 1e-12).

The expected rewrites are worked out by hand from each pass's rules; the equality is
checked against the unrewritten graph, which the executor runs as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from engine.transform.passes import PASSES, run_passes
from engine.transform.passes.cse import eliminate_common_subexpressions
from engine.transform.passes.dce import eliminate_dead_code
from engine.transform.passes.fold import fold_constants
from engine.transform.passes.simplify import simplify
from engine.transform.passes.stage import Stage

X = {"shape": [4, 3], "init": {"uniform": {"low": 0.5, "high": 2.0}}}


def stage(nodes: dict[str, Any], outputs: list[str], *, inputs: dict | None = None,
          constants: dict | None = None) -> Stage:
    spec: dict[str, Any] = {"name": "t", "seed": 3, "inputs": inputs or {"x": X}}
    if constants:
        spec["constants"] = constants
    spec["nodes"] = nodes
    spec["outputs"] = outputs
    return Stage.load(spec, Path("."))


def run(s: Stage, feeds: dict | None = None) -> dict[str, np.ndarray]:
    """The stage's graph run as it is (the plain path: no passes of the executor's own)."""
    return engine.Executor(s.graph, optimize=False).forward(feeds)


def assert_same(before: Stage, after: Stage, feeds: dict | None = None) -> None:
    want, got = run(before, feeds), run(after, feeds)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0, err_msg=name)
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape


def ops(s: Stage) -> dict[str, str]:
    return {name: entry["op"] for name, entry in s.spec["nodes"].items()}


# -- dead-code elimination -----------------------------------------------------------------

def test_dce_removes_what_no_output_reads() -> None:
    before = stage({"a": {"op": "Exp", "inputs": ["x"]}, "unused": {"op": "Log", "inputs": ["a"]},
                    "b": {"op": "Mul", "inputs": ["a", "k"]}}, ["b"], constants={"k": 2.0,
                                                                                  "spare": 5.0})
    after = eliminate_dead_code(before)
    assert ops(after) == {"a": "Exp", "b": "Mul"}
    assert set(after.spec["constants"]) == {"k"}
    assert [m.node for m in after.matches] == ["unused", "spare"]
    assert_same(before, after)


def test_dce_keeps_outputs_their_inputs_and_unread_inputs() -> None:
    before = stage({"a": {"op": "Exp", "inputs": ["x"]}, "b": {"op": "Log", "inputs": ["a"]}},
                   ["a", "b"], inputs={"x": X, "unread": X})
    after = eliminate_dead_code(before)
    assert after.matches == [] and ops(after) == ops(before)
    assert "unread" in after.graph.values


# -- common subexpressions -----------------------------------------------------------------

def test_cse_merges_equal_nodes_and_commuted_products() -> None:
    before = stage({"a": {"op": "Exp", "inputs": ["x"]}, "b": {"op": "Exp", "inputs": ["x"]},
                    "p": {"op": "Mul", "inputs": ["a", 2.0]},
                    "q": {"op": "Mul", "inputs": [2.0, "b"]},  # b is a: the same product
                    "s": {"op": "Add", "inputs": ["p", "q"]}}, ["s", "b"])
    after = eliminate_common_subexpressions(before)
    assert [m.node for m in after.matches] == ["b", "q"]
    assert after.spec["nodes"]["b"] == {"op": "Identity", "inputs": ["a"]}  # an output keeps
    assert after.spec["nodes"]["s"]["inputs"] == ["p", "p"]
    assert_same(before, after)


@pytest.mark.parametrize("second", [
    {"op": "Sum", "inputs": ["x"], "axis": 0},                      # other attributes
    {"op": "Sub", "inputs": ["x", "y"]},                            # not commutative
    {"op": "Mul", "inputs": ["x", -0.0]},                           # -0.0 is not 0.0
    {"op": "Dropout", "inputs": ["x"], "rate": 0.5},                # two masks, not one
])
def test_cse_does_not_merge_different_computations(second: dict) -> None:
    first = {"Sum": {"op": "Sum", "inputs": ["x"], "axis": 1},
             "Sub": {"op": "Sub", "inputs": ["y", "x"]},
             "Mul": {"op": "Mul", "inputs": ["x", 0.0]},
             "Dropout": {"op": "Dropout", "inputs": ["x"], "rate": 0.5}}[second["op"]]
    before = stage({"a": first, "b": second}, ["a", "b"], inputs={"x": X, "y": X})
    after = eliminate_common_subexpressions(before)
    assert after.matches == []


# -- constant folding ----------------------------------------------------------------------

def test_fold_computes_constant_nodes_bit_for_bit() -> None:
    before = stage({"c": {"op": "Sub", "inputs": ["k", 1.0]},
                    "e": {"op": "Exp", "inputs": ["m"]},                 # a float32 constant
                    "p": {"op": "Pow", "inputs": ["x", "c"]},
                    "q": {"op": "Mul", "inputs": ["x", "e"]}}, ["p", "q", "c"],
                   constants={"k": -1.0, "m": {"value": [0.1, 0.2, 0.3], "dtype": "float32"}},
                   inputs={"x": {**X, "dtype": "float32"}})
    after = fold_constants(before)
    assert ops(after) == {"p": "Pow", "q": "Mul"}
    # node c, bare numbers only, is the bare number -1 - 1 (computed at load), so it is
    # written as one: each use reads it in its own dtype
    assert after.spec["constants"]["c"] == -2.0
    folded = np.asarray(after.spec["constants"]["e"]["value"], dtype=np.float32)
    np.testing.assert_array_equal(folded, np.exp(np.float32([0.1, 0.2, 0.3])))
    got, want = run(after), run(before)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_fold_leaves_inputs_random_ops_and_large_results() -> None:
    before = stage({"a": {"op": "Mul", "inputs": ["x", "k"]},
                    "d": {"op": "Dropout", "inputs": ["k"], "rate": 0.5},
                    "big": {"op": "BroadcastTo", "inputs": ["k", "x"]},
                    "large": {"op": "Exp", "inputs": ["z"]}}, ["a", "d", "big", "large"],
                   constants={"k": 2.0, "z": {"value": [0.0] * 2000, "dtype": "float64"}})
    after = fold_constants(before)
    assert after.matches == []


# -- algebraic simplification --------------------------------------------------------------

IDENTITIES = {
    "Mul(x, 1)": {"op": "Mul", "inputs": ["x", 1.0]},
    "Mul(1, x)": {"op": "Mul", "inputs": ["one", "x"]},
    "Div(x, 1)": {"op": "Div", "inputs": ["x", 1.0]},
    "Pow(x, 1)": {"op": "Pow", "inputs": ["x", 1.0]},
    "Add(0, x)": {"op": "Add", "inputs": [0.0, "x"]},
    "Sub(x, 0)": {"op": "Sub", "inputs": ["x", 0.0]},
}


@pytest.mark.parametrize("rule", IDENTITIES, ids=list(IDENTITIES))
def test_simplify_removes_identities(rule: str) -> None:
    before = stage({"r": IDENTITIES[rule], "s": {"op": "Exp", "inputs": ["r"]}}, ["s"],
                   constants={"one": {"value": [1.0, 1.0, 1.0], "dtype": "float64"}})
    after = simplify(before)
    assert after.spec["nodes"]["s"]["inputs"] == ["x"]
    assert [m.node for m in after.matches] == ["r"]
    assert_same(before, after)


@pytest.mark.parametrize("node", [
    {"op": "Mul", "inputs": ["x", 2.0]},            # not 1
    {"op": "Mul", "inputs": ["v", "one"]},          # 1 broadcasts v [3] to [4, 3]
    {"op": "Div", "inputs": [1.0, "x"]},            # 1 / x is not x
    {"op": "Sub", "inputs": [0.0, "x"]},            # 0 - x is not x
    {"op": "Mul", "inputs": ["x", "half"]},         # 1 only in some elements
    {"op": "Add", "inputs": ["i", 0.5]},            # weak 0.5 makes a float from... not 0
], ids=["times 2", "broadcasting 1", "1 over x", "0 minus x", "not all ones", "not 0"])
def test_simplify_leaves_what_is_not_an_identity(node: dict) -> None:
    before = stage({"r": node}, ["r"], inputs={"x": X, "v": {"shape": [3]}, "i": X},
                   constants={"one": {"value": [[1.0], [1.0], [1.0], [1.0]], "dtype": "float64"},
                              "half": {"value": [1.0, 0.5, 1.0], "dtype": "float64"}})
    assert simplify(before).matches == []


def test_simplify_neg_neg_sums_of_one_and_reshapes() -> None:
    before = stage({
        "n1": {"op": "Neg", "inputs": ["x"]}, "n2": {"op": "Neg", "inputs": ["n1"]},
        "col": {"op": "Sum", "inputs": ["n2"], "axis": -1, "keepdims": True},   # [4, 1]
        "again": {"op": "Sum", "inputs": ["col"], "axis": 1, "keepdims": True},  # fires
        "flat": {"op": "Sum", "inputs": ["col"], "axis": [1]},                 # a Squeeze
        "r1": {"op": "Reshape", "inputs": ["x"], "shape": [3, 4]},
        "r2": {"op": "Reshape", "inputs": ["r1"], "shape": [2, -1]},           # one Reshape
        "r3": {"op": "Reshape", "inputs": ["x"], "shape": [4, 3]},             # no change
        "out": {"op": "Add", "inputs": ["again", "r3"]}},
        ["out", "flat", "r2"])
    after = simplify(before)
    nodes = after.spec["nodes"]
    assert {m.node for m in after.matches} == {"n2", "again", "flat", "r2", "r3"}
    assert nodes["col"]["inputs"] == ["x"] and nodes["out"]["inputs"] == ["col", "x"]
    assert nodes["flat"] == {"op": "Squeeze", "inputs": ["col"], "axes": [1]}
    assert nodes["r2"]["inputs"] == ["x"]
    assert_same(before, after)


def test_simplify_keeps_sums_over_longer_axes_and_copying_reshapes() -> None:
    before = stage({"s": {"op": "Sum", "inputs": ["x"], "axis": 1, "keepdims": True},
                    "r1": {"op": "Reshape", "inputs": ["x"], "shape": [3, 4]},
                    "r2": {"op": "Reshape", "inputs": ["r1"], "shape": [0, 2, 2]}},
                   ["s", "r2"])
    assert simplify(before).matches == []


@pytest.mark.filterwarnings("ignore:.*encountered in log:RuntimeWarning")
def test_exp_of_log_only_where_the_log_is_of_a_value_at_least_zero() -> None:
    before = stage({"e": {"op": "Exp", "inputs": ["x"]},
                    "l": {"op": "Log", "inputs": ["e"]}, "back": {"op": "Exp", "inputs": ["l"]},
                    "lx": {"op": "Log", "inputs": ["x"]}, "kept": {"op": "Exp", "inputs": ["lx"]},
                    "le": {"op": "Exp", "inputs": ["x"]}, "ll": {"op": "Log", "inputs": ["le"]}},
                   ["back", "kept", "ll"])
    after = simplify(before)
    assert [m.node for m in after.matches] == ["back"]  # x may be negative; Log(Exp) never
    assert after.spec["nodes"]["back"] == {"op": "Identity", "inputs": ["e"]}
    feeds = {"x": np.array([[-800.0, -3.0, 0.0], [1e-300, 2.0, 700.0], [5.0, -1.0, 1.0],
                            [3.0, 3.0, 3.0]])}
    want, got = run(before, feeds), run(after, feeds)
    np.testing.assert_allclose(got["back"], want["back"], rtol=1e-12)
    np.testing.assert_array_equal(got["ll"], want["ll"])


def test_all_passes_together_on_a_graph_with_work_for_each() -> None:
    before = stage({"a": {"op": "Exp", "inputs": ["x"]}, "b": {"op": "Exp", "inputs": ["x"]},
                    "k2": {"op": "Sub", "inputs": ["k", 1.0]},
                    "m": {"op": "Mul", "inputs": ["a", "k2"]},
                    "dead": {"op": "Log", "inputs": ["b"]},
                    "s": {"op": "Add", "inputs": ["m", "b"]}}, ["s"], constants={"k": 2.0})
    after, reports = run_passes(before)
    assert [r.name for r in reports] == list(PASSES)
    assert ops(after) == {"a": "Exp", "s": "Add"}  # a * 1 is a; b is a; dead is gone
    assert after.spec["nodes"]["s"]["inputs"] == ["a", "a"]
    assert_same(before, after)
