"""Elementwise unary ops: Exp, Log, Neg, Relu, Tanh, Sigmoid."""

from __future__ import annotations

import numpy as np

from engine.ops.samples import away_from_kink
from engine.ops.standard import unary_op
from engine.runtime.kernels import relu_grad


def _exp_vjp(xp, attrs, g, out, inputs, needs):
    # The lesson's "very cool property of e": the derivative of exp is its own output.
    return (g * out,)


unary_op(
    "Exp", "e raised to each element.",
    forward=lambda xp, attrs, x: xp.exp(x),
    ufunc=np.exp,
    vjp=_exp_vjp,
    reference=lambda attrs, x: np.e ** x,
    domain=(-2.0, 2.0), uses_input=False, uses_output=True,
    not_probabilities=True,
)


unary_op(
    "Log", "Natural logarithm of each element (inputs must be positive).",
    forward=lambda xp, attrs, x: xp.log(x),
    ufunc=np.log,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g / inputs[0],),
    reference=lambda attrs, x: np.log(x),
    domain=(0.2, 3.0), uses_input=True, uses_output=False,
    not_probabilities=True,
)


unary_op(
    "Neg", "Negation of each element.",
    forward=lambda xp, attrs, x: -x,
    ufunc=np.negative,
    vjp=lambda xp, attrs, g, out, inputs, needs: (-g,),
    reference=lambda attrs, x: 0.0 - x,
    domain=(-2.0, 2.0), uses_input=False, uses_output=False,
    not_probabilities=True,
)


def _relu_vjp(xp, attrs, g, out, inputs, needs):
    # out > 0 exactly where x > 0, so the input need not be kept for backward.
    return (xp.where(out > 0, g, xp.zeros_like(g)),)


unary_op(
    "Relu", "max(x, 0) of each element.",
    forward=lambda xp, attrs, x: xp.maximum(x, xp.zeros_like(x)),
    vjp=_relu_vjp,
    reference=lambda attrs, x: np.where(x > 0, x, 0.0),
    domain=(0.1, 2.0), samples=away_from_kink, uses_input=False, uses_output=True,
    convention="Relu'(0) = 0: the gradient flows only where the input is strictly positive. "
               "Piecewise linear: its second derivative in x is 0 wherever it exists (the vjp "
               "is a mask of the output's sign, constant in x).",
    # NumPy: a scalar zero, no zero-filled array to allocate
    fast_forward=lambda xp, attrs, x: np.maximum(x, 0.0),
    fast_vjp=lambda xp, attrs, g, out, inputs, needs: (relu_grad(g, out),),
    not_probabilities=True,
)


unary_op(
    "Tanh", "Hyperbolic tangent of each element.",
    forward=lambda xp, attrs, x: xp.tanh(x),
    ufunc=np.tanh,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g * (1 - out * out),),
    reference=lambda attrs, x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1),
    domain=(-2.0, 2.0), uses_input=False, uses_output=True,
    not_probabilities=True,
)


def _sigmoid_forward(xp, attrs, x):
    # exp(-|x|) never overflows; the two branches give 1/(1+e^-x) for either sign of x.
    decay = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + decay), decay / (1 + decay))


unary_op(
    "Sigmoid", "Logistic function 1 / (1 + e^-x) of each element, without overflow.",
    forward=_sigmoid_forward,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g * out * (1 - out),),
    reference=lambda attrs, x: 1.0 / (1.0 + np.exp(-x)),
    domain=(-3.0, 3.0), uses_input=False, uses_output=True,
)
