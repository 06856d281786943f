"""The NumPy kernels of the fast paths against plain NumPy written out by hand: the sum
over leading (batch) axes as a product with ones, and Relu's gradient without a select."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.runtime.kernels import LEADING_MIN_SIZE, numpy_sum, numpy_sum_to, relu_grad

RNG = np.random.default_rng(11)


def rows_added(x: np.ndarray, lead: int) -> np.ndarray:
    """The leading ``lead`` axes summed by a Python loop over rows, in float64."""
    flat = x.reshape(math.prod(x.shape[:lead]), -1).astype(np.float64)
    total = np.zeros(flat.shape[1])
    for row in flat:
        total = total + row
    return total.reshape(x.shape[lead:])


@pytest.mark.parametrize(("shape", "axis", "keepdims", "lead"), [
    ((10_000, 3), (0,), False, 1),  # a bias [3] under a batch
    ((2048, 10), 0, True, 1),  # a bias [1, 10]
    ((64, 8, 5), (0, 1), False, 2),
    ((64, 8, 5), (1, 0), True, 2),
    ((512, 4), (-2,), False, 1),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_sum_over_leading_axes_is_the_rows_added(shape, axis, keepdims, lead, dtype) -> None:
    x = RNG.normal(size=shape).astype(dtype)
    assert x.size >= LEADING_MIN_SIZE  # the product with ones, not ufunc.reduce
    got = numpy_sum(x, axis, keepdims)
    want = rows_added(x, lead)
    assert got.dtype == x.dtype
    assert got.shape == ((1,) * lead + shape[lead:] if keepdims else shape[lead:])
    tolerance = 1e-12 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("case", ["not leading", "transposed", "float16", "int64", "all axes"])
def test_other_sums_keep_numpys_own_reduction(case: str) -> None:
    x = RNG.normal(size=(256, 16))
    axis: int | tuple[int, ...] = (1,) if case == "not leading" else (0,)
    if case == "transposed":
        x = np.ascontiguousarray(x.T).T  # not C-ordered: no reshape without a copy
    elif case == "float16":
        x = x.astype(np.float16)
    elif case == "int64":
        x = (x * 100).astype(np.int64)
    elif case == "all axes":
        axis = (0, 1)
    np.testing.assert_array_equal(numpy_sum(x, axis), np.add.reduce(x, axis=axis))


def test_a_bias_gradient_summed_back_over_the_batch() -> None:
    g = RNG.normal(size=(5000, 7))
    np.testing.assert_allclose(numpy_sum_to(g, (7,)), rows_added(g, 1), rtol=1e-12)
    np.testing.assert_allclose(numpy_sum_to(g, (1, 7)), rows_added(g, 1)[None], rtol=1e-12)


@pytest.mark.parametrize("size", [12, 40_000])  # the select itself, and the product
def test_relu_grad_is_the_select_even_with_inf_and_nan(size: int) -> None:
    g, out = RNG.normal(size=size), RNG.normal(size=size)
    np.testing.assert_array_equal(relu_grad(g, out), np.where(out > 0, g, 0.0))
    g[[1, 2, 3]], out[[1, 2, 3]] = [np.inf, np.nan, -np.inf], [-1.0, -1.0, 1.0]
    got = relu_grad(g, out)
    np.testing.assert_array_equal(got, np.where(out > 0, g, 0.0))  # NaN only where it was kept
    assert got[1] == 0.0 and got[2] == 0.0 and got[3] == -np.inf
