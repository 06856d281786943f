"""Elementwise binary ops with NumPy broadcasting: Add, Sub, Mul, Div, Pow.

Their vjps return gradients in the broadcast output's shape; the executor sums
them back to each input's shape, once, for every op.
"""

from __future__ import annotations

import numpy as np

from engine.ops.base import SMALL_ARRAY
from engine.ops.standard import binary_op
from engine.runtime.kernels import numpy_sum_to, sum_axes_to, sum_to

_ANY = (-2.0, 2.0)
_AWAY_FROM_ZERO = (0.5, 2.0)


binary_op(
    "Add", "a + b, broadcasting.",
    forward=lambda xp, attrs, a, b: a + b,
    ufunc=np.add,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g, g),
    reference=lambda attrs, a, b: np.add(a, b),
    domains=(_ANY, _ANY), uses_inputs=False, uses_output=False,
    not_probabilities=True,
)


binary_op(
    "Sub", "a - b, broadcasting.",
    forward=lambda xp, attrs, a, b: a - b,
    ufunc=np.subtract,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g, -g if needs[1] else None),
    reference=lambda attrs, a, b: np.subtract(a, b),
    domains=(_ANY, _ANY), uses_inputs=False, uses_output=False,
    not_probabilities=True,
)


def _mul_vjp(xp, attrs, g, out, inputs, needs):
    a, b = inputs
    # A broadcast input's gradient is summed back here, before the other gradient is made,
    # so that two full-size temporaries never coexist (the lesson's softmax * inverted).
    d_b = sum_to(xp, g * a, tuple(b.shape)) if needs[1] else None
    d_a = sum_to(xp, g * b, tuple(a.shape)) if needs[0] else None
    return (d_a, d_b)


def _mul_fast_vjp(xp, attrs, g, out, inputs, needs):
    a, b = inputs
    d_b = _numpy_product_summed_to(g, a, b.shape) if needs[1] else None
    d_a = _numpy_product_summed_to(g, b, a.shape) if needs[0] else None
    return (d_a, d_b)


def _numpy_product_summed_to(g, other, shape):
    """``g * other`` summed back to ``shape``; when ``other`` is full-size and large,
    one einsum pass that never writes the product out."""
    if shape == g.shape:  # not broadcast: nothing to sum
        return g * other
    if g.size > SMALL_ARRAY and other.shape == g.shape:
        axes = sum_axes_to(g.shape, shape)
        letters = "abcdefghijklmnopqrstuvwxyz"[:g.ndim]
        kept = "".join(c for i, c in enumerate(letters) if i not in axes)
        return np.einsum(f"{letters},{letters}->{kept}", g, other).reshape(shape)
    return numpy_sum_to(g * other, shape)


binary_op(
    "Mul", "a * b elementwise, broadcasting.",
    forward=lambda xp, attrs, a, b: a * b,
    ufunc=np.multiply,
    vjp=_mul_vjp,
    fast_vjp=_mul_fast_vjp,
    reference=lambda attrs, a, b: np.multiply(a, b),
    domains=(_ANY, _ANY), uses_inputs=True, uses_output=False,
)


def _div_vjp(xp, attrs, g, out, inputs, needs):
    b = inputs[1]
    # d(a/b)/db = -a/b^2 = -out/b, which reuses the forward result.
    return (g / b if needs[0] else None, -g * out / b if needs[1] else None)


binary_op(
    "Div", "a / b elementwise, broadcasting.",
    forward=lambda xp, attrs, a, b: a / b,
    ufunc=np.divide,
    vjp=_div_vjp,
    reference=lambda attrs, a, b: np.divide(a, b),
    domains=(_ANY, _AWAY_FROM_ZERO), uses_inputs=True, uses_output=True,
)


def _pow_vjp(xp, attrs, g, out, inputs, needs):
    base, exponent = inputs
    # The lesson's Pow step: d(x^-1)/dx = -1 * x^-2, i.e. e * x^(e-1) in general.
    d_base = g * exponent * xp.pow(base, exponent - 1) if needs[0] else None
    # x^e ln x -> 0 as x -> 0 for e > 0: at base 0 the log's argument is 1, so the term is 0
    # (PyTorch's value) instead of 0 * -inf = NaN
    d_exponent = g * out * xp.log(xp.where(base == 0, xp.ones_like(base), base)) \
        if needs[1] else None
    return (d_base, d_exponent)


binary_op(
    "Pow", "base ** exponent elementwise, broadcasting; the exponent may require grad.",
    input_names=("base", "exponent"),
    forward=lambda xp, attrs, base, exponent: xp.pow(base, exponent),
    ufunc=np.power,
    vjp=_pow_vjp,
    reference=lambda attrs, base, exponent: np.exp(exponent * np.log(base)),
    domains=((0.5, 2.0), _ANY), uses_inputs=True, uses_output=True,
    convention="d/d(exponent) base^exponent = base^exponent * ln(base) for base > 0. At base 0 "
               "it is 0 (the limit for exponent > 0; PyTorch's value; NaN for exponent < 0, "
               "where the power itself is inf). For base < 0 the power is real only at integer "
               "exponents and has no derivative in the exponent: NaN (as NumPy and PyTorch). "
               "The second derivatives are traced from this rule.",
)
