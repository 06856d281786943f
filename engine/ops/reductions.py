"""Reductions over axes: Sum, Mean, Max."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, normalize_axes, reduced_shape
from engine.ops.base import SMALL_ARRAY, OpAttrs, OpDef, register
from engine.ops.samples import Sample
from engine.runtime.kernels import numpy_max, numpy_sum


class ReduceAttrs(OpAttrs):
    """Which axes to reduce and whether to keep them as size 1."""

    axis: int | list[int] | None = Field(
        default=None, description="Axis or axes to reduce; null reduces every axis.")
    keepdims: bool = Field(
        default=False, description="Keep reduced axes with size 1, so the result broadcasts "
                                   "against the input (the lesson's reshape(-1, 1)).")


def _axes(attrs: ReduceAttrs, rank: int) -> tuple[int, ...]:
    axis = attrs.axis
    return _normalized(tuple(axis) if isinstance(axis, list) else axis, rank)


@lru_cache(maxsize=1024)
def _normalized(axis: int | tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    """normalize_axes, remembered: it runs in every forward and vjp of a reduction."""
    return normalize_axes(axis, rank)


def _reduce_shape(attrs: ReduceAttrs, dims: Dims, shape: Shape) -> Shape:
    return reduced_shape(shape, normalize_axes(attrs.axis, len(shape), shape), attrs.keepdims)


def _expand(xp, attrs: ReduceAttrs, g, x):
    """The reduced gradient reshaped with kept axes, so it broadcasts against x."""
    if attrs.keepdims:  # it has them already
        return g
    axes = _axes(attrs, x.ndim)
    return xp.reshape(g, reduced_shape(tuple(x.shape), axes, True))


def _numpy_expand(attrs: ReduceAttrs, g, x):
    """``_expand`` on NumPy: the array's own ``reshape`` (``np.reshape`` dispatches in
    Python) to a shape decided once per input shape; a 0-d gradient broadcasts as it is."""
    if attrs.keepdims or g.ndim == 0:
        return g
    return g.reshape(_kept_shape(tuple(x.shape), _axes(attrs, x.ndim)))


@lru_cache(maxsize=1024)
def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return reduced_shape(shape, axes, True)


def _reduce_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.uniform(-2.0, 2.0, size=(2, 3, 4))
    settings = [
        {"axis": None}, {"axis": 0}, {"axis": -1, "keepdims": True}, {"axis": [0, 2]},
        {"axis": [1], "keepdims": True}, {"axis": None, "keepdims": True},
    ]
    samples = [Sample((x,), attrs, note=str(attrs)) for attrs in settings]
    samples.append(Sample((rng.uniform(-2.0, 2.0, size=(5, 3)),), {"axis": -1, "keepdims": True},
                          note="the lesson's row sum"))
    return samples


def _sum_vjp(xp, attrs, g, out, inputs, needs):
    # The lesson's "distribute the gradient over all input elements".
    (x,) = inputs
    return (xp.broadcast_to(_expand(xp, attrs, g, x), x.shape),)


def _numpy_spread(g, x):
    """``g`` (with kept axes) repeated over the shape of ``x``; a small one copied, which
    is cheaper than ``broadcast_to``."""
    if x.size <= SMALL_ARRAY:
        spread = np.empty(x.shape, g.dtype)
        if g.ndim == 0:  # the loss's sum: fill is cheaper than broadcasting assignment
            spread.fill(g)
        else:
            spread[...] = g
        return spread
    return np.broadcast_to(g, x.shape)


def _sum_fast_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    return (_numpy_spread(_numpy_expand(attrs, g, x), x),)


register(OpDef(
    not_probabilities=True,
    name="Sum", doc="Sum over axes.", attrs=ReduceAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.sum(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims),
    vjp=_sum_vjp,
    fast_forward=lambda xp, attrs, x: numpy_sum(x, _axes(attrs, x.ndim), attrs.keepdims),
    fast_vjp=_sum_fast_vjp,
    shape=_reduce_shape,
    reference=lambda attrs, x: np.add.reduce(x, axis=_axes(attrs, x.ndim),
                                             keepdims=attrs.keepdims),
    samples=_reduce_samples,
    vjp_uses_output=False,
))


def _count(attrs: ReduceAttrs, x) -> int:
    return math.prod(x.shape[a] for a in _axes(attrs, x.ndim))


def _mean_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    return (xp.broadcast_to(_expand(xp, attrs, g, x) / _count(attrs, x), x.shape),)


def _mean_fast_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    return (_numpy_spread(_numpy_expand(attrs, g, x) / _count(attrs, x), x),)


register(OpDef(
    not_probabilities=True,
    name="Mean", doc="Arithmetic mean over axes.", attrs=ReduceAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.mean(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims),
    vjp=_mean_vjp,
    fast_vjp=_mean_fast_vjp,
    shape=_reduce_shape,
    reference=lambda attrs, x: np.add.reduce(x, axis=_axes(attrs, x.ndim),
                                             keepdims=attrs.keepdims) / _count(attrs, x),
    samples=_reduce_samples,
    vjp_uses_output=False,
))


def _max_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    winners = xp.astype(x == _expand(xp, attrs, out, x), x.dtype)
    ties = xp.sum(winners, axis=_axes(attrs, x.ndim), keepdims=True)
    return (_expand(xp, attrs, g, x) * winners / ties,)


def _max_fast_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    winners = (x == _expand(np, attrs, out, x)).astype(x.dtype)
    ties = numpy_sum(winners, _axes(attrs, x.ndim), keepdims=True)
    return (_expand(np, attrs, g, x) * winners / ties,)


register(OpDef(
    not_probabilities=True,
    name="Max", doc="Maximum over axes.", attrs=ReduceAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.max(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims),
    vjp=_max_vjp,
    fast_forward=lambda xp, attrs, x: numpy_max(x, _axes(attrs, x.ndim), attrs.keepdims),
    fast_vjp=_max_fast_vjp,
    shape=_reduce_shape,
    reference=lambda attrs, x: np.maximum.reduce(x, axis=_axes(attrs, x.ndim),
                                                 keepdims=attrs.keepdims),
    samples=_reduce_samples,
    convention="A tie shares the gradient equally among the tied elements (as torch.amax). "
               "Piecewise linear: its second derivative in x is 0 wherever it exists (away "
               "from ties the vjp selects the maxima, a choice constant in x).",
))
