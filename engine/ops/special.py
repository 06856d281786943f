"""Smooth elementwise functions of deep learning: Sqrt, Softplus, Erf, Gelu.

The array API standard has no ``erf``, so Erf is computed here from functions it
does have: a power series near zero and a continued fraction for the tail, both
exact to about 1e-15 (checked against Python's ``math.erf``).  Every rule uses
only the standard's functions, so the gradient graph can trace it.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from engine.ops.base import NoAttrs, OpAttrs, OpDef, apply, register, same_shape
from engine.ops.samples import Sample, unary_samples
from engine.ops.standard import unary_op


def _sqrt_vjp(xp, attrs, g, out, inputs, needs):
    return (g / (2 * out),)


unary_op(
    "Sqrt", "Square root of each element (inputs must be >= 0).",
    forward=lambda xp, attrs, x: xp.sqrt(x),
    ufunc=np.sqrt,
    vjp=_sqrt_vjp,
    reference=lambda attrs, x: np.power(x, 0.5),
    domain=(0.2, 3.0), uses_input=False, uses_output=True,
    convention="d sqrt(x)/dx = 1 / (2 sqrt(x)) is infinite at 0: the gradient there is inf "
               "(NaN where the upstream gradient is 0), as in NumPy and PyTorch.",
)


def _softplus_forward(xp, attrs, x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): the exponent is never positive, so no
    # overflow, and log1p keeps the tail accurate.  (x + |x|) / 2 is max(x, 0) exactly.
    magnitude = xp.abs(x)
    return (x + magnitude) / 2 + xp.log1p(xp.exp(-magnitude))


def _softplus_vjp(xp, attrs, g, out, inputs, needs):
    # The derivative is sigmoid(x) = e^(x - softplus(x)); x - softplus(x) <= 0, so no overflow.
    return (g * xp.exp(inputs[0] - out),)


unary_op(
    "Softplus", "log(1 + e^x) of each element, a smooth Relu, without overflow.",
    forward=_softplus_forward,
    vjp=_softplus_vjp,
    reference=lambda attrs, x: np.log(1.0 + np.exp(x)),
    domain=(-3.0, 3.0), uses_input=True, uses_output=True,
    samples=lambda rng: [*unary_samples(rng, -3.0, 3.0),
                         Sample((np.array([-30.0, -2.0, 0.5, 30.0]),), note="both tails")],
    not_probabilities=True,
)

_TWO_OVER_ROOT_PI = 2 / math.sqrt(math.pi)
#: Below this |x| the series is used, above it the continued fraction (see ``_erf``).
_SPLIT = 2.0
_SERIES_TERMS = 30
_FRACTION_DEPTH = 40


def _erf(xp, x):
    """erf(x) to about 1e-15 from exp and arithmetic alone.

    Near zero, erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)), whose
    terms are all positive (no cancellation); 30 terms suffice for |x| <= 2.  Beyond,
    erfc(x) = e^(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated
    from a fixed depth of 40 upwards.  Both are computed on |x| clipped to their range
    (so neither overflows) and the right one chosen per element; erf is odd.
    """
    magnitude = xp.abs(x)
    near = xp.where(magnitude < _SPLIT, magnitude, xp.zeros_like(magnitude))
    square = near * near
    term = near
    total = near
    for n in range(_SERIES_TERMS):
        term = term * (2 * square) / (2 * n + 3)
        total = total + term
    series = _TWO_OVER_ROOT_PI * xp.exp(-square) * total
    far = xp.where(magnitude < _SPLIT, xp.full_like(magnitude, _SPLIT), magnitude)
    fraction = far
    for k in range(_FRACTION_DEPTH, 0, -1):
        fraction = far + (k / 2) / fraction
    tail = 1 - xp.exp(-far * far) / (math.sqrt(math.pi) * fraction)
    value = xp.where(magnitude < _SPLIT, series, tail)
    return xp.where(x < 0, -value, value)


def _erf_vjp(xp, attrs, g, out, inputs, needs):
    x = inputs[0]
    return (g * _TWO_OVER_ROOT_PI * xp.exp(-x * x),)


def _erf_reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


unary_op(
    "Erf", "The error function 2/sqrt(pi) * integral from 0 to x of e^(-t^2) dt.",
    forward=lambda xp, attrs, x: _erf(xp, x),
    vjp=_erf_vjp,
    reference=_erf_reference,
    domain=(-4.0, 4.0), uses_input=True, uses_output=False,
    samples=lambda rng: [*unary_samples(rng, -4.0, 4.0),
                         Sample((np.array([-7.0, -2.0, -1.999, 0.0, 1e-3, 2.0, 2.5, 9.0]),),
                                note="at the switch between series and fraction, and tails")],
    not_probabilities=True,
)


class GeluAttrs(OpAttrs):
    """Which form of Gelu (ONNX's ``approximate``)."""

    approximate: Literal["none", "tanh"] = Field(
        default="none", description="none: x * Phi(x) with the normal CDF Phi through Erf; "
                                    "tanh: the tanh approximation of GPT-2 and BERT.")


_ROOT_TWO_OVER_PI = math.sqrt(2 / math.pi)
_CUBIC = 0.044715


def _gelu_forward(xp, attrs, x):
    if attrs.approximate == "tanh":
        inner = _ROOT_TWO_OVER_PI * (x + _CUBIC * x * x * x)
        return x * (1 + xp.tanh(inner)) / 2
    return x * (1 + _erf(xp, x / math.sqrt(2))) / 2


def _gelu_vjp(xp, attrs, g, out, inputs, needs):
    x = inputs[0]
    if attrs.approximate == "tanh":
        squashed = xp.tanh(_ROOT_TWO_OVER_PI * (x + _CUBIC * x * x * x))
        slope = _ROOT_TWO_OVER_PI * (1 + 3 * _CUBIC * x * x)
        return (g * ((1 + squashed) + x * (1 - squashed * squashed) * slope) / 2,)
    # d/dx x Phi(x) = Phi(x) + x phi(x), with phi the normal density.
    cdf = (1 + apply(xp, "Erf", x / math.sqrt(2))) / 2  # one Erf node when traced
    density = xp.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return (g * (cdf + x * density),)


def _gelu_reference(attrs: GeluAttrs, x: np.ndarray) -> np.ndarray:
    if attrs.approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return x * (1.0 + _erf_reference(NoAttrs(), x / math.sqrt(2.0))) / 2.0


def _gelu_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(sample.inputs, {"approximate": form}, note=f"{form}, {sample.note}")
            for form in ("none", "tanh") for sample in unary_samples(rng, -4.0, 4.0)[1:]]


register(OpDef(
    not_probabilities=True,
    name="Gelu", doc="Gaussian error linear unit x * Phi(x), exact or in its tanh form.",
    attrs=GeluAttrs, input_names=("x",),
    forward=_gelu_forward,
    vjp=_gelu_vjp,
    shape=same_shape,
    reference=_gelu_reference,
    samples=_gelu_samples,
    vjp_uses_output=False,
))
