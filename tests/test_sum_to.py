"""``sum_to``: a broadcast gradient summed back to its input's shape, against np.sum by hand."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from engine.graph.shapes import ShapeError
from engine.runtime.kernels import sum_to

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(("grad_shape", "shape", "by_hand"), [
    ((16, 3), (3,), lambda g: g.sum(axis=0)),  # a bias under a batch: leading axis only
    ((16, 10), (1, 10), lambda g: g.sum(axis=0, keepdims=True)),
    ((5, 3), (5, 1), lambda g: g.sum(axis=1, keepdims=True)),  # the lesson's row sum
    ((2, 3, 4), (3, 1), lambda g: g.sum(axis=0).sum(axis=1, keepdims=True)),  # both kinds
    ((2, 3), (), lambda g: g.sum()),
    ((4, 3), (4, 3), lambda g: g),
])
def test_sum_to_matches_sums_by_hand(grad_shape, shape, by_hand) -> None:
    grad = RNG.normal(size=grad_shape)
    for _ in range(2):  # the second call takes the remembered reduction
        summed = sum_to(np, grad, shape)
        assert summed.shape == shape
        np.testing.assert_allclose(summed, by_hand(grad), rtol=1e-14, atol=1e-14)
    strict = sum_to(array_api_strict, array_api_strict.asarray(grad), shape)
    np.testing.assert_allclose(np.asarray(strict), by_hand(grad), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(("grad_shape", "shape"), [((5, 1), (5, 3)), ((3,), (2, 3)),
                                                   ((4, 3), (4, 2))])
def test_sum_to_refuses_a_gradient_that_is_no_broadcast(grad_shape, shape) -> None:
    for _ in range(2):  # a refusal is not remembered as an answer
        with pytest.raises(ShapeError, match="is no broadcast of its input's shape"):
            sum_to(np, np.zeros(grad_shape), shape)
