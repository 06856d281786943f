"""Central finite differences in float64, the independent check of every vjp.

Following Caffe's gradient checker, the tolerance scales with the magnitude of
the gradients, and samples keep away from kinks (Relu at 0) so that the
difference quotient is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.ops.base import OpDef
from engine.ops.samples import Sample
from engine.runtime.kernels import sum_to

EPS = 1e-6


def numeric_vjp(fn: Callable[..., np.ndarray], inputs: Sequence[np.ndarray], index: int,
                upstream: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d sum(upstream * fn(*inputs)) / d inputs[index], by central differences."""
    # integer inputs (indices, class labels) stay integers; only floats are perturbed
    args = [np.array(x, copy=True) if np.issubdtype(np.asarray(x).dtype, np.integer)
            else np.array(x, dtype=np.float64, copy=True) for x in inputs]
    x = args[index]
    grad = np.zeros_like(x)
    for position in np.ndindex(x.shape):
        saved = x[position]
        x[position] = saved + eps
        plus = float(np.sum(upstream * fn(*args)))
        x[position] = saved - eps
        minus = float(np.sum(upstream * fn(*args)))
        x[position] = saved
        grad[position] = (plus - minus) / (2 * eps)
    return grad


def analytic_vjp(op: OpDef, sample: Sample, upstream: np.ndarray) -> list[np.ndarray | None]:
    """The op's vjp on NumPy, summed back to each input's shape as the executor does."""
    attrs = op.attrs(**sample.attrs)
    out = op.forward(np, attrs, *sample.inputs)
    needs = tuple(op.is_differentiable(i) for i in range(len(sample.inputs)))
    parts = op.vjp(np, attrs, upstream, out, list(sample.inputs), needs)
    return [None if part is None else sum_to(np, np.asarray(part), x.shape)
            for part, x in zip(parts, sample.inputs, strict=True)]


def max_relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest error relative to the gradients' scale (never below 1)."""
    scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
    return float(np.max(np.abs(analytic - numeric), initial=0.0)) / scale
