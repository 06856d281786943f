"""Elementwise binary ops with NumPy broadcasting: Add, Sub, Mul, Div, Pow.

Their vjps return gradients in the broadcast output's shape; the executor sums
them back to each input's shape, once, for every op.
"""

from __future__ import annotations

import numpy as np

from engine.ops.base import (
    SMALL_ARRAY,
    NoAttrs,
    OpDef,
    broadcast_shape,
    register,
)
from engine.ops.samples import binary_samples
from engine.runtime.kernels import sum_axes_to, sum_to

_ANY = (-2.0, 2.0)
_AWAY_FROM_ZERO = (0.5, 2.0)


def _add_vjp(xp, attrs, g, out, inputs, needs):
    return (g, g)


register(OpDef(
    name="Add", doc="a + b, broadcasting.", attrs=NoAttrs, input_names=("a", "b"),
    forward=lambda xp, attrs, a, b: a + b,
    vjp=_add_vjp,
    shape=broadcast_shape,
    reference=lambda attrs, a, b: np.add(a, b),
    samples=lambda rng: binary_samples(rng, (_ANY, _ANY)),
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))


def _sub_vjp(xp, attrs, g, out, inputs, needs):
    return (g, -g if needs[1] else None)


register(OpDef(
    name="Sub", doc="a - b, broadcasting.", attrs=NoAttrs, input_names=("a", "b"),
    forward=lambda xp, attrs, a, b: a - b,
    vjp=_sub_vjp,
    shape=broadcast_shape,
    reference=lambda attrs, a, b: np.subtract(a, b),
    samples=lambda rng: binary_samples(rng, (_ANY, _ANY)),
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))


def _mul_vjp(xp, attrs, g, out, inputs, needs):
    a, b = inputs
    # A broadcast input's gradient is summed back here, before the other gradient is made,
    # so that two full-size temporaries never coexist (the lesson's softmax * inverted).
    d_b = _product_summed_to(xp, g, a, b) if needs[1] else None
    d_a = _product_summed_to(xp, g, b, a) if needs[0] else None
    return (d_a, d_b)


def _product_summed_to(xp, g, other, x):
    """``g * other`` summed back to the shape of ``x``; on NumPy, when ``other`` is full-size
    and large, one einsum pass that never writes the product out."""
    shape = tuple(x.shape)
    if shape == g.shape:  # not broadcast: nothing to sum
        return g * other
    if xp is np and g.size > SMALL_ARRAY and other.shape == g.shape:
        axes = sum_axes_to(g.shape, shape)
        letters = "abcdefghijklmnopqrstuvwxyz"[:g.ndim]
        kept = "".join(c for i, c in enumerate(letters) if i not in axes)
        return np.einsum(f"{letters},{letters}->{kept}", g, other).reshape(shape)
    return sum_to(xp, g * other, shape)


register(OpDef(
    name="Mul", doc="a * b elementwise, broadcasting.", attrs=NoAttrs, input_names=("a", "b"),
    forward=lambda xp, attrs, a, b: a * b,
    vjp=_mul_vjp,
    shape=broadcast_shape,
    reference=lambda attrs, a, b: np.multiply(a, b),
    samples=lambda rng: binary_samples(rng, (_ANY, _ANY)),
    vjp_uses_output=False,
))


def _div_vjp(xp, attrs, g, out, inputs, needs):
    b = inputs[1]
    # d(a/b)/db = -a/b^2 = -out/b, which reuses the forward result.
    return (g / b if needs[0] else None, -g * out / b if needs[1] else None)


register(OpDef(
    name="Div", doc="a / b elementwise, broadcasting.", attrs=NoAttrs, input_names=("a", "b"),
    forward=lambda xp, attrs, a, b: a / b,
    vjp=_div_vjp,
    shape=broadcast_shape,
    reference=lambda attrs, a, b: np.divide(a, b),
    samples=lambda rng: binary_samples(rng, (_ANY, _AWAY_FROM_ZERO)),
))


def _pow_vjp(xp, attrs, g, out, inputs, needs):
    base, exponent = inputs
    # The lesson's Pow step: d(x^-1)/dx = -1 * x^-2, i.e. e * x^(e-1) in general.
    d_base = g * exponent * xp.pow(base, exponent - 1) if needs[0] else None
    d_exponent = g * out * xp.log(base) if needs[1] else None
    return (d_base, d_exponent)


register(OpDef(
    name="Pow", doc="base ** exponent elementwise, broadcasting; the exponent may require grad.",
    attrs=NoAttrs, input_names=("base", "exponent"),
    forward=lambda xp, attrs, base, exponent: xp.pow(base, exponent),
    vjp=_pow_vjp,
    shape=broadcast_shape,
    reference=lambda attrs, base, exponent: np.exp(exponent * np.log(base)),
    samples=lambda rng: binary_samples(rng, ((0.5, 2.0), (-2.0, 2.0))),
    convention="d/d(exponent) base^exponent = base^exponent * ln(base) is defined only for "
               "base > 0; elsewhere it is NaN, as in NumPy.",
))
