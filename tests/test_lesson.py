"""The lesson (shared/seed/backprop_lesson.md), reproduced number for number by the engine.

Expected values come from the lesson's own NumPy code and formulas, never from
the engine's earlier output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import engine

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"


def lesson_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y made the way the lesson makes them."""
    rng = np.random.default_rng(seed)
    x = rng.random((5, 3))
    y = np.zeros_like(x)
    y[np.arange(5), rng.integers(0, 3, size=5)] = 1
    return x, y


def lesson_backward(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The lesson's staged forward and backward code, as written there."""
    raised = np.exp(x)
    summed = np.sum(raised, axis=-1).reshape(-1, 1)
    pow_ = summed ** -1
    softmax = raised * pow_
    loss_grad = -1 * y / softmax
    raised_grad = loss_grad * pow_
    pow_grad = loss_grad * raised
    pow_grad = np.sum(pow_grad, axis=-1).reshape(-1, 1)
    summed_grad = (-1 * summed ** -2) * pow_grad
    raised_grad_2 = np.ones_like(raised) * summed_grad
    raised_grad += raised_grad_2
    x_grad = raised_grad * np.exp(x)
    return {"softmax": softmax, "loss_grad": loss_grad, "raised": raised_grad,
            "inverted": pow_grad, "summed": summed_grad, "x": x_grad}


@pytest.fixture(params=[0, 1, 2])
def run(request: pytest.FixtureRequest) -> tuple[engine.Executor, np.ndarray, np.ndarray]:
    x, y = lesson_data(request.param)
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    ex.forward({"x": x, "y": y})
    return ex, x, y


def test_softmax_is_exp_over_row_sum(run) -> None:
    ex, x, _ = run
    np.testing.assert_allclose(ex.value("softmax"), np.exp(x) / np.exp(x).sum(axis=1,
                                                                                keepdims=True),
                               rtol=1e-14)


def test_loss_is_negative_log_likelihood(run) -> None:
    ex, x, y = run
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert ex.loss == pytest.approx(-np.sum(y * np.log(p)), rel=1e-14)


def test_x_gradient_equals_the_lessons_staged_backward(run) -> None:
    ex, x, y = run
    grads = ex.backward()
    np.testing.assert_allclose(grads["x"], lesson_backward(x, y)["x"], rtol=1e-12, atol=1e-15)


def test_intermediate_gradients_equal_the_lessons(run) -> None:
    """The summed gradient on raised and the reshaped pow_grad, each as the lesson computes it."""
    ex, x, y = run
    lesson = lesson_backward(x, y)
    grads = ex.backward(keep=["softmax", "raised", "inverted", "summed"])
    np.testing.assert_allclose(grads["softmax"], lesson["loss_grad"], rtol=1e-14)
    np.testing.assert_allclose(grads["raised"], lesson["raised"], rtol=1e-12, atol=1e-15)
    assert grads["inverted"].shape == (5, 1)
    np.testing.assert_allclose(grads["inverted"], lesson["inverted"], rtol=1e-12)
    np.testing.assert_allclose(grads["summed"], lesson["summed"], rtol=1e-12)


def test_x_gradient_equals_the_jacobian_formula(run) -> None:
    """dS_i/dx_j = S_i (delta_ij - S_j), applied row by row to the upstream -y/p."""
    ex, x, y = run
    s = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    upstream = -y / s
    expected = np.stack([
        (np.diag(row) - np.outer(row, row)) @ g for row, g in zip(s, upstream, strict=True)
    ])
    np.testing.assert_allclose(ex.backward()["x"], expected, rtol=1e-12, atol=1e-15)


def test_x_gradient_is_p_minus_y(run) -> None:
    ex, x, y = run
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ex.backward()["x"], p - y, rtol=1e-12, atol=1e-15)


def test_backward_from_an_upstream_gradient_at_softmax(run) -> None:
    ex, x, y = run
    lesson = lesson_backward(x, y)
    grads = ex.backward({"softmax": lesson["loss_grad"]})
    np.testing.assert_allclose(grads["x"], lesson["x"], rtol=1e-12, atol=1e-15)


def test_stable_softmax_gives_the_same_result_and_survives_large_inputs() -> None:
    x, y = lesson_data(3)
    plain = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    stable = engine.Executor(engine.load(GRAPHS / "softmax_stable.yaml"))
    plain.forward({"x": x, "y": y})
    stable.forward({"x": x, "y": y})
    np.testing.assert_allclose(stable.value("softmax"), plain.value("softmax"), rtol=1e-14)
    np.testing.assert_allclose(stable.backward()["x"], plain.backward()["x"], atol=1e-14)
    big = x + 1000.0  # exp(1000) overflows float64; subtracting the row max avoids it
    out = stable.forward({"x": big, "y": y})
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["softmax"], p, rtol=1e-12)
    np.testing.assert_allclose(stable.backward()["x"], p - y, atol=1e-12)


def test_default_data_is_the_lessons_kind() -> None:
    """Without feeds, x is uniform in [0, 1) and y has exactly one 1 per row."""
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    ex.forward()
    x, y = ex.value("x"), ex.value("y")
    assert x.shape == (5, 3) and ((x >= 0) & (x < 1)).all()
    np.testing.assert_array_equal(y.sum(axis=1), np.ones(5))
    assert set(np.unique(y)) <= {0.0, 1.0}
