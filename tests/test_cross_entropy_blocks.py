"""CrossEntropy on arrays large enough for ``by_rows`` to cut them into blocks of rows over
threads: the loss and gradient against the staged softmax and NLL written out here in
float64 (p = exp(x - max) / sum, loss = -sum(y log p), gradient p * rowsum(y) - y), on
shapes whose rows are not a multiple of the block, one row, rows wider than a BLAS dot
product stays single-threaded for, narrow rows, class indices, mean, soft targets and
float32; and the same bits for every row on any number of threads."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
from engine.runtime import kernels, parallel


@pytest.fixture(params=[1, 3], ids=["1 thread", "3 threads"])
def threads(request, monkeypatch):
    monkeypatch.setenv("ENGINE_NUM_THREADS", str(request.param))
    parallel.threads.cache_clear()
    yield request.param
    parallel.threads.cache_clear()


def executor(rows: int, cols: int, dtype: str, target: str, reduction: str) -> engine.Executor:
    """Softmax then NLL, which the optimizer fuses into one CrossEntropy."""
    shape = f"[{rows}, {cols}]" if target != "labels" else f"[{rows}]"
    kind = "int64" if target == "labels" else dtype
    graph = engine.loads(f"""
name: blocks
inputs:
  x: {{shape: [{rows}, {cols}], dtype: {dtype}, requires_grad: true}}
  y: {{shape: {shape}, dtype: {kind}}}
nodes:
  p: {{op: Softmax, inputs: [x]}}
  loss: {{op: NLL, inputs: [p, y], reduction: {reduction}}}
loss: loss
""")
    ex = engine.Executor(graph)
    assert [n.op.name for n in ex.compiled.nodes.values()] == ["CrossEntropy"]
    return ex


def staged(x: np.ndarray, y: np.ndarray, reduction: str) -> tuple[float, np.ndarray]:
    """The staged formulas in float64, y as rows of weights."""
    wide = x.astype(np.float64)
    raised = np.exp(wide - wide.max(axis=-1, keepdims=True))
    p = raised / raised.sum(axis=-1, keepdims=True)
    divisor = len(x) if reduction == "mean" else 1
    loss = -math.fsum((y * np.log(p)).ravel()) / divisor
    return loss, (p * y.sum(axis=-1, keepdims=True) - y) / divisor


def feeds(rows: int, cols: int, dtype: str, target: str, seed: int = 0
          ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """x, the fed target, and the target as rows of weights for ``staged``."""
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.normal(size=(rows, cols))).astype(dtype)
    labels = rng.integers(0, cols, size=rows)
    weights = np.zeros((rows, cols))
    weights[np.arange(rows), labels] = 1.0
    if target == "soft":  # rows that do not sum to 1: the gradient is p * rowsum(y) - y
        weights = rng.uniform(0.0, 1.0, size=(rows, cols))
    fed = labels if target == "labels" else weights.astype(dtype)
    return {"x": x, "y": fed}, weights


@pytest.mark.filterwarnings("ignore:.*not one-hot")  # the soft target, meant
@pytest.mark.parametrize("rows, cols, target, reduction", [
    (1031, 520, "one-hot", "sum"),     # rows no multiple of the 4 or 6 blocks
    (1031, 520, "labels", "mean"),
    (777, 700, "soft", "sum"),
    (1, 300_000, "one-hot", "sum"),    # one row: one block, however large
    (40, 12_000, "one-hot", "mean"),   # rows longer than a single-threaded BLAS dot
    (30_001, 10, "one-hot", "sum"),    # short rows, sums of long columns
], ids=["one-hot", "labels mean", "soft", "one row", "wide rows", "narrow rows"])
def test_blocks_give_the_staged_loss_and_gradient(threads: int, rows: int, cols: int,
                                                  target: str, reduction: str) -> None:
    assert rows * cols > parallel.PARALLEL_MIN_SIZE  # by_rows splits these
    fed, weights = feeds(rows, cols, "float64", target)
    ex = executor(rows, cols, "float64", target, reduction)
    ex.forward(fed)
    loss, gradient = staged(fed["x"], weights, reduction)
    assert ex.loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(ex.backward()["x"], gradient, rtol=1e-12,
                               atol=1e-15 * np.abs(gradient).max())


@pytest.mark.parametrize("target", ["one-hot", "labels"])
def test_float32_blocks_are_within_float32_tolerance(threads: int, target: str) -> None:
    rows, cols = 1031, 520
    fed, weights = feeds(rows, cols, "float32", target, seed=1)
    ex = executor(rows, cols, "float32", target, "mean")
    ex.forward(fed)
    loss, gradient = staged(fed["x"], weights, "mean")
    assert ex.loss == pytest.approx(loss, rel=1e-5)
    got = ex.backward()["x"]
    assert got.dtype == np.float32
    assert np.max(np.abs(got - gradient)) <= 1e-5 * np.max(np.abs(gradient))


def test_each_row_has_the_same_bits_on_any_number_of_threads(monkeypatch) -> None:
    """The rows are independent: blocks and threads change no gradient entry, only the
    order in which the blocks' losses are added."""
    rows, cols = 1031, 520
    fed, _ = feeds(rows, cols, "float64", "one-hot", seed=2)
    results = []
    for count in ("1", "2", "3"):
        monkeypatch.setenv("ENGINE_NUM_THREADS", count)
        parallel.threads.cache_clear()
        ex = executor(rows, cols, "float64", "one-hot", "sum")
        ex.forward(fed)
        results.append((ex.loss, ex.backward()["x"]))
    parallel.threads.cache_clear()
    (loss, gradient), *others = results
    for other_loss, other_gradient in others:
        np.testing.assert_array_equal(other_gradient, gradient)
        assert other_loss == pytest.approx(loss, rel=1e-13)


@pytest.mark.parametrize("shape", [(3, 5), (100, 100), (2000, 10), (30_000, 1), (4, 12_000)],
                         ids=["vdot", "dot per row", "short rows", "a column", "long rows"])
def test_sum_of_products_is_the_sum_of_the_products(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    exact = math.fsum((a * b).ravel())  # the products are exact enough; fsum adds exactly
    scale = math.fsum(np.abs(a * b).ravel())
    assert abs(float(kernels.sum_of_products(a, b)) - exact) <= 1e-14 * scale
