"""Piecewise-linear ops with kinks: Abs, Clip, Maximum, Minimum.

At a kink the derivative does not exist; each op states in its ``convention``
which subgradient it returns there (the one PyTorch and JAX return), and its
samples keep away from the kinks so that finite differences are meaningful.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from engine.ops.base import OpAttrs, OpDef, register, same_shape
from engine.ops.samples import BROADCAST_PAIRS, Sample, away_from_kink
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

    @model_validator(mode="after")
    def _ordered(self) -> ClipAttrs:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


def _clip_forward(xp, attrs, x):
    if attrs.min is not None:
        x = xp.where(x < attrs.min, xp.full_like(x, attrs.min), x)
    if attrs.max is not None:
        x = xp.where(x > attrs.max, xp.full_like(x, attrs.max), x)
    return x


def _clip_vjp(xp, attrs, g, out, inputs, needs):
    x = inputs[0]
    passes = xp.ones_like(x)
    if attrs.min is not None:
        passes = xp.where(x < attrs.min, xp.zeros_like(x), passes)
    if attrs.max is not None:
        passes = xp.where(x > attrs.max, xp.zeros_like(x), passes)
    return (g * passes,)


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
    ]


register(OpDef(
    name="Clip", doc="Each element limited to [min, max] (ONNX Clip, bounds as attributes).",
    attrs=ClipAttrs, input_names=("x",),
    forward=_clip_forward,
    vjp=_clip_vjp,
    shape=same_shape,
    reference=lambda attrs, x: np.clip(x, -np.inf if attrs.min is None else attrs.min,
                                       np.inf if attrs.max is None else attrs.max),
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

    return [Sample((draw(a, 0.0), draw(b, 0.5)), note=f"{a} with {b}")
            for a, b in BROADCAST_PAIRS]


def _extremum_vjp(pick_a):
    """Vjp of Maximum (``pick_a`` is >) or Minimum (<): a tie splits the gradient in half."""
    def vjp(xp, attrs, g, out, inputs, needs):
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
    samples=_extremum_samples, convention=_TIE,
)

binary_op(
    "Minimum", "The smaller of a and b, elementwise, broadcasting.",
    forward=lambda xp, attrs, a, b: xp.minimum(a, b),
    ufunc=np.minimum,
    vjp=_extremum_vjp(lambda a, b: a < b),
    reference=lambda attrs, a, b: np.where(a <= b, a, b),
    domains=((-2.0, 2.0), (-2.0, 2.0)), uses_inputs=True, uses_output=False,
    samples=_extremum_samples, convention=_TIE,
)
