"""Pattern fusion: the lesson's staged softmax becomes Softmax, Softmax into NLL becomes one
CrossEntropy whose gradient is p - y, MatMul + bias becomes Dense, and Relu of it Dense with
its activation.

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
    assert after.spec["nodes"]["softmax"] == {"op": "Softmax", "inputs": ["x"]}  # axis -1
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
    assert [m.node for m in fused.matches] == ["h1", "a1", "logits", "loss"]  # Dense, Relu, NLL
    nodes = made.stage.spec["nodes"]
    assert nodes["loss"] == {"op": "CrossEntropy", "inputs": ["logits", "y"],
                             "reduction": "mean"}
    assert nodes["a1"] == {"op": "Dense", "inputs": ["x", "w1", "b1"], "activation": "relu"}
    assert not any(e["op"] == "Div" and e["inputs"][0] == "y" for e in nodes.values()), \
        "the gradient must not form -y/p"
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(7, 13)), "y": np.eye(3)[rng.integers(0, 3, 7)]}
    ex = engine.Executor(graph, optimize=False)
    ex.forward(feeds)
    got = engine.Executor(made.graph).forward(feeds)
    want = ex.backward()
    for tensor in ("w1", "b1", "w2", "b2"):
        np.testing.assert_allclose(got[f"d_{tensor}"], want[tensor], rtol=1e-12, atol=1e-15)


LABELS = {"shape": [4], "dtype": "int64", "init": {"labels": {"classes": 3}}}
GRAD_X = {**X, "requires_grad": True}


@pytest.mark.parametrize("target, reduction", [("y", "sum"), ("labels", "mean")])
def test_nll_of_softmax_with_one_hot_rows_or_class_indices_is_cross_entropy(
        target: str, reduction: str) -> None:
    before = stage({"p": {"op": "Softmax", "inputs": ["x"], "axis": -1},
                    "loss": {"op": "NLL", "inputs": ["p", target], "reduction": reduction}},
                   ["loss"], inputs={"x": GRAD_X, "y": {**X, "init": "one_hot"},
                                     "labels": LABELS})
    after = fuse(before)
    assert after.spec["nodes"] == {"loss": {"op": "CrossEntropy", "inputs": ["x", target],
                                            **({"reduction": "mean"} if reduction == "mean"
                                               else {})}}  # the Softmax only it read is gone
    assert_same(before, after)
    fused, plain = engine.Executor(after.graph, optimize=False), \
        engine.Executor(before.graph, optimize=False)
    fused.forward(), plain.forward()
    start = {"loss": 1.0}
    np.testing.assert_allclose(fused.backward(start)["x"], plain.backward(start)["x"],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("nodes, inputs", [
    ({"p": {"op": "Softmax", "inputs": ["x"], "axis": -1},
      "loss": {"op": "NLL", "inputs": ["p", "y"]}},                     # float32 target
     {"x": X, "y": {**X, "dtype": "float32", "init": "one_hot"}}),
    ({"p": {"op": "Softmax", "inputs": ["x"], "axis": 0},                 # not the class axis
      "loss": {"op": "NLL", "inputs": ["p", "y"]}}, {"x": X, "y": {**X, "init": "one_hot"}}),
    ({"p": {"op": "Sigmoid", "inputs": ["x"]},                            # not a softmax
      "loss": {"op": "NLL", "inputs": ["p", "y"]}}, {"x": X, "y": {**X, "init": "one_hot"}}),
], ids=["another dtype", "softmax over rows", "sigmoid"])
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
    staged = engine.Executor(graph, optimize=False)
    staged_out = staged.forward({"x": x, "y": y})
    assert not np.isfinite(staged_out["softmax"]).all()      # exp(1000) is inf: inf/inf NaN
    optimized = optimize(graph)
    got = engine.Executor(optimized, optimize=False).forward({"x": x, "y": y})
    p, loss, gradient = stable(x, y)
    np.testing.assert_allclose(got["softmax"], p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-12)
    np.testing.assert_allclose(got["d_x"], gradient, rtol=1e-12, atol=1e-15)
    assert np.isfinite(got["loss"]) and np.isfinite(got["d_x"]).all()
    default = engine.Executor(graph)  # the executor's default path runs the fused graph too
    out = default.forward({"x": x, "y": y})
    np.testing.assert_allclose(out["softmax"], p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-12)
    np.testing.assert_allclose(default.backward()["x"], gradient, rtol=1e-12, atol=1e-15)


def independent_cross_entropy(x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """-sum log p[label] and its gradient, by log-sum-exp written out here in NumPy."""
    top = x.max(axis=-1, keepdims=True)
    lse = top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True))
    loss = float(-(np.take_along_axis(x, labels[:, None], axis=-1) - lse).sum())
    return loss, np.exp(x - lse) - np.eye(x.shape[-1])[labels]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype, scale", [("float64", 800.0), ("float32", 100.0)])
def test_where_the_staged_cross_entropy_overflows_with_labels_the_fused_one_is_finite(
        dtype: str, scale: float) -> None:
    """Class-index targets, float64 and float32: exp(800) and exp(100) overflow each."""
    text = f"""
name: overflow
inputs:
  x: {{shape: [4, 3], dtype: {dtype}, requires_grad: true}}
  labels: {{shape: [4], dtype: int64}}
nodes:
  raised: {{op: Exp, inputs: [x]}}
  summed: {{op: Sum, inputs: [raised], axis: -1, keepdims: true}}
  probs: {{op: Div, inputs: [raised, summed]}}
  loss: {{op: NLL, inputs: [probs, labels], reduction: sum}}
outputs: [loss]
loss: loss
"""
    graph = engine.loads(text)
    x = (scale * np.array([[1.0, 0.0, -0.5], [0.01, 0.02, 0.03], [-1.0, 1.0, 0.99],
                           [0.5, 0.5, 0.0]])).astype(dtype)
    labels = np.array([1, 2, 0, 2])
    feeds = {"x": x, "labels": labels}
    staged = engine.Executor(graph, optimize=False)
    staged.forward(feeds)
    assert not np.isfinite(staged.loss)
    fused = engine.Executor(graph)
    assert [n.op.name for n in fused.compiled.nodes.values()] == ["CrossEntropy"]
    fused.forward(feeds)
    loss, gradient = independent_cross_entropy(x.astype(np.float64), labels)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert fused.loss == pytest.approx(loss, rel=tol)
    got = fused.backward()["x"]
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, gradient, rtol=tol, atol=tol)


def test_fusion_can_be_left_out() -> None:
    made = optimize_spec(engine.load(GRAPHS / "softmax.yaml"),
                         passes=["fold", "simplify", "cse", "dce"])
    assert ops_of(made)["softmax"] == "Mul"


def ops_of(made: Any) -> dict[str, str]:
    return ops(made.stage)


def test_matmul_plus_bias_and_relu_become_dense_bit_for_bit() -> None:
    normal = {"init": {"normal": {"std": 1.0}}, "requires_grad": True}
    inputs = {"x": {**X, "requires_grad": True}, "w": {"shape": [3, 2], **normal},
              "b": {"shape": [2], **normal}}
    before = stage({"z": {"op": "MatMul", "inputs": ["x", "w"]},
                    "h": {"op": "Add", "inputs": ["b", "z"]},
                    "a": {"op": "Relu", "inputs": ["h"]}}, ["a"], inputs=inputs)
    after = fuse(before)
    assert after.spec["nodes"] == {"a": {"op": "Dense", "inputs": ["x", "w", "b"],
                                         "activation": "relu"}}
    assert [m.node for m in after.matches] == ["h", "a"]
    runs = [engine.Executor(s.graph, optimize=False) for s in (after, before)]
    got, want = (ex.forward() for ex in runs)
    np.testing.assert_array_equal(got["a"], want["a"])
    upstream = {"a": np.random.default_rng(1).normal(size=(4, 2))}
    got, want = (ex.backward(upstream) for ex in runs)
    for name in ("x", "w", "b"):  # the mask of Relu's vjp, applied inside Dense's
        np.testing.assert_array_equal(got[name], want[name])


def test_a_dense_read_elsewhere_keeps_its_relu() -> None:
    inputs = {"x": X, "w": {"shape": [3, 2]}, "b": {"shape": [2]}}
    after = fuse(stage({"h": {"op": "Dense", "inputs": ["x", "w", "b"]},
                        "a": {"op": "Relu", "inputs": ["h"]}}, ["a", "h"], inputs=inputs))
    assert after.matches == []


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


@pytest.mark.parametrize("one_hot", [False, True], ids=["class indices", "one-hot"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_float32_cross_entropy_of_large_rows_is_within_float32_tolerance(
        reduction: str, one_hot: bool) -> None:
    """4096 rows of 1024 float32 logits: the fused CrossEntropy sums in float32 (BLAS dot
    products, row chunks over threads); the staged softmax and NLL in float64, written out
    here, is the reference.  The documented float32 tolerance is 1e-5 relative."""
    rng = np.random.default_rng(11)
    rows, classes = 4096, 1024
    x = (4.0 * rng.normal(size=(rows, classes))).astype(np.float32)
    labels = rng.integers(0, classes, size=rows)
    target = np.eye(classes, dtype=np.float32)[labels] if one_hot else labels
    graph = engine.loads(f"""
name: wide
inputs:
  x: {{shape: [{rows}, {classes}], dtype: float32, requires_grad: true}}
  y: {{shape: [{rows}{f', {classes}' if one_hot else ''}], dtype: {target.dtype}}}
nodes:
  p: {{op: Softmax, inputs: [x]}}
  loss: {{op: NLL, inputs: [p, y], reduction: {reduction}}}
loss: loss
""")
    fused = engine.Executor(graph)
    assert [n.op.name for n in fused.compiled.nodes.values()] == ["CrossEntropy"]
    fused.forward({"x": x, "y": target})
    wide = x.astype(np.float64)
    raised = np.exp(wide - wide.max(axis=-1, keepdims=True))
    p = raised / raised.sum(axis=-1, keepdims=True)
    y = np.eye(classes)[labels]
    divisor = rows if reduction == "mean" else 1
    loss, gradient = -np.sum(y * np.log(p)) / divisor, (p - y) / divisor
    assert fused.loss == pytest.approx(loss, rel=1e-5)
    got = fused.backward()["x"]
    assert got.dtype == np.float32
    assert np.max(np.abs(got - gradient)) <= 1e-5 * np.max(np.abs(gradient))
