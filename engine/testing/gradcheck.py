"""Central finite differences in float64, the independent check of every derivative.

One helper, ``central_difference``, makes every numeric derivative: of an op
(``numeric_vjp``, for the registry tests), of a graph's loss (``numeric_grad``), and
along a direction (second derivatives: the difference of two gradients).  Results
are compared element by element with ``|analytic - numeric| <= atol + rtol *
|numeric|``, as ``torch.autograd.gradcheck`` does, so that an error in a small
component is not hidden by a large one elsewhere.  Samples keep away from kinks
(Relu at 0) so that the difference quotient is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.ops.base import OpDef
from engine.ops.samples import Sample
from engine.runtime.backends import to_numpy
from engine.runtime.kernels import sum_to

EPS = 1e-6
ATOL = 1e-5
RTOL = 1e-3


def central_difference(f: Callable[[np.ndarray], Any], x: np.ndarray, eps: float = EPS,
                       direction: np.ndarray | None = None) -> np.ndarray:
    """Derivatives of ``f`` at ``x`` (a float64 array) by central differences.

    Without ``direction``: ``d f / d x[i]`` for every element, ``f`` returning a scalar.
    With it: ``(f(x + eps v) - f(x - eps v)) / 2 eps``, ``f`` returning an array.
    ``f`` may keep no reference to the array it is handed.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    if direction is not None:
        plus = np.asarray(f(x + eps * direction), dtype=np.float64)
        minus = np.asarray(f(x - eps * direction), dtype=np.float64)
        return (plus - minus) / (2 * eps)
    grad = np.zeros_like(x)
    for position in np.ndindex(x.shape):
        saved = x[position]
        x[position] = saved + eps
        plus = float(f(x))
        x[position] = saved - eps
        minus = float(f(x))
        x[position] = saved
        grad[position] = (plus - minus) / (2 * eps)
    return grad


def numeric_vjp(fn: Callable[..., np.ndarray], inputs: Sequence[np.ndarray], index: int,
                upstream: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d sum(upstream * fn(*inputs)) / d inputs[index], by central differences."""
    args = [np.asarray(x) for x in inputs]

    def scalar(x: np.ndarray) -> float:
        return float(np.sum(upstream * fn(*args[:index], x, *args[index + 1:])))

    return central_difference(scalar, args[index], eps)


def sample_needs(op: OpDef, sample: Sample) -> tuple[bool, ...]:
    """Which inputs of a sample get a gradient: differentiable ones of a float dtype."""
    return tuple(op.is_differentiable(i) and np.asarray(x).dtype.kind == "f"
                 for i, x in enumerate(sample.inputs))


def analytic_vjp(op: OpDef, sample: Sample, upstream: np.ndarray) -> list[np.ndarray | None]:
    """The op's vjp on NumPy, summed back to each input's shape as the executor does."""
    attrs = op.attrs(**sample.attrs)
    out = op.forward(np, attrs, *sample.inputs)
    parts = op.vjp(np, attrs, upstream, out, list(sample.inputs), sample_needs(op, sample))
    return [None if part is None else sum_to(np, np.asarray(part), np.shape(x))
            for part, x in zip(parts, sample.inputs, strict=True)]


@dataclass(frozen=True)
class Report:
    """How one tensor's derivative compares: largest errors and the worst element."""

    name: str
    max_abs: float
    max_rel: float
    worst: tuple[int, ...]
    analytic: float
    numeric: float
    ok: bool

    def as_json(self) -> dict[str, Any]:
        return {"tensor": self.name, "max_abs_error": self.max_abs,
                "max_rel_error": self.max_rel, "worst_index": list(self.worst),
                "analytic": self.analytic, "numeric": self.numeric, "ok": self.ok}


def compare(name: str, analytic: Any, numeric: np.ndarray, atol: float = ATOL,
            rtol: float = RTOL) -> Report:
    """Element by element: ``|analytic - numeric| <= atol + rtol * |numeric|``.

    ``worst`` is the element that exceeds its own tolerance most (or comes closest)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    error = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    if error.size == 0:
        return Report(name, 0.0, 0.0, (), 0.0, 0.0, True)
    excess = np.where(np.isnan(error), np.inf, error - allowed)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), error.shape))
    relative = error / np.maximum(np.abs(numeric), np.finfo(np.float64).tiny)
    return Report(name, float(np.max(error)), float(np.max(relative)), worst,
                  float(analytic[worst]), float(numeric[worst]),
                  bool(np.all(error <= allowed)))


def max_relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest error relative to the gradients' scale (never below 1)."""
    scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
    return float(np.max(np.abs(analytic - numeric), initial=0.0)) / scale


# -- whole graphs ----------------------------------------------------------------------------

def numeric_grad(ex: Any, feeds: Mapping[str, np.ndarray], name: str, eps: float = EPS
                 ) -> np.ndarray:
    """d loss / d name of an Executor by central differences, perturbing a feed or a parameter.

    The executor's parameters and last forward pass are restored afterwards."""
    is_param = name in ex.parameters
    base = np.array(to_numpy(ex.parameters[name]) if is_param else feeds[name],
                    dtype=np.float64)

    def loss(trial: np.ndarray) -> float:
        if is_param:
            ex.parameters[name] = trial.copy()
            ex.forward(feeds)
        else:
            ex.forward({**feeds, name: trial.copy()})
        return ex.loss

    try:
        return central_difference(loss, base, eps)
    finally:
        if is_param:
            ex.parameters[name] = base
        ex.forward(feeds)


def explicit_feeds(ex: Any, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every input of the executor's graph as an array: the fed ones, and the defaults the
    others take (a forward pass is run to make them), so that perturbing one changes only it."""
    ex.forward(feeds)
    return {name: np.array(to_numpy(ex.value(name))) for name, v in ex.graph.values.items()
            if v.kind == "input"}
