"""Reductions over axes: Sum, Mean, Max.

Sum and Max take integers too and keep their input's dtype, as ONNX's ReduceSum and
ReduceMax do (NumPy would widen an int8 sum to int64, and PyTorch a uint8 one to int64
where NumPy makes it uint64: one rule for every backend).  Over an empty axis, Max is
-inf (the smallest integer for integers), as ONNX defines ReduceMax; a Mean over an
empty axis is 0/0, refused when the graph is checked.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, ShapeError, format_shape, normalize_axes, reduced_shape
from engine.ops.base import (
    FLOAT_DTYPES,
    INT_DTYPES,
    SMALL_ARRAY,
    OpAttrs,
    OpDef,
    float_result,
    register,
)
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


def _nonempty_reduce_shape(attrs: ReduceAttrs, dims: Dims, shape: Shape) -> Shape:
    """The shape rule of a reduction that has no value over no elements (Mean's 0/0)."""
    axes = normalize_axes(attrs.axis, len(shape), shape)
    empty = [a for a in axes if dims.resolve(shape[a]) == 0]
    if empty:
        raise ShapeError(f"reduces axis {empty[0]} of {format_shape(shape)}, "
                         "which has size 0: the mean of no elements is 0/0; reduce a non-empty "
                         "axis, or use Sum")
    return reduced_shape(shape, axes, attrs.keepdims)


def _number_dtype(allowed: tuple[str, ...]):
    """A reduction's dtype rule: the input's own dtype, one of ``allowed``."""
    def rule(_attrs: OpAttrs, x: str) -> str:
        if x not in allowed:
            what = "numbers or bools" if "bool" in allowed else "numbers"
            raise ShapeError(f"reduces {what}, got {x}; Cast it first")
        return x
    return rule


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
    if not needs[0]:  # an integer or bool x
        return (None,)
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
    if not needs[0]:  # an integer or bool x
        return (None,)
    return (_numpy_spread(_numpy_expand(attrs, g, x), x),)


def _sum_forward(xp, attrs, x):
    if xp.isdtype(x.dtype, "real floating"):
        return xp.sum(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims)
    return xp.sum(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims, dtype=x.dtype)


def _sum_fast_forward(xp, attrs, x):
    if x.dtype.kind != "f":
        return _sum_forward(np, attrs, x)
    return numpy_sum(x, _axes(attrs, x.ndim), attrs.keepdims)


def _sum_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        *_reduce_samples(rng),
        Sample((rng.integers(-100, 100, size=(2, 3, 4), dtype=np.int8),), {"axis": -1},
               note="int8 stays int8"),
        Sample((rng.integers(0, 50, size=(3, 4), dtype=np.uint8),), {"axis": None},
               note="uint8 stays uint8, wrapping"),
        Sample((rng.integers(-9, 9, size=(3, 4), dtype=np.int32),), {"axis": 0, "keepdims": True},
               note="int32"),
        Sample((rng.integers(2**31, 2**32 - 1, size=(3, 4), dtype=np.uint32, endpoint=True),),
               {"axis": 1}, note="uint32 stays uint32, wrapping"),
        Sample((rng.integers(2**63, 2**64 - 1, size=(2, 3), dtype=np.uint64, endpoint=True),),
               {"axis": None}, note="uint64 above 2^63, wrapping"),
        Sample((rng.normal(size=(2, 0, 3)),), {"axis": 1}, note="an empty axis sums to 0"),
    ]


register(OpDef(
    not_probabilities=True,
    name="Sum", doc="Sum over axes; integers keep their dtype (as ONNX's ReduceSum).",
    attrs=ReduceAttrs, input_names=("x",),
    forward=_sum_forward,
    vjp=_sum_vjp,
    fast_forward=_sum_fast_forward,
    fast_vjp=_sum_fast_vjp,
    shape=_reduce_shape,
    dtype=_number_dtype((*FLOAT_DTYPES, *INT_DTYPES)),
    reference=lambda attrs, x: np.add.reduce(x, axis=_axes(attrs, x.ndim), dtype=x.dtype,
                                             keepdims=attrs.keepdims),
    samples=_sum_samples,
    convention="An integer sum keeps the input's dtype and wraps around on overflow (as ONNX "
               "and NumPy with dtype=); integers get no gradient.",
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
    shape=_nonempty_reduce_shape,
    dtype=float_result,
    reference=lambda attrs, x: np.add.reduce(x, axis=_axes(attrs, x.ndim),
                                             keepdims=attrs.keepdims) / _count(attrs, x),
    samples=_reduce_samples,
    vjp_uses_output=False,
))


def _max_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    if not needs[0]:  # an integer or bool x
        return (None,)
    winners = xp.astype(x == _expand(xp, attrs, out, x), x.dtype)
    ties = xp.sum(winners, axis=_axes(attrs, x.ndim), keepdims=True)
    return (_expand(xp, attrs, g, x) * winners / ties,)


def _max_fast_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    if not needs[0]:  # an integer or bool x
        return (None,)
    winners = (x == _expand(np, attrs, out, x)).astype(x.dtype)
    ties = numpy_sum(winners, _axes(attrs, x.ndim), keepdims=True)
    return (_expand(np, attrs, g, x) * winners / ties,)


def _lowest(xp, dtype):
    """The maximum of no elements: -inf, or the dtype's smallest value (ONNX ReduceMax)."""
    if xp.isdtype(dtype, "real floating"):
        return -math.inf
    return False if xp.isdtype(dtype, "bool") else xp.iinfo(dtype).min


def _max_over_nothing(xp, attrs, x):
    """The result of a Max whose reduced axes hold no element, or None when they hold some."""
    if _count(attrs, x):
        return None
    shape = reduced_shape(tuple(x.shape), _axes(attrs, x.ndim), attrs.keepdims)
    return xp.full(shape, _lowest(xp, x.dtype), dtype=x.dtype)


def _max_forward(xp, attrs, x):
    empty = _max_over_nothing(xp, attrs, x)
    if empty is not None:
        return empty
    if xp.isdtype(x.dtype, "bool"):  # the standard's max is for numbers; of bools it is any
        return xp.any(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims)
    return xp.max(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims)


def _max_fast_forward(xp, attrs, x):
    empty = _max_over_nothing(np, attrs, x)
    return empty if empty is not None else numpy_max(x, _axes(attrs, x.ndim), attrs.keepdims)


def _max_reference(attrs: ReduceAttrs, x: np.ndarray) -> np.ndarray:
    lowest = -np.inf if x.dtype.kind == "f" else (False if x.dtype == bool else
                                                  np.iinfo(x.dtype).min)
    return np.maximum.reduce(x, axis=_axes(attrs, x.ndim), keepdims=attrs.keepdims,
                             initial=lowest)


def _max_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        *_reduce_samples(rng),
        Sample((rng.normal(size=(2, 0, 3)),), {"axis": 1}, note="an empty axis: -inf"),
        Sample((rng.normal(size=(0, 3)),), {"axis": 0, "keepdims": True},
               note="an empty axis kept: -inf"),
        Sample((rng.integers(-50, 50, size=(3, 4), dtype=np.int16),), {"axis": -1},
               note="int16"),
        Sample((rng.integers(0, 2**64 - 1, size=(3, 4), dtype=np.uint64, endpoint=True),),
               {"axis": 0}, note="uint64, above 2^63 too"),
        Sample((rng.integers(0, 60000, size=(4, 2), dtype=np.uint16),), {"axis": None},
               note="uint16"),
        Sample((np.zeros((2, 0), dtype=np.int32),), {"axis": 1},
               note="int32 over an empty axis: the smallest int32"),
        Sample((rng.uniform(size=(3, 4)) < 0.3,), {"axis": 0}, note="bool: any"),
    ]


register(OpDef(
    not_probabilities=True,
    name="Max", doc="Maximum over axes; -inf (or the smallest integer) over an empty axis.",
    attrs=ReduceAttrs, input_names=("x",),
    forward=_max_forward,
    vjp=_max_vjp,
    fast_forward=_max_fast_forward,
    fast_vjp=_max_fast_vjp,
    shape=_reduce_shape,
    dtype=_number_dtype((*FLOAT_DTYPES, *INT_DTYPES, "bool")),
    reference=_max_reference,
    samples=_max_samples,
    convention="Over an empty axis the maximum is -inf for floats, the dtype's smallest value "
               "for integers and false for bool (ONNX's ReduceMax); its gradient is empty. "
               "A tie shares the gradient equally among the tied elements (as torch.amax). "
               "Piecewise linear: its second derivative in x is 0 wherever it exists (away "
               "from ties the vjp selects the maxima, a choice constant in x).",
))
