"""Ops that select or join parts of arrays: Concat, Slice, Gather (ONNX names and attributes).

Their vjps put the gradient back where the elements came from, written with the
array API alone (concat, reshape, tensordot), never with in-place writes, so
that the gradient graph can trace them: Slice's pads with zeros, Gather's
multiplies by a one-hot matrix of the indices, so that repeated indices add.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field, model_validator

from engine.graph.shapes import Dim, Dims, Shape, ShapeError, format_shape, normalize_axes
from engine.ops.base import (
    INT_DTYPES,
    OpAttrs,
    OpDef,
    apply,
    float_result,
    integer_result,
    promoted,
    register,
)
from engine.ops.samples import Sample


class ConcatAttrs(OpAttrs):
    """The axis the inputs are joined along."""

    axis: int = Field(description="Axis to join along; every other axis must agree.")


def _concat_shape(attrs: ConcatAttrs, dims: Dims, *shapes: Shape) -> Shape:
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ShapeError("inputs must have the same rank, got "
                         + ", ".join(format_shape(s) for s in shapes))
    (axis,) = normalize_axes(attrs.axis, rank, shapes[0])
    result: list[Dim] = list(shapes[0])
    for shape in shapes[1:]:
        for i in range(rank):
            if i != axis:
                result[i] = dims.unify(result[i], shape[i], (
                    f"inputs must agree on every axis but {attrs.axis}, got "
                    + ", ".join(format_shape(s) for s in shapes)))
    along = [dims.resolve(s[axis]) for s in shapes]
    if all(isinstance(d, int) for d in along):
        result[axis] = sum(along)  # type: ignore[arg-type]
    else:
        result[axis] = dims.fresh()
    return tuple(result)


def _concat_vjp(xp, attrs, g, out, inputs, needs):
    axis = attrs.axis % g.ndim
    parts, start = [], 0
    for x, need in zip(inputs, needs, strict=True):
        stop = start + x.shape[axis]
        parts.append(g[_along(axis, slice(start, stop))] if need else None)
        start = stop
    return tuple(parts)


def _along(axis: int, index: slice) -> tuple[slice, ...]:
    """An index that applies ``index`` to ``axis`` and takes every other axis whole."""
    return (slice(None),) * axis + (index, ...)


def _concat_dtype(_attrs: OpAttrs, *dtypes: str) -> str:
    """NumPy's promotion, except that integers never become floats (uint64 with int64)."""
    if all(d in INT_DTYPES for d in dtypes):
        return integer_result(*dtypes)
    return promoted(*dtypes)


def _concat_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample((rng.normal(size=(2, 3)), rng.normal(size=(4, 3))), {"axis": 0}, note="rows"),
        Sample((rng.normal(size=(2, 3, 1)), rng.normal(size=(2, 3, 2)),
                rng.normal(size=(2, 3, 3))), {"axis": -1}, note="three inputs, last axis"),
        Sample((rng.normal(size=(4,)),), {"axis": 0}, note="one input"),
    ]


register(OpDef(
    name="Concat", doc="The inputs joined along an axis (any number of inputs, at least one).",
    attrs=ConcatAttrs, input_names=("inputs",),
    forward=lambda xp, attrs, *xs: xp.concat(xs, axis=attrs.axis),
    vjp=_concat_vjp,
    shape=_concat_shape,
    dtype=_concat_dtype,
    reference=lambda attrs, *xs: np.concatenate(xs, axis=attrs.axis),
    samples=_concat_samples,
    min_inputs=1,
    variadic=True,
    vjp_uses_output=False,
))


class SliceAttrs(OpAttrs):
    """ONNX Slice: for each listed axis, elements start, start + step, ... before end.

    Negative starts and ends count from the end of the axis; out-of-range values are
    clamped, as Python slices are, so a large end (ONNX's INT_MAX) means "to the end"."""

    starts: list[int] = Field(description="First index per axis.")
    ends: list[int] = Field(description="Index to stop before, per axis.")
    axes: list[int] | None = Field(
        default=None, description="The axes sliced; null: the first len(starts) axes.")
    steps: list[int] | None = Field(
        default=None, description="Step per axis (may be negative, not 0); null: all 1.")

    @model_validator(mode="after")
    def _consistent(self) -> SliceAttrs:
        count = len(self.starts)
        for key in ("ends", "axes", "steps"):
            value = getattr(self, key)
            if value is not None and len(value) != count:
                raise ValueError(f"{key} has {len(value)} entries, starts has {count}: give "
                                 "one entry per sliced axis")
        if self.steps is not None and 0 in self.steps:
            raise ValueError("steps must not be 0")
        return self


def _slices(attrs: SliceAttrs, rank: int, shape: Sequence[Dim] | None = None
            ) -> dict[int, slice]:
    """{axis: slice} for the sliced axes."""
    axes = attrs.axes if attrs.axes is not None else list(range(len(attrs.starts)))
    normalized = [normalize_axes(a, rank, shape)[0] for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ShapeError(f"axes {axes} repeat an axis")
    steps = attrs.steps or [1] * len(axes)
    return {a: slice(start, end, step) for a, start, end, step
            in zip(normalized, attrs.starts, attrs.ends, steps, strict=True)}


def _slice_shape(attrs: SliceAttrs, dims: Dims, shape: Shape) -> Shape:
    result = list(shape)
    for axis, cut in _slices(attrs, len(shape), shape).items():
        dim = dims.resolve(shape[axis])
        if isinstance(dim, int):
            result[axis] = len(range(*cut.indices(dim)))
        elif cut.step != 1 or cut.start != 0 or cut.stop < 2**31 - 1:
            result[axis] = dims.fresh()  # depends on the size fed; ONNX's INT_MAX keeps it
    return tuple(result)


def _slice_forward(xp, attrs, x):
    cuts = _slices(attrs, x.ndim)
    index, flips = [], []
    for axis in range(x.ndim):
        if axis not in cuts:
            index.append(slice(None))
            continue
        taken = range(*cuts[axis].indices(x.shape[axis]))
        if taken.step < 0 and taken:  # PyTorch refuses negative steps: take, then flip
            taken = taken[::-1]
            flips.append(axis)
        index.append(_in_range(taken))
    out = x[tuple(index)]
    for axis in flips:
        out = xp.flip(out, axis=axis)
    return out


def _in_range(taken: range) -> slice:
    """The positions ``taken`` (increasing) as a slice with bounds inside the axis, as the
    array API requires (it leaves clamping out-of-range bounds, which ONNX and Python do,
    unspecified)."""
    if not taken:
        return slice(0, 0)
    return slice(taken.start, taken[-1] + 1, taken.step)


def _slice_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    for axis, cut in _slices(attrs, x.ndim).items():
        g = _unslice(xp, g, axis, range(*cut.indices(x.shape[axis])), x.shape[axis])
    return (g,)


def _slice_fast_vjp(xp, attrs, g, out, inputs, needs):
    # on NumPy: zeros with the gradient written into the slice, no concatenations
    (x,) = inputs
    d_x = np.zeros(x.shape, g.dtype)
    cuts = _slices(attrs, x.ndim)
    d_x[tuple(cuts.get(axis, slice(None)) for axis in range(x.ndim))] = g
    return (d_x,)


def _unslice(xp, g, axis: int, taken: range, size: int):
    """The gradient of ``x[..., taken, ...]`` on axis ``axis`` of length ``size``: ``g``
    spread to the positions taken, zeros elsewhere (built by concatenation)."""
    if len(taken) == 0:
        return xp.zeros(_with(g.shape, axis, size), dtype=g.dtype)
    if taken.step < 0:  # the same positions in increasing order: flip the gradient
        g = xp.flip(g, axis=axis)
        taken = taken[::-1]
    step = taken.step
    if step > 1:  # interleave step - 1 zeros after each element, then drop the trailing ones
        spaced = xp.expand_dims(g, axis=axis + 1)
        gaps = xp.zeros(_with(spaced.shape, axis + 1, step - 1), dtype=g.dtype)
        spaced = xp.concat((spaced, gaps), axis=axis + 1)
        g = xp.reshape(spaced, _with(g.shape, axis, len(taken) * step))
        g = g[_along(axis, slice(0, (len(taken) - 1) * step + 1))]
    before, after = taken.start, size - (taken[-1] + 1)
    parts = [xp.zeros(_with(g.shape, axis, n), dtype=g.dtype) for n in (before, after)]
    return xp.concat((parts[0], g, parts[1]), axis=axis)


def _with(shape: Sequence[int], axis: int, size: int) -> tuple[int, ...]:
    return (*shape[:axis], size, *shape[axis + 1:])


def _slice_reference(attrs: SliceAttrs, x: np.ndarray) -> np.ndarray:
    out = np.asarray(x)
    axes = attrs.axes if attrs.axes is not None else range(len(attrs.starts))
    for axis, start, end, step in zip(axes, attrs.starts, attrs.ends,
                                      attrs.steps or [1] * len(attrs.starts), strict=True):
        picked = list(range(out.shape[axis]))[start:end:step]
        out = np.take(out, np.asarray(picked, dtype=np.int64), axis=axis)
    return out


def _slice_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.normal(size=(4, 5, 6))
    big = 2**63 - 1
    return [
        Sample((x,), {"starts": [1], "ends": [3]}, note="first axis"),
        Sample((x,), {"starts": [0, -4], "ends": [big, -1], "axes": [2, 1]},
               note="negative index, INT_MAX end"),
        Sample((x,), {"starts": [5, 0], "ends": [-big, 5], "axes": [-1, 1], "steps": [-2, 2]},
               note="negative and positive steps"),
        Sample((x,), {"starts": [3], "ends": [1], "axes": [0]}, note="empty"),
        Sample((rng.normal(size=(7,)),), {"starts": [1], "ends": [7], "steps": [3]},
               note="step 3 ending early"),
    ]


register(OpDef(
    name="Slice", doc="A strided part of x along some axes (ONNX Slice, positions as "
                      "attributes).",
    attrs=SliceAttrs, input_names=("x",),
    forward=_slice_forward,
    vjp=_slice_vjp,
    shape=_slice_shape,
    dtype=lambda attrs, x: x,
    reference=_slice_reference,
    samples=_slice_samples,
    fast_vjp=_slice_fast_vjp,
    vjp_uses_output=False,
))


class GatherAttrs(OpAttrs):
    """The axis indexed."""

    axis: int = Field(default=0, description="Axis of data that the indices pick from.")


def _gather_shape(attrs: GatherAttrs, dims: Dims, data: Shape, indices: Shape) -> Shape:
    (axis,) = normalize_axes(attrs.axis, len(data), data)
    return (*data[:axis], *indices, *data[axis + 1:])


def _gather_dtype(attrs: GatherAttrs, data: str, indices: str) -> str:
    if indices != "int64":
        raise ShapeError(f"indices must be int64 (declare them with dtype: int64), got {indices}")
    return data


def _positions(xp, indices, size: int):
    """The indices flattened to 1-D, negative ones counted from the end (as ONNX)."""
    flat = xp.reshape(indices, (-1,))
    return xp.where(flat < 0, flat + size, flat)


def _gather_forward(xp, attrs, data, indices):
    axis = attrs.axis % data.ndim
    taken = xp.take(data, _positions(xp, indices, data.shape[axis]), axis=axis)
    return xp.reshape(taken, (*data.shape[:axis], *indices.shape, *data.shape[axis + 1:]))


def _gather_vjp(xp, attrs, g, out, inputs, needs):
    # the gradients of repeated indices sum: ScatterAdd, Gather's adjoint
    data, indices = inputs
    return (apply(xp, "ScatterAdd", g, indices, data, axis=attrs.axis), None)


def _scatter_add_shape(attrs: GatherAttrs, dims: Dims, updates: Shape, indices: Shape,
                       like: Shape) -> Shape:
    gathered = _gather_shape(attrs, dims, like, indices)
    if len(updates) != len(gathered):
        raise ShapeError(f"updates {format_shape(updates)} must have the shape Gather gives "
                         f"for data {format_shape(like)} and indices {format_shape(indices)}: "
                         f"{format_shape(gathered)}")
    for u, want in zip(updates, gathered, strict=True):
        dims.unify(u, want, f"updates {format_shape(updates)} must have the shape "
                            f"{format_shape(gathered)} that Gather gives")
    return like


def _scatter_add_dtype(attrs: GatherAttrs, updates: str, indices: str, like: str) -> str:
    _gather_dtype(attrs, updates, indices)
    return float_result(attrs, updates)


def _scatter_add_forward(xp, attrs, updates, indices, like):
    axis = attrs.axis % like.ndim
    size = like.shape[axis]
    positions = _positions(xp, indices, size)
    # one_hot[k, j] = 1 where index k picks row j; contracting the updates with it sums
    # those of repeated indices, as a scatter-add does.
    one_hot = xp.astype(xp.reshape(positions, (-1, 1)) == xp.arange(size, dtype=positions.dtype),
                        updates.dtype)
    flat = xp.reshape(updates, (*like.shape[:axis], math.prod(indices.shape),
                                *like.shape[axis + 1:]))
    summed = xp.tensordot(flat, one_hot, axes=([axis], [0]))  # the indexed axis comes last
    order = (*range(axis), like.ndim - 1, *range(axis, like.ndim - 1))
    return xp.permute_dims(summed, order)


def _scatter_add_fast_forward(xp, attrs, updates, indices, like):
    # NumPy's unbuffered scatter-add, O(size of updates) rather than the one-hot product's
    axis = attrs.axis % like.ndim
    result = np.zeros(like.shape, updates.dtype)
    moved = np.moveaxis(result, axis, 0)  # a view: adding into it fills result
    np.add.at(moved, indices, np.moveaxis(updates, list(range(axis, axis + indices.ndim)),
                                          list(range(indices.ndim))))
    return result


def _scatter_add_vjp(xp, attrs, g, out, inputs, needs):
    return (apply(xp, "Gather", g, inputs[1], axis=attrs.axis), None, None)


def _scatter_add_reference(attrs: GatherAttrs, updates, indices, like):
    axis = attrs.axis % like.ndim
    result = np.zeros(like.shape)
    for position in np.ndindex(np.shape(indices)):
        row = int(np.asarray(indices)[position]) % like.shape[axis]
        source = updates[(slice(None),) * axis + position]
        target = (slice(None),) * axis + (row,)
        result[target] += source
    return result


def _scatter_add_samples(rng: np.random.Generator) -> list[Sample]:
    samples = []
    for gather in _gather_samples(rng):
        data, indices = gather.inputs
        gathered = np.take(data, indices, axis=gather.attrs["axis"])
        samples.append(Sample((rng.normal(size=gathered.shape), indices, data), gather.attrs,
                              note=gather.note))
    return samples


def _gather_fast_forward(xp, attrs, data, indices):
    return np.take(data, indices, axis=attrs.axis)  # multi-dimensional, negative indices


def _gather_fast_vjp(xp, attrs, g, out, inputs, needs):
    return (_scatter_add_fast_forward(xp, attrs, g, inputs[1], inputs[0]), None)


def _gather_samples(rng: np.random.Generator) -> list[Sample]:
    table = rng.normal(size=(6, 4))
    return [
        Sample((table, np.array([[0, 2, 2], [5, 0, 2]], dtype=np.int64)), {"axis": 0},
               note="embedding lookup, repeated rows"),
        Sample((rng.normal(size=(2, 5, 3)), np.array([4, -1, 0, 4], dtype=np.int64)),
               {"axis": 1}, note="middle axis, negative index"),
        Sample((rng.normal(size=(3, 4)), np.array(2, dtype=np.int64)), {"axis": -1},
               note="scalar index drops the axis"),
    ]


def _gather_reference(attrs: GatherAttrs, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return np.take(data, indices, axis=attrs.axis)


register(OpDef(
    name="Gather", doc="Slices of data along an axis picked by integer indices (embeddings); "
                       "the result has the indices' shape in place of that axis.",
    attrs=GatherAttrs, input_names=("data", "indices"),
    forward=_gather_forward,
    vjp=_gather_vjp,
    shape=_gather_shape,
    dtype=_gather_dtype,
    reference=_gather_reference,
    samples=_gather_samples,
    differentiable=(True, False),
    fast_forward=_gather_fast_forward,
    fast_vjp=_gather_fast_vjp,
    indexes=(1, 0),
    convention="Not differentiable in its indices. Repeated indices add their gradients "
               "(a scatter-add). The second derivative is 0 (linear in data).",
    vjp_uses_output=False,
))

register(OpDef(
    name="ScatterAdd", doc="Zeros of like's shape with the updates added at the indices along "
                           "axis (repeated indices sum): the adjoint of Gather, its gradient.",
    attrs=GatherAttrs, input_names=("updates", "indices", "like"),
    forward=_scatter_add_forward,
    vjp=_scatter_add_vjp,
    shape=_scatter_add_shape,
    dtype=_scatter_add_dtype,
    reference=_scatter_add_reference,
    samples=_scatter_add_samples,
    differentiable=(True, False, False),
    convention="Linear in the updates, whose gradient is Gather of the upstream gradient (so "
               "the second derivative is zero); like's values are never read, and neither "
               "indices nor like get a gradient.",
    fast_forward=_scatter_add_fast_forward,
    indexes=(1, 2),
    vjp_uses_output=False,
))
