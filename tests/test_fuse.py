"""Pattern fusion: the lesson's staged softmax becomes Softmax, Softmax into NLL becomes the
cross-entropy -sum(LogSoftmax * y) whose gradient is p - y.

Where the staged form is finite the fused one agrees to rounding (both run by the
executor); where it overflows, the fused one is checked against the stable formulas
written here in NumPy (p = exp(x - max) / sum, loss = -sum(y log p), gradient p - y).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import GRAPHS
from test_passes import X, assert_same, ops, stage

import engine
from engine.transform.optimize import optimize, optimize_spec
from engine.transform.passes.fuse import fuse

STAGED = {"raised": {"op": "Exp", "inputs": ["x"]},
          "summed": {"op": "Sum", "inputs": ["raised"], "axis": -1, "keepdims": True},
          "inverted": {"op": "Pow", "inputs": ["summed", -1.0]},
          "softmax": {"op": "Mul", "inputs": ["raised", "inverted"]}}


def test_the_staged_softmax_becomes_one_softmax() -> None:
    before = stage(STAGED, ["softmax"])
    after = fuse(before)
    assert after.spec["nodes"]["softmax"] == {"op": "Softmax", "inputs": ["x"], "axis": -1}
    assert [m.node for m in after.matches] == ["softmax"]
    assert_same(before, after)


@pytest.mark.parametrize("change", [
    {"summed": {"op": "Sum", "inputs": ["raised"], "axis": -1}},             # no keepdims
    {"inverted": {"op": "Pow", "inputs": ["summed", -2.0]}},                  # not -1
    {"summed": {"op": "Sum", "inputs": ["x"], "axis": -1, "keepdims": True}},  # sum of x
    {"raised": {"op": "Tanh", "inputs": ["x"]}},                              # not Exp
], ids=["no keepdims", "power -2", "sum of another value", "not exp"])
def test_what_is_not_the_staged_softmax_stays(change: dict[str, Any]) -> None:
    square = {"x": {**X, "shape": [3, 3]}}  # without keepdims, [3] broadcasts along rows
    assert fuse(stage({**STAGED, **change}, ["softmax"], inputs=square)).matches == []


def test_nll_of_softmax_becomes_a_cross_entropy_with_gradient_p_minus_y() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")  # Softmax, NLL with reduction mean
    made = optimize_spec(graph)
    fused = next(r for r in made.reports if r.name == "fuse")
    assert [m.node for m in fused.matches] == ["h1", "logits", "loss"]  # two Dense, one NLL
    nodes = made.stage.spec["nodes"]
    assert nodes["loss_logp"] == {"op": "LogSoftmax", "inputs": ["logits"], "axis": -1}
    assert not any(e["op"] == "Div" and e["inputs"][0] == "y" for e in nodes.values()), \
        "the gradient must not form -y/p"
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(7, 13)), "y": np.eye(3)[rng.integers(0, 3, 7)]}
    ex = engine.Executor(graph)
    ex.forward(feeds)
    got = engine.Executor(made.graph).forward(feeds)
    want = ex.backward()
    for tensor in ("w1", "b1", "w2", "b2"):
        np.testing.assert_allclose(got[f"d_{tensor}"], want[tensor], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("nodes, inputs", [
    ({"p": {"op": "Softmax", "inputs": ["x"], "axis": -1},
      "loss": {"op": "NLL", "inputs": ["p", "labels"]}},                 # class indices
     {"x": X, "labels": {"shape": [4], "dtype": "int64", "init": {"labels": {"classes": 3}}}}),
    ({"p": {"op": "Softmax", "inputs": ["x"], "axis": 0},                 # not the class axis
      "loss": {"op": "NLL", "inputs": ["p", "y"]}}, {"x": X, "y": {**X, "init": "one_hot"}}),
    ({"p": {"op": "Sigmoid", "inputs": ["x"]},                            # not a softmax
      "loss": {"op": "NLL", "inputs": ["p", "y"]}}, {"x": X, "y": {**X, "init": "one_hot"}}),
], ids=["class indices", "softmax over rows", "sigmoid"])
def test_nll_of_anything_else_stays(nodes: dict, inputs: dict) -> None:
    assert fuse(stage(nodes, ["loss"], inputs=inputs)).matches == []


def stable(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    shifted = x - x.max(axis=-1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return p, float(-(y * logp).sum()), p - y


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_where_the_staged_softmax_overflows_the_fused_one_is_finite() -> None:
    graph = engine.load(GRAPHS / "softmax.yaml")
    x = np.array([[1000.0, 0.0, -5.0], [1.0, 2.0, 3.0], [-800.0, 710.0, 709.0],
                  [0.5, 0.25, 0.0], [750.0, 750.0, 0.0]])
    y = np.eye(3)[[1, 2, 0, 0, 2]]
    staged = engine.Executor(graph)
    staged_out = staged.forward({"x": x, "y": y})
    assert not np.isfinite(staged_out["softmax"]).all()      # exp(1000) is inf: inf/inf NaN
    optimized = optimize(graph)
    got = engine.Executor(optimized).forward({"x": x, "y": y})
    p, loss, gradient = stable(x, y)
    np.testing.assert_allclose(got["softmax"], p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-12)
    np.testing.assert_allclose(got["d_x"], gradient, rtol=1e-12, atol=1e-15)
    assert np.isfinite(got["loss"]) and np.isfinite(got["d_x"]).all()


def test_fusion_can_be_left_out() -> None:
    made = optimize_spec(engine.load(GRAPHS / "softmax.yaml"),
                         passes=["fold", "simplify", "cse", "dce"])
    assert ops_of(made)["softmax"] == "Mul"


def ops_of(made: Any) -> dict[str, str]:
    return ops(made.stage)


def test_matmul_plus_bias_becomes_dense_bit_for_bit() -> None:
    inputs = {"x": X, "w": {"shape": [3, 2], "init": {"normal": {"std": 1.0}}},
              "b": {"shape": [2], "init": {"normal": {"std": 1.0}}}}
    before = stage({"z": {"op": "MatMul", "inputs": ["x", "w"]},
                    "h": {"op": "Add", "inputs": ["b", "z"]},
                    "a": {"op": "Relu", "inputs": ["h"]}}, ["a"], inputs=inputs)
    after = fuse(before)
    assert after.spec["nodes"] == {"h": {"op": "Dense", "inputs": ["x", "w", "b"]},
                                   "a": {"op": "Relu", "inputs": ["h"]}}
    got, want = engine.Executor(after.graph).forward(), engine.Executor(before.graph).forward()
    np.testing.assert_array_equal(got["a"], want["a"])


@pytest.mark.parametrize("outputs, extra", [
    (["h", "z"], {}),                                                  # the product is an output
    (["h", "twice"], {"twice": {"op": "Mul", "inputs": ["z", 2.0]}}),  # read by another node
], ids=["output", "read twice"])
def test_a_product_read_elsewhere_is_not_taken_into_dense(outputs: list[str],
                                                          extra: dict) -> None:
    inputs = {"x": X, "w": {"shape": [3, 2]}, "b": {"shape": [2]}}
    nodes = {"z": {"op": "MatMul", "inputs": ["x", "w"]},
             "h": {"op": "Add", "inputs": ["z", "b"]}, **extra}
    assert fuse(stage(nodes, outputs, inputs=inputs)).matches == []
