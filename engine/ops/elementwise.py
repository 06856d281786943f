"""Elementwise unary ops: Exp, Log, Neg, Relu, Tanh, Sigmoid."""

from __future__ import annotations

import numpy as np

from engine.ops.base import NoAttrs, OpDef, register, same_shape
from engine.ops.samples import Sample, unary_samples


def _exp_vjp(xp, attrs, g, out, inputs, needs):
    # The lesson's "very cool property of e": the derivative of exp is its own output.
    return (g * out,)


register(OpDef(
    name="Exp", doc="e raised to each element.", attrs=NoAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.exp(x),
    vjp=_exp_vjp,
    shape=same_shape,
    reference=lambda attrs, x: np.e ** x,
    samples=lambda rng: unary_samples(rng, -2.0, 2.0),
    vjp_uses_inputs=False,
))


def _log_vjp(xp, attrs, g, out, inputs, needs):
    return (g / inputs[0],)


register(OpDef(
    name="Log", doc="Natural logarithm of each element (inputs must be positive).",
    attrs=NoAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.log(x),
    vjp=_log_vjp,
    shape=same_shape,
    reference=lambda attrs, x: np.log(x),
    samples=lambda rng: unary_samples(rng, 0.2, 3.0),
    vjp_uses_output=False,
))


register(OpDef(
    name="Neg", doc="Negation of each element.", attrs=NoAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: -x,
    vjp=lambda xp, attrs, g, out, inputs, needs: (-g,),
    shape=same_shape,
    reference=lambda attrs, x: 0.0 - x,
    samples=lambda rng: unary_samples(rng, -2.0, 2.0),
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))


def _relu_vjp(xp, attrs, g, out, inputs, needs):
    # out > 0 exactly where x > 0, so the input need not be kept for backward.
    if xp is np:  # a scalar zero: no zero-filled array to allocate
        return (np.where(out > 0, g, 0.0),)
    return (xp.where(out > 0, g, xp.zeros_like(g)),)


def _relu_samples(rng: np.random.Generator) -> list[Sample]:
    # Finite differences are meaningless at the kink, so keep samples away from 0.
    samples = []
    for sample in unary_samples(rng, 0.1, 2.0):
        (x,) = sample.inputs
        sign = np.where(rng.uniform(size=x.shape) < 0.5, -1.0, 1.0)
        samples.append(Sample((sign * x,), note=sample.note))
    return samples


register(OpDef(
    name="Relu", doc="max(x, 0) of each element.", attrs=NoAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: (np.maximum(x, 0.0) if xp is np  # no array of zeros
                                  else xp.maximum(x, xp.zeros_like(x))),
    vjp=_relu_vjp,
    shape=same_shape,
    reference=lambda attrs, x: np.where(x > 0, x, 0.0),
    samples=_relu_samples,
    convention="Relu'(0) = 0: the gradient flows only where the input is strictly positive.",
    vjp_uses_inputs=False,
))


def _tanh_vjp(xp, attrs, g, out, inputs, needs):
    return (g * (1 - out * out),)


register(OpDef(
    name="Tanh", doc="Hyperbolic tangent of each element.", attrs=NoAttrs, input_names=("x",),
    forward=lambda xp, attrs, x: xp.tanh(x),
    vjp=_tanh_vjp,
    shape=same_shape,
    reference=lambda attrs, x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1),
    samples=lambda rng: unary_samples(rng, -2.0, 2.0),
    vjp_uses_inputs=False,
))


def _sigmoid_forward(xp, attrs, x):
    # exp(-|x|) never overflows; the two branches give 1/(1+e^-x) for either sign of x.
    decay = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + decay), decay / (1 + decay))


def _sigmoid_vjp(xp, attrs, g, out, inputs, needs):
    return (g * out * (1 - out),)


register(OpDef(
    name="Sigmoid", doc="Logistic function 1 / (1 + e^-x) of each element, without overflow.",
    attrs=NoAttrs, input_names=("x",),
    forward=_sigmoid_forward,
    vjp=_sigmoid_vjp,
    shape=same_shape,
    reference=lambda attrs, x: 1.0 / (1.0 + np.exp(-x)),
    samples=lambda rng: unary_samples(rng, -3.0, 3.0),
    vjp_uses_inputs=False,
))
