"""Comparisons that produce bool, and the selection ``Where(cond, a, b)`` that reads them.

Derivatives need them: Relu's gradient is ``Where(Greater(out, 0), g, 0)``, Max's
gradient masks the winners with ``Equal``.  Names and inputs follow ONNX.  A
comparison is piecewise constant, so it passes no gradient to its inputs, and its
second derivative is zero as well.
"""

from __future__ import annotations

import numpy as np

from engine.graph.shapes import ShapeError
from engine.ops.base import (
    FLOAT_DTYPES,
    INT_DTYPES,
    NoAttrs,
    OpAttrs,
    OpDef,
    broadcast_shape,
    integer_result,
    number_result,
    register,
)
from engine.ops.samples import BROADCAST_PAIRS, Sample

#: dtypes a comparison accepts: numbers of any width, and, for Equal, bools.  An integer
#: meets an integer and a float a float: the array API standard does not promote across
#: kinds (nor do int64 values above 2^53 survive as float64), so a Cast says which is meant.
_ORDERED = (*FLOAT_DTYPES, *INT_DTYPES)


def _comparison_dtype(allowed: tuple[str, ...]):
    def rule(_attrs: OpAttrs, a: str, b: str) -> str:
        for dtype in (a, b):
            if dtype not in allowed:
                raise ShapeError(f"compares numbers{' or bools' if 'bool' in allowed else ''}, "
                                 f"got {dtype}")
        kinds = {"bool" if d == "bool" else "float" if d in FLOAT_DTYPES else "integer"
                 for d in (a, b)}
        if len(kinds) > 1:
            raise ShapeError(f"compares {' with '.join(sorted(kinds))} values ({a}, {b}); "
                             "Cast one of them to the other's dtype")
        if kinds == {"integer"}:
            integer_result(a, b)  # uint64 with int64 NumPy compares as float64, rounded
        return "bool"
    return rule


def _no_gradient(xp, attrs, g, out, inputs, needs):
    return (None, None)


def _comparison_samples(rng: np.random.Generator) -> list[Sample]:
    samples = []
    for a, b in BROADCAST_PAIRS:
        # small integers as floats, so that ties (where the three comparisons differ) occur
        samples.append(Sample((rng.integers(-2, 3, size=a).astype(np.float64),
                               rng.integers(-2, 3, size=b).astype(np.float64)),
                              note=f"{a} with {b}"))
    samples.append(Sample((rng.integers(0, 3, size=(4,)), rng.integers(0, 3, size=(3, 1))),
                          note="int64 class indices"))
    samples.append(Sample((rng.integers(0, 3, size=(3, 4), dtype=np.uint8),
                           rng.integers(-2, 3, size=(4,), dtype=np.int8)), note="uint8 with int8"))
    samples.append(Sample(((2**53 + rng.integers(0, 3, size=(3, 4))).astype(np.uint64),
                           (2**53 + rng.integers(0, 3, size=(4,))).astype(np.uint64)),
                          note="uint64 above 2^53, which float64 would tie"))
    samples.append(Sample((rng.integers(0, 3, size=(3, 4), dtype=np.uint16),
                           rng.integers(0, 3, size=(4,), dtype=np.uint32)),
                          note="uint16 with uint32"))
    return samples


def _equal_samples(rng: np.random.Generator) -> list[Sample]:
    return [*_comparison_samples(rng),
            Sample((rng.uniform(size=(3, 4)) < 0.5, rng.uniform(size=(4,)) < 0.5),
                   note="bool with bool")]


_CONVENTION = ("Piecewise constant: no gradient flows to either input, and the second "
               "derivative is zero.")

for _name, _symbol, _forward, _reference, _allowed, _samples in (
    ("Greater", ">", lambda xp, attrs, a, b: a > b, np.greater, _ORDERED, _comparison_samples),
    ("Less", "<", lambda xp, attrs, a, b: a < b, np.less, _ORDERED, _comparison_samples),
    ("Equal", "==", lambda xp, attrs, a, b: a == b, np.equal, (*_ORDERED, "bool"),
     _equal_samples),
):
    register(OpDef(
        name=_name, doc=f"a {_symbol} b elementwise, broadcasting; the result is bool.",
        attrs=NoAttrs, input_names=("a", "b"),
        forward=_forward,
        vjp=_no_gradient,
        shape=broadcast_shape,
        dtype=_comparison_dtype(_allowed),
        reference=lambda attrs, a, b, _ref=_reference: _ref(a, b),
        samples=_samples,
        differentiable=(False, False),
        convention=_CONVENTION,
        vjp_uses_inputs=False,
        vjp_uses_output=False,
    ))


def _where_dtype(attrs: OpAttrs, cond: str, a: str, b: str) -> str:
    if cond != "bool":
        raise ShapeError(f"the condition must be bool (from Greater, Less or Equal), got {cond}")
    if a == b == "bool":
        return "bool"
    return number_result(attrs, a, b)


def _where_vjp(xp, attrs, g, out, inputs, needs):
    cond = inputs[0]
    zero = xp.zeros_like(g)
    return (None, xp.where(cond, g, zero) if needs[1] else None,
            xp.where(cond, zero, g) if needs[2] else None)


def _where_samples(rng: np.random.Generator) -> list[Sample]:
    triples = [((3, 4), (3, 4), (3, 4)), ((3, 4), (4,), ()), ((3, 1), (1, 4), (3, 4)),
               ((2, 1, 4), (3, 1), (4,))]
    return [*(Sample((rng.uniform(size=c) < 0.5, rng.normal(size=a), rng.normal(size=b)),
                     note=f"cond {c}, a {a}, b {b}")
              for c, a, b in triples),
            Sample((rng.uniform(size=(3, 4)) < 0.5, rng.integers(-9, 9, size=(3, 4)),
                    rng.integers(-9, 9, size=(4,), dtype=np.int32)), note="int64 and int32"),
            Sample((rng.uniform(size=(3, 4)) < 0.5,
                    rng.integers(0, 9, size=(3, 4), dtype=np.uint16),
                    rng.integers(0, 9, size=(4,), dtype=np.uint32)), note="uint16 and uint32")]


register(OpDef(
    name="Where", doc="a where cond is true, else b, elementwise, broadcasting all three.",
    attrs=NoAttrs, input_names=("cond", "a", "b"),
    forward=lambda xp, attrs, cond, a, b: xp.where(cond, a, b),
    vjp=_where_vjp,
    shape=broadcast_shape,
    dtype=_where_dtype,
    reference=lambda attrs, cond, a, b: np.choose(np.broadcast_to(cond, np.broadcast_shapes(
        np.shape(cond), np.shape(a), np.shape(b))).astype(int), [b, a]),
    samples=_where_samples,
    differentiable=(False, True, True),
    convention="The condition gets no gradient; a and b get the upstream gradient where they "
               "were chosen and 0 elsewhere. Its second derivative is a Where of the same "
               "condition.",
    vjp_uses_output=False,
))
