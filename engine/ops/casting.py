"""Cast (a value in another dtype) and Count (how many elements some axes hold).

Derivatives need both: Max's gradient turns a bool mask into floats, and Mean's
and NLL's gradients divide by an element count that a named dimension such as
``batch`` leaves unknown until data is fed.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, normalize_axes
from engine.ops.base import FLOAT_DTYPES, OpAttrs, OpDef, register, same_shape
from engine.ops.samples import Sample, unary_samples


class CastAttrs(OpAttrs):
    """The dtype to convert to (ONNX's ``to``)."""

    to: Literal["float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8",
                "uint16", "uint32", "uint64", "bool"] = Field(
        description="The result's dtype. A float cast to an integer is truncated toward 0; "
                    "NaN, inf or a value outside the integer's range has no defined result "
                    "(NumPy and PyTorch differ).")


def _cast_vjp(xp, attrs, g, out, inputs, needs):
    (x,) = inputs
    if not needs[0]:  # a bool or integer input wants no gradient
        return (None,)
    if attrs.to in FLOAT_DTYPES:
        return (xp.astype(g, x.dtype),)
    return (xp.zeros_like(x),)  # a cast to an integer or bool is piecewise constant


def _cast_samples(rng: np.random.Generator) -> list[Sample]:
    # float64 results only: a float32 result would blur the finite differences of the tests
    samples = [Sample(s.inputs, {"to": "float64"}, note=f"to float64, {s.note}")
               for s in unary_samples(rng, -2.0, 2.0)[:2]]
    samples.append(Sample((rng.uniform(size=(3, 4)) < 0.5,), {"to": "float64"},
                          note="bool mask to float64"))
    samples.append(Sample((rng.normal(size=(3,)),), {"to": "int64"}, note="float64 to int64"))
    samples.append(Sample((rng.uniform(0, 250, size=(2, 3)),), {"to": "uint8"},
                          note="float64 to uint8"))
    samples.append(Sample((rng.integers(-100, 100, size=(4,), dtype=np.int16),), {"to": "int8"},
                          note="int16 to int8"))
    samples.append(Sample((rng.integers(-3, 3, size=(2, 2), dtype=np.int32),), {"to": "bool"},
                          note="int32 to bool"))
    samples.append(Sample((rng.uniform(size=(3,)) < 0.5,), {"to": "int32"}, note="bool to int32"))
    samples.append(Sample((rng.integers(0, 9, size=(3,), dtype=np.uint8),), {"to": "float64"},
                          note="uint8 to float64"))
    samples.append(Sample((rng.uniform(0, 60000, size=(2, 3)),), {"to": "uint16"},
                          note="float64 to uint16"))
    samples.append(Sample((rng.integers(0, 2**32 - 1, size=(4,), dtype=np.uint32),),
                          {"to": "int64"},
                          note="uint32 to int64"))
    samples.append(Sample((rng.integers(0, 2**40, size=(3,), dtype=np.int64),), {"to": "uint64"},
                          note="int64 to uint64"))
    return samples


register(OpDef(
    name="Cast", doc="x converted to the dtype `to`.",
    attrs=CastAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.astype(x, getattr(xp, attrs.to)),
    vjp=_cast_vjp,
    shape=same_shape,
    dtype=lambda attrs, x: attrs.to,
    reference=lambda attrs, x: np.asarray(x).astype(attrs.to),
    samples=_cast_samples,
    convention="Between float dtypes the gradient is cast back to the input's dtype; a cast to "
               "an integer or bool is piecewise constant, so its gradient and second "
               "derivative are zero; an integer or bool input gets no gradient.",
    vjp_uses_output=False,
))


class CountAttrs(OpAttrs):
    """Which axes to count."""

    axis: int | list[int] | None = Field(
        default=None, description="Axis or axes whose sizes are multiplied; null: all.")


def _count(attrs: CountAttrs, shape: tuple) -> int:
    axis = tuple(attrs.axis) if isinstance(attrs.axis, list) else attrs.axis
    return math.prod(shape[a] for a in normalize_axes(axis, len(shape)))


def _count_shape(attrs: CountAttrs, dims: Dims, x: Shape) -> Shape:
    axis = tuple(attrs.axis) if isinstance(attrs.axis, list) else attrs.axis
    normalize_axes(axis, len(x), x)
    return ()


def _count_forward(xp, attrs, x):
    dtype = x.dtype if xp.isdtype(x.dtype, "real floating") else xp.float64
    return xp.asarray(_count(attrs, tuple(x.shape)), dtype=dtype)


register(OpDef(
    not_probabilities=True,  # a count of elements
    name="Count", doc="The number of elements along the given axes of x (the product of their "
                      "sizes), as a scalar of x's float dtype; x's values are not read.",
    attrs=CountAttrs, input_names=("x",),
    forward=_count_forward,
    vjp=lambda xp, attrs, g, out, inputs, needs: (None,),
    shape=_count_shape,
    dtype=lambda attrs, x: x if x in FLOAT_DTYPES else "float64",
    reference=lambda attrs, x: np.asarray(float(_count(attrs, np.shape(x)))),
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 4)),), {"axis": a}, note=f"axis {a}")
                         for a in (None, 0, [1, 2], -1)],
    differentiable=(False,),
    convention="Depends on x's shape only: no gradient, and a zero second derivative.",
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))
