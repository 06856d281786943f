"""NLL where a class the target gives weight 0 has probability exactly 0.

The convention (README, Ops: NLL): such a class adds no term, 0 log 0 = 0, and its gradient
-y/p is 0, not NaN; ONNX's NegativeLogLikelihoodLoss and PyTorch's nll_loss pick only the
target's entry and never read the others.  Expected values are derived by hand: the loss is
-sum over rows of w[t] log p[t], its gradient -w[t] / p[t] at each row's target and 0 elsewhere.
Every path is checked: the default (optimized) executor and its NumPy fast path, small and
large, the plain path (optimize=False), the gradient graph of ``engine grad``, and the ONNX
export run by onnxruntime.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

import engine

SPEC = """\
name: zeros
inputs:
  p: {{shape: [{rows}, {classes}], requires_grad: true}}
  y: {{shape: [{target}], dtype: {dtype}}}
constants:
  w: {weight}
nodes:
  loss: {{op: NLL, inputs: [p, y{extra}], reduction: {reduction}{ignore}}}
loss: loss
"""

#: Each row has a 0 in a column its target does not pick.
PROBS = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75], [0.2, 0.0, 0.8], [0.0, 0.0, 1.0]])
LABELS = np.array([0, 2, 0, 1])  # row 3 picks a class of probability 0 unless it is ignored


def _graph(reduction: str = "sum", one_hot: bool = True, weight: list[float] | None = None,
           ignore: int | None = None, rows: int = 3, classes: int = 3) -> engine.Graph:
    text = SPEC.format(
        rows=rows, classes=classes, reduction=reduction,
        target=f"{rows}, {classes}" if one_hot else f"{rows}",
        dtype="float64" if one_hot else "int64",
        weight=weight if weight is not None else [1.0] * classes,
        extra=", w" if weight is not None else "",
        ignore="" if ignore is None else f", ignore_index: {ignore}")
    return engine.loads(textwrap.dedent(text), file="zeros.yaml")


def _by_hand(probs: np.ndarray, labels: np.ndarray, weight: np.ndarray, ignore: int | None,
             reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """(loss, d loss / d p): only each row's target entry is read."""
    losses, grad, total_weight = [], np.zeros_like(probs), 0.0
    for row, label in enumerate(labels):
        if label == ignore:
            losses.append(0.0)
            continue
        losses.append(-weight[label] * math.log(probs[row, label]))
        grad[row, label] = -weight[label] / probs[row, label]
        total_weight += weight[label]
    if reduction == "none":
        return np.array(losses), grad
    if reduction == "mean":
        return np.asarray(sum(losses) / total_weight), grad / total_weight
    return np.asarray(sum(losses)), grad


def _paths(graph: engine.Graph, feeds: dict[str, np.ndarray]):
    """(path name, loss, gradient of p) for the executor's two paths and engine grad's graph."""
    for optimize in (True, False):
        ex = engine.Executor(graph, optimize=optimize)
        ex.forward(feeds)
        yield f"executor optimize={optimize}", ex.loss, ex.backward()["p"]
    backward = engine.grad(graph, wrt=["p"])
    for optimize in (True, False):
        out = engine.Executor(backward, optimize=optimize).forward(feeds)
        yield f"engine grad optimize={optimize}", None, out[backward.gradients["p"]]


@pytest.mark.parametrize("one_hot", [True, False], ids=["one-hot", "class indices"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_a_zero_probability_off_the_target_adds_nothing(one_hot: bool, reduction: str) -> None:
    probs, labels = PROBS[:3], LABELS[:3]
    target = np.eye(3)[labels] if one_hot else labels
    want_loss, want_grad = _by_hand(probs, labels, np.ones(3), None, reduction)
    for path, loss, grad in _paths(_graph(reduction, one_hot), {"p": probs, "y": target}):
        if loss is not None:
            assert loss == pytest.approx(float(want_loss), rel=1e-13), path
        np.testing.assert_allclose(grad, want_grad, rtol=1e-13, err_msg=path)


def test_a_zero_class_weight_and_an_ignored_row_read_no_probability() -> None:
    """Class 1 weighs 0 (row 2's p is 0 there) and row 3 is ignored (its label's p is 0)."""
    weight = [2.0, 0.0, 0.5]
    graph = _graph("mean", one_hot=False, weight=weight, ignore=1, rows=4)
    want_loss, want_grad = _by_hand(PROBS, LABELS, np.array(weight), 1, "mean")
    for path, loss, grad in _paths(graph, {"p": PROBS, "y": LABELS}):
        if loss is not None:
            assert loss == pytest.approx(float(want_loss), rel=1e-13), path
        np.testing.assert_allclose(grad, want_grad, rtol=1e-13, err_msg=path)


def test_reduction_none_gives_finite_rows() -> None:
    graph = engine.loads(textwrap.dedent("""\
        name: rows
        inputs:
          p: {shape: [3, 3]}
          y: {shape: [3], dtype: int64}
        nodes:
          l: {op: NLL, inputs: [p, y], reduction: none}
        outputs: [l]
        """), file="rows.yaml")
    want, _ = _by_hand(PROBS[:3], LABELS[:3], np.ones(3), None, "none")
    for optimize in (True, False):
        got = engine.Executor(graph, optimize=optimize).forward({"p": PROBS[:3],
                                                                 "y": LABELS[:3]})["l"]
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_the_large_fast_path_agrees() -> None:
    """Above the fast path's small-array size NLL sums by einsum: zeros off the target too."""
    rows, classes = 64, 512
    rng = np.random.default_rng(5)
    labels = rng.integers(0, classes, size=rows)
    probs = rng.uniform(0.1, 1.0, size=(rows, classes))
    probs[rng.uniform(size=probs.shape) < 0.3] = 0.0
    probs[np.arange(rows), labels] = rng.uniform(0.1, 1.0, size=rows)
    want_loss, want_grad = _by_hand(probs, labels, np.ones(classes), None, "sum")
    graph = _graph("sum", one_hot=True, rows=rows, classes=classes)
    ex = engine.Executor(graph)
    ex.forward({"p": probs, "y": np.eye(classes)[labels]})
    assert ex.loss == pytest.approx(float(want_loss), rel=1e-12)
    np.testing.assert_allclose(ex.backward()["p"], want_grad, rtol=1e-13)


def test_a_target_class_of_probability_zero_is_an_infinite_loss_not_nan() -> None:
    probs, labels = PROBS, LABELS  # row 3 picks class 1, whose probability is 0
    with np.errstate(divide="ignore"):
        for path, loss, grad in _paths(_graph(one_hot=False, rows=4), {"p": probs, "y": labels}):
            if loss is not None:
                assert loss == math.inf, path
            assert grad[3, 1] == -math.inf and not np.isnan(grad).any(), path


def test_the_onnx_export_reads_no_probability_off_the_target() -> None:
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from engine.onnx.export import export

    probs, labels = PROBS[:3], LABELS[:3]
    want_loss, want_grad = _by_hand(probs, labels, np.ones(3), None, "sum")
    made = export(_graph("sum", one_hot=True), with_gradients=True)
    session = ort.InferenceSession(made.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"p": probs, "y": np.eye(3)[labels]}), strict=True))
    assert got["loss"] == pytest.approx(float(want_loss), rel=1e-13)
    np.testing.assert_allclose(got[made.gradients["p"]], want_grad, rtol=1e-13)
