"""Piecewise-linear ops with kinks: Abs, Clip, Maximum, Minimum.

At a kink the derivative does not exist; each op states in its ``convention``
which subgradient it returns there (the one PyTorch and JAX return), and its
samples keep away from the kinks so that finite differences are meaningful.
Clip, Maximum and Minimum also take integers (as ONNX's Clip, Max and Min), which,
as everywhere in the engine, get no gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from engine.graph.shapes import ShapeError
from engine.ops.base import (
    FLOAT_DTYPES,
    INT_DTYPES,
    OpAttrs,
    OpDef,
    number_result,
    register,
    same_shape,
)
from engine.ops.samples import BROADCAST_PAIRS, Sample, away_from_kink, integer_pairs
from engine.ops.standard import binary_op, unary_op


def _abs_vjp(xp, attrs, g, out, inputs, needs):
    return (g * xp.sign(inputs[0]),)


unary_op(
    "Abs", "Absolute value of each element.",
    forward=lambda xp, attrs, x: xp.abs(x),
    ufunc=np.abs,
    vjp=_abs_vjp,
    reference=lambda attrs, x: np.sqrt(x * x),
    domain=(-2.0, 2.0), uses_input=True, uses_output=False,
    samples=away_from_kink,
    convention="Abs'(0) = 0 (sign(0)), as in PyTorch and JAX. The second derivative is 0 "
               "wherever it exists.",
)


class ClipAttrs(OpAttrs):
    """The bounds; either may be left out (no bound on that side)."""

    min: float | None = Field(default=None, description="Lower bound; null: none.")
    max: float | None = Field(default=None, description="Upper bound; null: none.")

    @field_validator("min", "max", mode="before")
    @classmethod
    def _exact(cls, bound: Any) -> Any:
        """A whole number a float64 cannot hold (2^53 + 1) would be rounded silently."""
        if isinstance(bound, int) and not isinstance(bound, bool) and float(bound) != bound:
            raise ValueError(f"{bound} is an integer that a float64 bound cannot hold exactly; "
                             "the bounds are float64 numbers")
        return bound

    @model_validator(mode="after")
    def _ordered(self) -> ClipAttrs:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


def clip_bounds(attrs: ClipAttrs, info: Any) -> tuple[float | int | None, float | int | None]:
    """The bounds that limit anything.  For integers (``info``: the dtype's ``iinfo``; None
    for floats) they are Python integers, exact at any width, and a bound beyond the dtype's
    range, which no element crosses, is left out (it could not be written in the dtype);
    ``_clip_dtype`` has refused fractional bounds and bounds no element could take."""
    if info is None:
        return attrs.min, attrs.max
    low = None if attrs.min is None or attrs.min <= info.min else int(attrs.min)
    high = None if attrs.max is None or attrs.max >= info.max else int(attrs.max)
    return low, high


def _clip_forward(xp, attrs, x):
    integral = xp.isdtype(x.dtype, "integral")
    low, high = clip_bounds(attrs, xp.iinfo(x.dtype) if integral else None)
    # compared as arrays of x's dtype: JAX reads a bare Python int as int64, which 2^63 on
    # uint64 overflows
    if low is not None:
        low_array = xp.full_like(x, low)
        x = xp.where(x < low_array, low_array, x)
    if high is not None:
        high_array = xp.full_like(x, high)
        x = xp.where(x > high_array, high_array, x)
    return x


def _clip_vjp(xp, attrs, g, out, inputs, needs):
    if not needs[0]:  # an integer x: no gradient
        return (None,)
    x = inputs[0]
    passes = xp.ones_like(x)
    if attrs.min is not None:
        passes = xp.where(x < attrs.min, xp.zeros_like(x), passes)
    if attrs.max is not None:
        passes = xp.where(x > attrs.max, xp.zeros_like(x), passes)
    return (g * passes,)


def _clip_dtype(attrs: ClipAttrs, x: str) -> str:
    """x's dtype: a float, or an integer when the bounds are integers that the result can
    hold (NumPy would turn int8 clipped to 2.5 into float64; ONNX's bounds are x's dtype)."""
    if x in FLOAT_DTYPES:
        return x
    if x not in INT_DTYPES:
        raise ShapeError(f"needs numbers, got {x}; Cast it to an integer or float dtype")
    info = np.iinfo(x)
    for name, bound in (("min", attrs.min), ("max", attrs.max)):
        if bound is not None and not float(bound).is_integer():
            raise ShapeError(f"{name} {bound} is not an integer, and x is {x}: write a whole "
                             f"number, or Cast x to a float dtype")
    too_high = attrs.min is not None and attrs.min > info.max
    if too_high or (attrs.max is not None and attrs.max < info.min):
        raise ShapeError(f"bounds min {attrs.min}, max {attrs.max} leave no {x} value "
                         f"(its range is {info.min} to {info.max}): Cast x to a wider dtype")
    return x


def _clip_reference(attrs: ClipAttrs, x: np.ndarray) -> np.ndarray:
    """np.clip with infinite bounds for the missing ones, in floats, back in x's dtype."""
    low = -np.inf if attrs.min is None else attrs.min
    high = np.inf if attrs.max is None else attrs.max
    return np.clip(x.astype(np.float64), low, high).astype(x.dtype)


def _clip_samples(rng: np.random.Generator) -> list[Sample]:
    # values in bands away from the bounds -1 and 1, so each element is clearly in or out
    def banded(shape: tuple[int, ...]) -> np.ndarray:
        bands = np.array([-2.0, 0.0, 2.0])[rng.integers(0, 3, size=shape)]
        return bands + rng.uniform(-0.8, 0.8, size=shape)

    return [
        Sample((banded((3, 4)),), {"min": -1.0, "max": 1.0}, note="both bounds"),
        Sample((banded((2, 3, 4)),), {"min": -1.0}, note="lower bound only"),
        Sample((banded((5,)),), {"max": 1.0}, note="upper bound only"),
        Sample((banded(()),), {"min": -1.0, "max": 1.0}, note="a scalar"),
        Sample((rng.integers(-5, 6, size=(3, 4), dtype=np.int8),), {"min": -2.0, "max": 3.0},
               note="int8"),
        Sample((rng.integers(0, 256, size=(2, 5), dtype=np.uint8),),
               {"min": -7.0, "max": 200.0}, note="uint8, min below its range"),
        Sample((rng.integers(-9, 10, size=(6,), dtype=np.int64),), {"min": 0.0, "max": 1e19},
               note="int64, max above its range"),
        Sample((rng.integers(0, 1000, size=(2, 3), dtype=np.uint16),), {"min": 100.0, "max": 900.0},
               note="uint16"),
        Sample((rng.integers(2**62, 2**64 - 1, size=(4,), dtype=np.uint64, endpoint=True),),
               {"min": 2.0**63}, note="uint64, min 2^63"),
        Sample((rng.integers(-300, 301, size=(2, 4), dtype=np.int16),),
               {"min": -100.0, "max": 250.0}, note="int16 (onnxruntime: no int16 Clip)"),
    ]


register(OpDef(
    name="Clip", doc="Each element limited to [min, max] (ONNX Clip, bounds as attributes).",
    attrs=ClipAttrs, input_names=("x",),
    forward=_clip_forward,
    vjp=_clip_vjp,
    shape=same_shape,
    dtype=_clip_dtype,
    reference=_clip_reference,
    samples=_clip_samples,
    convention="The gradient passes where min <= x <= max, bounds included (as PyTorch's "
               "clamp), and is 0 outside. The second derivative is 0.",
    vjp_uses_output=False,
))


def _extremum_samples(rng: np.random.Generator) -> list[Sample]:
    # a = integer + [0, 0.3], b = integer + [0.5, 0.8]: never closer than 0.2, so no element
    # is near a tie, and either may be the larger.
    def draw(shape: tuple[int, ...], offset: float) -> np.ndarray:
        return rng.integers(-2, 3, size=shape) + offset + rng.uniform(0.0, 0.3, size=shape)

    return [*(Sample((draw(a, 0.0), draw(b, 0.5)), note=f"{a} with {b}")
              for a, b in BROADCAST_PAIRS), *integer_pairs(rng)]


def _extremum_vjp(pick_a):
    """Vjp of Maximum (``pick_a`` is >) or Minimum (<): a tie splits the gradient in half."""
    def vjp(xp, attrs, g, out, inputs, needs):
        if not any(needs):  # integers: no gradient
            return (None, None)
        a, b = inputs
        chosen = xp.astype(pick_a(a, b), g.dtype)
        share = chosen + xp.astype(a == b, g.dtype) / 2  # a's part of the gradient
        return (g * share if needs[0] else None, g * (1 - share) if needs[1] else None)
    return vjp


_TIE = ("A tie gives each input half of the gradient (as PyTorch and JAX). The second "
        "derivative is 0 wherever it exists.")

binary_op(
    "Maximum", "The larger of a and b, elementwise, broadcasting.",
    forward=lambda xp, attrs, a, b: xp.maximum(a, b),
    ufunc=np.maximum,
    vjp=_extremum_vjp(lambda a, b: a > b),
    reference=lambda attrs, a, b: np.where(a >= b, a, b),
    domains=((-2.0, 2.0), (-2.0, 2.0)), uses_inputs=True, uses_output=False,
    samples=_extremum_samples, convention=_TIE, dtype=number_result,
)

binary_op(
    "Minimum", "The smaller of a and b, elementwise, broadcasting.",
    forward=lambda xp, attrs, a, b: xp.minimum(a, b),
    ufunc=np.minimum,
    vjp=_extremum_vjp(lambda a, b: a < b),
    reference=lambda attrs, a, b: np.where(a <= b, a, b),
    domains=((-2.0, 2.0), (-2.0, 2.0)), uses_inputs=True, uses_output=False,
    samples=_extremum_samples, convention=_TIE, dtype=number_result,
)
