"""MatMul of vectors, promoted as NumPy and ONNX do: a 1-D left operand is a row (a leading
1 axis) and a 1-D right operand a column (a trailing 1 axis), and the added axis is gone
from the result.

Expected shapes come from NumPy's documented rule and values from NumPy's einsum; the
gradients from the hand derivation d(v.M.u)/dv = M u, d/dM = outer(v, u). The registry's
samples (tests/test_ops.py) add finite-difference and second-derivative checks, and
test_onnx_export.py onnxruntime's numbers, for 1-D cases.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.transform.grad import grad

VECTORS = """\
name: vectors
dims:
  batch: 2
  k: 4
  n: 3
inputs:
  v: {shape: [k], init: {value: [1.0, -2.0, 0.5, 3.0]}, requires_grad: true}
  m: {shape: [batch, k, n], init: {normal: {mean: 0.0, std: 1.0}}, requires_grad: true}
  w: {shape: [k], init: {value: [0.5, 0.25, -1.0, 2.0]}, requires_grad: true}
  u: {shape: [batch, n], init: {normal: {mean: 0.0, std: 1.0}}}
"""


def _spec(nodes: str, outputs: str, loss: str = "") -> str:
    return f"{VECTORS}nodes:\n{nodes}outputs: [{outputs}]\n" + (f"loss: {loss}\n" if loss else "")


def test_shapes_keep_their_names_and_are_what_runs() -> None:
    text = _spec("  row: {op: MatMul, inputs: [v, m]}\n"
                 "  dot: {op: MatMul, inputs: [v, w]}\n"
                 "  back: {op: Transpose, inputs: [m], axes: [0, 2, 1]}\n"
                 "  col: {op: MatMul, inputs: [back, w]}\n", "row, dot, col")
    graph = engine.loads(text)
    assert graph.values["row"].shape == ("batch", "n")
    assert graph.values["dot"].shape == ()
    assert graph.values["col"].shape == ("batch", "n")
    ex = engine.Executor(graph)
    out = ex.forward()
    v, w, m = (np.asarray(ex.value(name)) for name in ("v", "w", "m"))
    np.testing.assert_allclose(out["row"], np.einsum("j,bjn->bn", v, m), rtol=1e-13)
    np.testing.assert_allclose(out["dot"], 0.5 - 0.5 - 0.5 + 6.0, rtol=1e-13)
    np.testing.assert_allclose(out["col"], np.einsum("bjn,j->bn", m, w), rtol=1e-13)
    assert np.shape(out["dot"]) == () and np.shape(out["row"]) == (2, 3)


@pytest.mark.parametrize(("left", "right", "where", "found"), [
    ("[3]", "[4, 2]", "row", r"\[3\] @ \[4, 2\]"),
    ("[2, 3]", "[4]", "row", r"\[2, 3\] @ \[4\]"),
    ("[3]", "[4]", "row", r"\[3\] @ \[4\]"),
])
def test_mismatched_inner_dimensions_of_vectors_are_located(left: str, right: str, where: str,
                                                            found: str) -> None:
    text = (f"name: bad\ninputs:\n  a: {{shape: {left}}}\n  b: {{shape: {right}}}\nnodes:\n"
            f"  {where}: {{op: MatMul, inputs: [a, b]}}\noutputs: [{where}]\n")
    with pytest.raises(engine.SpecError, match=rf"bad.yaml:6:3: .*node '{where}' \(MatMul\): "
                                               rf"inner dimensions differ: {found}"):
        engine.loads(text, file="bad.yaml")


def _loss_spec() -> str:
    """loss = sum((v @ M) * u) + 3 (v @ w): d/dv = sum_b M_b u_b + 3 w, d/dM_b = outer(v, u_b),
    d/dw = 3 v."""
    return _spec("  row: {op: MatMul, inputs: [v, m]}\n"
                 "  dot: {op: MatMul, inputs: [v, w]}\n"
                 "  weighted: {op: Mul, inputs: [row, u]}\n"
                 "  part: {op: Sum, inputs: [weighted]}\n"
                 "  three: {op: Mul, inputs: [dot, 3.0]}\n"
                 "  loss: {op: Add, inputs: [part, three]}\n", "loss", "loss")


def _hand_gradients(ex: engine.Executor) -> dict[str, np.ndarray]:
    v, w, m, u = (np.asarray(ex.value(name)) for name in ("v", "w", "m", "u"))
    return {"v": sum(m[b] @ u[b] for b in range(2)) + 3 * w,
            "m": np.stack([np.outer(v, u[b]) for b in range(2)]),
            "w": 3 * v}


@pytest.mark.parametrize("optimize", [False, True])
def test_the_executors_gradients_are_the_hand_derivation(optimize: bool) -> None:
    ex = engine.Executor(engine.loads(_loss_spec()), optimize=optimize)
    ex.forward()
    got = ex.backward()
    for name, want in _hand_gradients(ex).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-12, err_msg=name)


def test_the_gradient_graph_of_engine_grad_is_the_hand_derivation() -> None:
    made = grad(engine.loads(_loss_spec()), ["v", "m", "w"])
    ex = engine.Executor(made)
    out = ex.forward()
    for name, want in _hand_gradients(ex).items():
        np.testing.assert_allclose(out[made.gradients[name]], want, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_a_vector_product_plus_a_bias_is_not_fused_into_dense() -> None:
    """Dense is for rows of a batch; MatMul(v, W) + b of a vector v stays two nodes (the
    fusion pass checks ranks) and gives NumPy's numbers."""
    text = _spec("  row: {op: MatMul, inputs: [w, m]}\n"
                 "  biased: {op: Add, inputs: [row, u]}\n", "biased")
    graph = engine.loads(text)
    ex = engine.Executor(graph, optimize=True)
    out = ex.forward()
    assert "Dense" not in {step.op.name for step in ex.plan.steps}
    w, m, u = (np.asarray(ex.value(name)) for name in ("w", "m", "u"))
    np.testing.assert_allclose(out["biased"], np.einsum("j,bjn->bn", w, m) + u, rtol=1e-13)


def test_dense_of_a_vector_is_refused_where_it_is_written() -> None:
    text = ("name: d\ninputs:\n  x: {shape: [4]}\n  w: {shape: [4, 3]}\n  b: {shape: [3]}\n"
            "nodes:\n  h: {op: Dense, inputs: [x, w, b]}\noutputs: [h]\n")
    with pytest.raises(engine.SpecError, match=r"d.yaml:7:3: .*node 'h' \(Dense\): needs x and "
                                               r"w of rank 2 or more, got \[4\] @ \[4, 3\]; for "
                                               r"a vector write MatMul and Add"):
        engine.loads(text, file="d.yaml")
