"""Ops that give a value another value's shape: SumTo, BroadcastTo, ReshapeLike; and
Squeeze, Unsqueeze and Identity.

The gradient graph needs them to say what the executor does implicitly: a
broadcast gradient summed back to its input's shape (``SumTo``), a reduced gradient
spread over the reduced axes again (``BroadcastTo``).  The target shape comes from
a second input, ``like``, whose value is never read, only its shape: a shape with
a named dimension such as ``batch`` is known only when data is fed, so it cannot
be an attribute.  ``like`` gets no gradient.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, ShapeError, format_shape, normalize_axes
from engine.ops.base import NoAttrs, OpAttrs, OpDef, float_result, register, same_shape
from engine.ops.samples import Sample, unary_samples
from engine.runtime.kernels import sum_to


def _check_broadcast(dims: Dims, small: Shape, big: Shape, what: str) -> None:
    """``small`` must broadcast to exactly ``big`` (numbers unify, names bind)."""
    if len(small) > len(big):
        raise ShapeError(f"{what}: {format_shape(small)} has more axes than {format_shape(big)}")
    for s, b in zip(small, big[len(big) - len(small):], strict=True):
        if dims.resolve(s) != 1:
            dims.unify(s, b, f"{what}: {format_shape(small)} does not broadcast to "
                             f"{format_shape(big)}")


def _sum_to_shape(attrs: NoAttrs, dims: Dims, x: Shape, like: Shape) -> Shape:
    _check_broadcast(dims, like, x, "SumTo")
    return like


def _first_float(attrs: OpAttrs, x: str, like: str) -> str:
    return float_result(attrs, x)


def _like_samples(rng: np.random.Generator, big_first: bool) -> list[Sample]:
    pairs = [((3, 4), (4,)), ((3, 4), (3, 1)), ((2, 3, 4), (3, 1)), ((3, 4), ()),
             ((3, 4), (3, 4))]
    samples = []
    for big, small in pairs:
        x, like = rng.normal(size=big), rng.normal(size=small)
        samples.append(Sample((x, like) if big_first else (like, x),
                              note=f"{big} to {small}" if big_first else f"{small} to {big}"))
    return samples


register(OpDef(
    name="SumTo", doc="x summed over the axes along which like's shape broadcasts to x's, so "
                      "that the result has like's shape (the gradient of a broadcast input).",
    attrs=NoAttrs, input_names=("x", "like"),
    forward=lambda xp, attrs, x, like: sum_to(xp, x, tuple(like.shape)),
    vjp=lambda xp, attrs, g, out, inputs, needs: (xp.broadcast_to(g, inputs[0].shape), None),
    shape=_sum_to_shape,
    dtype=_first_float,
    reference=lambda attrs, x, like: np.sum(
        x, axis=tuple(range(x.ndim - like.ndim)), keepdims=False).sum(
        axis=tuple(i for i, d in enumerate(like.shape) if d == 1), keepdims=True
    ).reshape(like.shape),
    samples=lambda rng: _like_samples(rng, True),
    differentiable=(True, False),
    convention="like's value is never read: it gets no gradient. The second derivative is "
               "BroadcastTo's.",
    vjp_uses_output=False,
))


def _broadcast_to_shape(attrs: NoAttrs, dims: Dims, x: Shape, like: Shape) -> Shape:
    _check_broadcast(dims, x, like, "BroadcastTo")
    return like


register(OpDef(
    name="BroadcastTo", doc="x repeated along broadcast axes to like's shape (the gradient of a "
                            "reduction, spread over the axes it reduced).",
    attrs=NoAttrs, input_names=("x", "like"),
    forward=lambda xp, attrs, x, like: xp.broadcast_to(x, tuple(like.shape)),
    vjp=lambda xp, attrs, g, out, inputs, needs: (sum_to(xp, g, tuple(inputs[0].shape)), None),
    shape=_broadcast_to_shape,
    dtype=_first_float,
    reference=lambda attrs, x, like: x + np.zeros(like.shape),
    samples=lambda rng: _like_samples(rng, False),
    differentiable=(True, False),
    convention="like's value is never read: it gets no gradient. The second derivative is "
               "SumTo's.",
    vjp_uses_output=False,
))


def _reshape_like_shape(attrs: NoAttrs, dims: Dims, x: Shape, like: Shape) -> Shape:
    if all(isinstance(d, int) for d in (*x, *like)) and math.prod(x) != math.prod(like):
        raise ShapeError(f"cannot reshape {format_shape(x)} ({math.prod(x)} elements) like "
                         f"{format_shape(like)} ({math.prod(like)} elements)")
    return like


register(OpDef(
    name="ReshapeLike", doc="The elements of x in like's shape (row-major order).",
    attrs=NoAttrs, input_names=("x", "like"),
    forward=lambda xp, attrs, x, like: xp.reshape(x, tuple(like.shape)),
    vjp=lambda xp, attrs, g, out, inputs, needs: (xp.reshape(g, inputs[0].shape), None),
    shape=_reshape_like_shape,
    dtype=_first_float,
    reference=lambda attrs, x, like: np.reshape(x, like.shape),
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 4)), rng.normal(size=(6, 4))),
                                note="merge axes"),
                         Sample((rng.normal(size=(12,)), rng.normal(size=(3, 4))),
                                note="split an axis")],
    differentiable=(True, False),
    convention="like's value is never read: it gets no gradient.",
    vjp_uses_output=False,
))


class AxesAttrs(OpAttrs):
    """Which size-1 axes to remove or insert (ONNX's Squeeze and Unsqueeze)."""

    axes: list[int] = Field(description="The axes: of the input for Squeeze, of the output "
                                        "for Unsqueeze; negative counts from the end.")


def _squeezed(attrs: AxesAttrs, shape: tuple) -> tuple:
    axes = normalize_axes(attrs.axes, len(shape), shape)
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _squeeze_shape(attrs: AxesAttrs, dims: Dims, x: Shape) -> Shape:
    axes = normalize_axes(attrs.axes, len(x), x)
    for axis in axes:
        dims.unify(x[axis], 1, f"axis {axis} of {format_shape(x)} has size "
                               f"{dims.resolve(x[axis])}, not 1: it cannot be squeezed")
    return _squeezed(attrs, x)


def _unsqueezed(attrs: AxesAttrs, shape: tuple) -> tuple:
    rank = len(shape) + len(attrs.axes)
    axes = normalize_axes(attrs.axes, rank)
    rest = iter(shape)
    return tuple(1 if i in axes else next(rest) for i in range(rank))


register(OpDef(
    name="Squeeze", doc="x without the listed axes, which must have size 1.",
    attrs=AxesAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.reshape(x, _squeezed(attrs, tuple(x.shape))),
    vjp=lambda xp, attrs, g, out, inputs, needs: (xp.reshape(g, inputs[0].shape),),
    shape=_squeeze_shape,
    dtype=lambda attrs, x: x,
    reference=lambda attrs, x: np.squeeze(x, axis=tuple(attrs.axes)),
    samples=lambda rng: [
        Sample((rng.normal(size=(3, 1)),), {"axes": [1]}, note="a column"),
        Sample((rng.normal(size=(1, 3, 1)),), {"axes": [0, -1]}, note="both ends"),
    ],
    vjp_uses_output=False,
))

register(OpDef(
    name="Unsqueeze", doc="x with size-1 axes inserted at the listed positions of the result.",
    attrs=AxesAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.reshape(x, _unsqueezed(attrs, tuple(x.shape))),
    vjp=lambda xp, attrs, g, out, inputs, needs: (xp.reshape(g, inputs[0].shape),),
    shape=lambda attrs, dims, x: _unsqueezed(attrs, x),
    dtype=lambda attrs, x: x,
    reference=lambda attrs, x: np.expand_dims(x, axis=tuple(attrs.axes)),
    samples=lambda rng: [
        Sample((rng.normal(size=(3,)),), {"axes": [1]}, note="a column"),
        Sample((rng.normal(size=(3, 4)),), {"axes": [0, -1]}, note="both ends"),
    ],
    vjp_uses_output=False,
))

register(OpDef(
    name="Identity", doc="x itself (names a gradient that another name already holds).",
    attrs=NoAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: x,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g,),
    shape=same_shape,
    dtype=lambda attrs, x: x,
    reference=lambda attrs, x: np.array(x, copy=True),
    samples=lambda rng: unary_samples(rng, -2.0, 2.0),
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))
