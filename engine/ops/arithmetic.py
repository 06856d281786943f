"""Elementwise binary ops with NumPy broadcasting: Add, Sub, Mul, Div, Pow.

Their vjps return gradients in the broadcast output's shape; the executor sums
them back to each input's shape, once, for every op.  Add, Sub and Mul take
integers too (integers with integers: ``number_result``); Div refuses them, since
NumPy's true division of integers changes the dtype to float64; Pow takes an
integer exponent for any base, and keeps the base's dtype as ONNX does.
"""

from __future__ import annotations

import numpy as np

from engine.graph.shapes import ShapeError
from engine.ops.base import FLOAT_DTYPES, INT_DTYPES, SMALL_ARRAY, OpAttrs, number_result, promoted
from engine.ops.samples import Sample, binary_samples, integer_pairs
from engine.ops.standard import binary_op
from engine.runtime.kernels import numpy_sum_to, sum_axes_to, sum_to

_ANY = (-2.0, 2.0)
_AWAY_FROM_ZERO = (0.5, 2.0)


def _integer_samples(rng: np.random.Generator, domains) -> list[Sample]:
    """The float broadcasting samples and the integer pairs (a float meeting an integer,
    which the dtype rule refuses, is left to the spec tests)."""
    return [*binary_samples(rng, domains), *integer_pairs(rng)]


binary_op(
    "Add", "a + b, broadcasting.",
    forward=lambda xp, attrs, a, b: a + b,
    ufunc=np.add,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g if needs[0] else None,
                                                  g if needs[1] else None),
    reference=lambda attrs, a, b: np.add(a, b),
    domains=(_ANY, _ANY), uses_inputs=False, uses_output=False,
    dtype=number_result, samples=lambda rng: _integer_samples(rng, (_ANY, _ANY)),
    not_probabilities=True,
)


binary_op(
    "Sub", "a - b, broadcasting.",
    forward=lambda xp, attrs, a, b: a - b,
    ufunc=np.subtract,
    vjp=lambda xp, attrs, g, out, inputs, needs: (g if needs[0] else None,
                                                  -g if needs[1] else None),
    reference=lambda attrs, a, b: np.subtract(a, b),
    domains=(_ANY, _ANY), uses_inputs=False, uses_output=False,
    dtype=number_result, samples=lambda rng: _integer_samples(rng, (_ANY, _ANY)),
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
    dtype=number_result, samples=lambda rng: _integer_samples(rng, (_ANY, _ANY)),
)


def _div_vjp(xp, attrs, g, out, inputs, needs):
    b = inputs[1]
    # d(a/b)/db = -a/b^2 = -out/b, which reuses the forward result.
    return (g / b if needs[0] else None, -g * out / b if needs[1] else None)


def _div_dtype(_attrs: OpAttrs, a: str, b: str) -> str:
    for dtype in (a, b):
        if dtype not in FLOAT_DTYPES:
            raise ShapeError(f"divides floats only, got {dtype}: NumPy's true "
                             "division of integers gives float64 and ONNX's truncates; Cast "
                             "the inputs to the float dtype wanted")
    return promoted(a, b)


binary_op(
    "Div", "a / b elementwise, broadcasting; floats only (Cast integers first).",
    forward=lambda xp, attrs, a, b: a / b,
    ufunc=np.divide,
    vjp=_div_vjp,
    reference=lambda attrs, a, b: np.divide(a, b),
    domains=(_ANY, _AWAY_FROM_ZERO), uses_inputs=True, uses_output=True,
    dtype=_div_dtype,
)


def _pow_dtype(_attrs: OpAttrs, base: str, exponent: str) -> str:
    if base in FLOAT_DTYPES and exponent in FLOAT_DTYPES:
        return promoted(base, exponent)
    if exponent not in INT_DTYPES:
        raise ShapeError(f"takes a floating-point or integer exponent, got {exponent}" if
                         exponent not in FLOAT_DTYPES else
                         f"raises an integer base ({base}) to a float exponent ({exponent}), "
                         "whose result NumPy makes float64 and ONNX the base's integers; Cast "
                         "the base to a float dtype")
    if base not in FLOAT_DTYPES and base not in INT_DTYPES:
        raise ShapeError(f"takes a number base, got {base}; Cast it")
    if base.startswith("uint") and exponent.startswith("int"):
        raise ShapeError(f"raises an unsigned base ({base}) to a signed exponent ({exponent}), "
                         "which is computed in the base's dtype, where a negative exponent "
                         f"would wrap around to a huge one; Cast the exponent to {base}")
    return base  # an integer exponent keeps the base's dtype (ONNX's Pow)


def _exponent(xp, base, exponent):
    """The exponent in the base's dtype when it is an integer (ONNX's result type: the
    base's), so that no backend promotes float32 ** int64 to float64."""
    if exponent.dtype == base.dtype or xp.isdtype(exponent.dtype, "real floating"):
        return exponent
    return xp.astype(exponent, base.dtype)


def _power(base: np.ndarray, exponent: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.power`` as the memory plan calls a ufunc, with an integer exponent in the base's
    dtype (``_exponent``): float32 ** int64 stays float32, as the dtype rule says."""
    return np.power(base, _exponent(np, base, exponent), out=out)


def _pow_vjp(xp, attrs, g, out, inputs, needs):
    base, exponent = inputs
    exponent = _exponent(xp, base, exponent)
    # The lesson's Pow step: d(x^-1)/dx = -1 * x^-2, i.e. e * x^(e-1) in general.
    d_base = g * exponent * xp.pow(base, exponent - 1) if needs[0] else None
    # x^e ln x -> 0 as x -> 0 for e > 0: at base 0 the log's argument is 1, so the term is 0
    # (PyTorch's value) instead of 0 * -inf = NaN
    d_exponent = g * out * xp.log(xp.where(base == 0, xp.ones_like(base), base)) \
        if needs[1] else None
    return (d_base, d_exponent)


def _pow_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        *binary_samples(rng, ((0.5, 2.0), _ANY)),
        Sample((rng.uniform(-2.0, 2.0, size=(3, 4)), rng.integers(0, 4, size=(4,))),
               note="float base, int64 exponents (any sign of base)"),
        Sample((rng.uniform(0.5, 2.0, size=(2, 3)), np.array([-2, 3, -1], dtype=np.int32)),
               note="float base, negative int32 exponents"),
        Sample((rng.integers(-5, 6, size=(3, 4)), rng.integers(0, 4, size=(3, 1))),
               note="int64 base, int64 exponents"),
        Sample((rng.integers(-5, 6, size=(4,), dtype=np.int32), np.array(2, dtype=np.int64)),
               note="int32 base, int64 exponent: the base's dtype"),
        Sample((rng.integers(0, 60, size=(3,), dtype=np.uint32),
                np.array([3, 0, 5], dtype=np.uint8)),
               note="uint32 base, uint8 exponent"),
    ]


def _pow_reference(attrs: OpAttrs, base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    if exponent.dtype.kind == "f":
        return np.exp(exponent * np.log(base))
    # an integer exponent: repeated multiplication in the base's dtype (1 / it if negative)
    bases, powers = np.broadcast_arrays(base, exponent)
    out = np.empty(bases.shape, base.dtype)
    for index in np.ndindex(bases.shape):
        result = base.dtype.type(1)
        for _ in range(abs(int(powers[index]))):
            result = result * bases[index]
        out[index] = 1 / result if powers[index] < 0 else result
    return out


binary_op(
    "Pow", "base ** exponent elementwise, broadcasting; the exponent may require grad, or be an "
           "integer (the result then has the base's dtype, as ONNX).",
    input_names=("base", "exponent"),
    forward=lambda xp, attrs, base, exponent: xp.pow(base, _exponent(xp, base, exponent)),
    ufunc=_power,
    vjp=_pow_vjp,
    reference=_pow_reference,
    domains=((0.5, 2.0), _ANY), uses_inputs=True, uses_output=True,
    dtype=_pow_dtype, samples=_pow_samples,
    convention="d/d(exponent) base^exponent = base^exponent * ln(base) for base > 0. At base 0 "
               "it is 0 (the limit for exponent > 0; PyTorch's value; NaN for exponent < 0, "
               "where the power itself is inf). For base < 0 the power is real only at integer "
               "exponents and has no derivative in the exponent: NaN (as NumPy and PyTorch). "
               "An integer exponent gets no gradient; an integer base raised to a negative "
               "integer is an error when it runs, as in NumPy. "
               "The second derivatives are traced from this rule.",
)
