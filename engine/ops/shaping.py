"""Ops that move elements without changing them: Reshape, Transpose; of any dtype."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field, field_validator

from engine.graph.shapes import Dim, Dims, Shape, ShapeError, format_shape, normalize_axes
from engine.ops.base import OpAttrs, OpDef, register, same_dtype
from engine.ops.samples import Sample


class ReshapeAttrs(OpAttrs):
    """The new shape, as ONNX Reshape: one entry may be -1, inferred from the element count,
    and a 0 keeps the input's dimension at that position (unless ``allowzero``)."""

    shape: list[int] = Field(max_length=64,
                             description="Target shape (at most 64 axes); at most one -1; 0 "
                                         "copies the input's dimension at that position.")
    allowzero: bool = Field(default=False, description="true: a 0 in shape is a dimension of "
                                                       "size 0, not a copy (as ONNX).")

    @field_validator("shape")
    @classmethod
    def _one_inferred(cls, shape: list[int]) -> list[int]:
        if shape.count(-1) > 1:
            raise ValueError("at most one entry of the shape may be -1")
        if any(d < -1 for d in shape):
            raise ValueError("shape entries must be >= 0, or -1 for the one inferred")
        return shape


def _copied(attrs: ReshapeAttrs) -> list[int]:
    """Positions whose 0 copies the input's dimension."""
    return [] if attrs.allowzero else [i for i, d in enumerate(attrs.shape) if d == 0]


def _reshape_shape(attrs: ReshapeAttrs, dims: Dims, shape: Shape) -> Shape:
    copied = _copied(attrs)
    if copied and copied[-1] >= len(shape):
        raise ShapeError(f"shape {attrs.shape} copies dimension {copied[-1]} (a 0), but the "
                         f"input {format_shape(shape)} has rank {len(shape)}")
    target: list[Dim] = [shape[i] if i in copied else d for i, d in enumerate(attrs.shape)]
    # Copied dimensions cancel out of the element count, so named ones (batch) may stay.
    rest = [dims.resolve(d) for i, d in enumerate(shape) if i not in copied]
    if any(isinstance(d, str) for d in rest):
        # The element count depends on data not yet fed: the -1 axis is a new dimension.
        return tuple(dims.fresh() if d == -1 else d for d in target)
    size = math.prod(rest)  # type: ignore[arg-type]
    known = math.prod(d for i, d in enumerate(attrs.shape) if d != -1 and i not in copied)
    counted = f" ({size} elements)" if not copied else f" ({size} elements besides the kept)"
    if -1 in target:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {format_shape(shape)}{counted} into "
                             f"{format_shape(target)}")
        target[target.index(-1)] = size // known
    elif known != size:
        raise ShapeError(f"cannot reshape {format_shape(shape)}{counted} into "
                         f"{format_shape(target)} ({known} elements)")
    return tuple(target)


def _target(attrs: ReshapeAttrs, shape: Sequence[int]) -> tuple[int, ...]:
    copied = _copied(attrs)
    return tuple(shape[i] if i in copied else d for i, d in enumerate(attrs.shape))


def _reshape_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample((rng.normal(size=(2, 3, 4)),), {"shape": [6, 4]}, note="merge axes"),
        Sample((rng.normal(size=(12,)),), {"shape": [3, -1]}, note="inferred axis"),
        Sample((rng.normal(size=(5,)),), {"shape": [-1, 1]}, note="the lesson's reshape(-1, 1)"),
        Sample((rng.normal(size=(2, 3, 4)),), {"shape": [0, 0, 2, -1]},
               note="ONNX's 0 keeps a dimension"),
        Sample((rng.normal(size=(2, 0, 3)),), {"shape": [3, 0, 5], "allowzero": True},
               note="allowzero: 0 is a size"),
        Sample((rng.integers(0, 200, size=(2, 3), dtype=np.uint8),), {"shape": [-1]},
               note="uint8"),
        Sample((rng.integers(2**63, 2**64 - 1, size=(3, 2), dtype=np.uint64, endpoint=True),),
               {"shape": [2, 3]}, note="uint64"),
        Sample((rng.uniform(size=(2, 3, 2)) < 0.5,), {"shape": [0, 6]}, note="bool"),
    ]


register(OpDef(
    name="Reshape", doc="The same elements in a new shape (row-major order).",
    attrs=ReshapeAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.reshape(x, _target(attrs, x.shape)),
    vjp=lambda xp, attrs, g, out, inputs, needs: (
        xp.reshape(g, inputs[0].shape) if needs[0] else None,),
    shape=_reshape_shape,
    dtype=same_dtype,
    reference=lambda attrs, x: np.asarray(x).reshape(_target(attrs, np.shape(x))),
    samples=_reshape_samples,
    vjp_uses_output=False,
))


class TransposeAttrs(OpAttrs):
    """The permutation of axes."""

    axes: list[int] | None = Field(
        default=None, description="New order of the axes; null reverses them.")


def _permutation(attrs: TransposeAttrs, rank: int, shape: Shape | None = None
                 ) -> tuple[int, ...]:
    if attrs.axes is None:
        return tuple(reversed(range(rank)))
    if len(attrs.axes) != rank:
        raise ShapeError(f"axes {attrs.axes} must list each of the {rank} axes once")
    normalize_axes(attrs.axes, rank, shape)  # refuses axes out of range and repeated axes
    return tuple(ax % rank for ax in attrs.axes)


def _transpose_shape(attrs: TransposeAttrs, dims: Dims, shape: Shape) -> Shape:
    return tuple(shape[ax] for ax in _permutation(attrs, len(shape), shape))


def _transpose_vjp(xp, attrs, g, out, inputs, needs):
    if not needs[0]:  # an integer or bool x
        return (None,)
    order = _permutation(attrs, g.ndim)
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    return (xp.permute_dims(g, inverse),)


def _transpose_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample((rng.normal(size=(3, 4)),), {}, note="matrix"),
        Sample((rng.normal(size=(2, 3, 4)),), {"axes": [1, 2, 0]}, note="rotate axes"),
        Sample((rng.normal(size=(2, 3, 4)),), {"axes": [0, -1, -2]}, note="negative axes"),
        Sample((rng.integers(-9, 9, size=(2, 3, 4), dtype=np.int32),), {"axes": [2, 0, 1]},
               note="int32"),
        Sample((rng.integers(0, 60000, size=(2, 3), dtype=np.uint16),), {"axes": [1, 0]},
               note="uint16"),
        Sample((rng.uniform(size=(3, 2)) < 0.5,), {}, note="bool"),
    ]


register(OpDef(
    name="Transpose", doc="Permute the axes.", attrs=TransposeAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.permute_dims(x, _permutation(attrs, x.ndim)),
    vjp=_transpose_vjp,
    shape=_transpose_shape,
    dtype=same_dtype,
    reference=lambda attrs, x: np.transpose(x, attrs.axes),
    samples=_transpose_samples,
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))
