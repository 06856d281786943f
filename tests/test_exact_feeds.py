"""The executor's fast path for feeds bound exactly before (``Executor._accept_exact``): the
same names, dtypes and shapes skip the checks that depend on nothing else, and nothing more
is skipped.  Each test feeds an array that passes once, so that the fast path is armed, and
then one that differs in what the fast path must still notice.  Expected values are the
softmax cross-entropy by hand in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.errors import DataError, EngineError

SPEC = """\
name: t
inputs:
  x: {{shape: [batch, 3], dtype: {dtype}, init: ones, requires_grad: true}}
  y: {{shape: [batch], dtype: {labels}, init: {{labels: {{classes: 3}}}}}}
nodes:
  p: {{op: Softmax, inputs: [x]}}
  l: {{op: NLL, inputs: [p, y]}}
loss: l
"""
X = np.array([[0.1, 0.5, -0.3], [1.0, 0.2, 0.0], [0.3, 0.3, 0.9], [-1.0, 2.0, 0.5]])
Y = np.array([0, 2, 1, 1])


def executor(dtype: str = "float64", labels: str = "int64") -> engine.Executor:
    return engine.Executor(engine.loads(SPEC.format(dtype=dtype, labels=labels)))


def by_hand(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """NLL (NLL's default reduction, the sum) of softmax and its gradient p - onehot(y)."""
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    onehot = np.zeros_like(p)
    onehot[rows, y] = 1
    return float(-np.log(p[rows, y]).sum()), p - onehot


def test_an_array_changed_in_place_between_calls_gives_the_new_result() -> None:
    ex, x, y = executor(), X.copy(), Y.copy()
    for _ in range(2):  # the second call takes the fast path
        ex.forward({"x": x, "y": y})
        loss, grad = by_hand(x, y)
        assert ex.loss == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(ex.backward()["x"], grad, rtol=1e-12)
        x *= 3.0  # same object, dtype and shape, new values
        y[0] = 2


def test_labels_are_checked_on_every_call_with_the_same_array_object() -> None:
    ex, y = executor(), Y.copy()
    ex.forward({"x": X, "y": y})
    ex.forward({"x": X, "y": y})  # exactly as before: the fast path
    y[2] = 3  # the same array object now holds a label outside 0..2
    with pytest.raises(DataError, match=r"input 'y' .* as fed: row 2 holds label 3, but NLL "
                                        r"node 'l' .* labels count from 0"):
        ex.forward({"x": X, "y": y})


def test_a_new_dtype_under_the_same_name_and_shape_is_checked_value_by_value() -> None:
    ex = executor(dtype="float32", labels="int8")
    x32, y8 = X.astype(np.float32), Y.astype(np.int8)
    ex.forward({"x": x32, "y": y8})
    ex.forward({"x": x32, "y": y8})
    huge = X.copy()
    huge[1, 2] = 1e300  # float64 into float32: beyond its range, would become inf
    with pytest.raises(DataError, match=r"input 'x' .* declared dtype float32, fed float64, "
                                        r"whose value 1e\+300 \(index \[1, 2\]\) is beyond"):
        ex.forward({"x": huge, "y": y8})
    wide = Y.astype(np.int64)
    wide[3] = 300  # int64 into int8: does not fit
    with pytest.raises(DataError, match=r"input 'y' .* fed int64, whose value 300 \(index "
                                        r"\[3\]\) int8 cannot hold"):
        ex.forward({"x": x32, "y": wide})
    # a fitting float64 array is converted, not passed on as float64
    ex.forward({"x": X, "y": y8})
    assert ex.value("x").dtype == np.float32
    assert ex.loss == pytest.approx(by_hand(X.astype(np.float32).astype(np.float64), Y)[0],
                                    rel=1e-6)


def test_an_array_reshaped_in_place_is_checked_again() -> None:
    ex, x = executor(), np.arange(12.0).reshape(4, 3) / 10
    ex.forward({"x": x, "y": Y})
    ex.forward({"x": x, "y": Y})
    x.shape = (2, 6)  # the same array object, a shape the spec refuses
    with pytest.raises(DataError, match=r"input 'x' .* expected shape \[batch, 3\].*fed "
                                        r"\[2, 6\]: axis 1 differs"):
        ex.forward({"x": x, "y": Y[:2]})
    x.shape = (4, 3)
    ex.forward({"x": x, "y": Y})
    assert ex.loss == pytest.approx(by_hand(x, Y)[0], rel=1e-12)


def test_a_new_batch_size_binds_the_dims_again() -> None:
    ex = executor()
    ex.forward({"x": X, "y": Y})
    ex.forward({"x": X[:2], "y": Y[:2]})
    assert ex.loss == pytest.approx(by_hand(X[:2], Y[:2])[0], rel=1e-12)
    with pytest.raises(DataError, match=r"input 'y' .* expected shape \[batch\] \(batch = 2 "):
        ex.forward({"x": X[:2], "y": Y[:3]})


def test_another_name_or_a_missing_input_leaves_the_fast_path() -> None:
    ex = executor()
    ex.forward({"x": X, "y": Y})
    for feeds in ({"x": X, "z": Y}, {"x": X, "y": Y, "z": Y}):  # z beside x and y too
        with pytest.raises(DataError, match=r"cannot feed 'z': it is not declared"):
            ex.forward(feeds)
    ex.forward({"x": X})  # y takes its init, and says so
    assert ex.defaulted == ("y",)
    ex.forward({"x": X, "y": Y})
    assert ex.defaulted == ()
    ex.strict_feeds = True
    with pytest.raises(DataError, match=r"input 'y' of graph 't' was not fed"):
        ex.forward({"x": X})


def test_a_failed_forward_leaves_no_pass_to_differentiate() -> None:
    ex = executor()
    ex.forward({"x": X, "y": Y})
    ex.forward({"x": X, "y": Y})
    with pytest.raises(DataError):  # x is fed (partly written) before y is refused
        ex.forward({"x": X * 2, "y": np.array([0, 1, 5, 1])})
    with pytest.raises(EngineError, match=r"backward\(\) needs a forward\(\) first"):
        ex.backward()
    assert ex.loss is None
    ex.forward({"x": X, "y": Y})
    np.testing.assert_allclose(ex.backward()["x"], by_hand(X, Y)[1], rtol=1e-12)


def test_results_stay_read_only_and_the_start_gradient_is_not_shared_out() -> None:
    ex = executor()
    for _ in range(2):
        ex.forward({"x": X, "y": Y})
        grads = ex.backward()
        with pytest.raises(ValueError, match="read-only"):
            grads["x"][0, 0] = 1.0
        np.testing.assert_allclose(grads["x"], by_hand(X, Y)[1], rtol=1e-12)
    # an upstream gradient of 2 on the loss doubles the gradient; kept nodes still come back
    twice = ex.backward({"l": np.array(2.0)})
    np.testing.assert_allclose(twice["x"], 2 * by_hand(X, Y)[1], rtol=1e-12)
    kept = ex.backward(keep=["p"])
    np.testing.assert_allclose(kept["x"], by_hand(X, Y)[1], rtol=1e-12)
    rows = np.arange(4)
    p = np.exp(X) / np.exp(X).sum(axis=1, keepdims=True)
    expected = np.zeros_like(p)
    expected[rows, Y] = -1 / p[rows, Y]  # d sum(-log p[y]) / d p
    np.testing.assert_allclose(kept["p"], expected, rtol=1e-12)
