"""Factories for the elementwise ops, as JAX's ``standard_unop``/``standard_binop``.

An elementwise op differs from its siblings only in its name, formulas, value
domain and which forward values its vjp reads; the attribute model (none), the
shape rule (same shape, or broadcasting) and the sample generator are the same.
These factories fill in the common part, so each op is one short call that
still holds everything about it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.ops.base import (
    Forward,
    NoAttrs,
    OpDef,
    Vjp,
    broadcast_shape,
    register,
    same_shape,
)
from engine.ops.samples import Sample, binary_samples, unary_samples

Domain = tuple[float, float]


def unary_op(name: str, doc: str, *, forward: Forward, vjp: Vjp,
             reference: Callable[..., np.ndarray], domain: Domain,
             uses_input: bool, uses_output: bool, convention: str = "",
             samples: Callable[[np.random.Generator], list[Sample]] | None = None,
             fast_forward: Forward | None = None, fast_vjp: Vjp | None = None,
             ufunc: np.ufunc | None = None, not_probabilities: bool = False) -> OpDef:
    """Register an elementwise op of one input ``x``; samples are drawn from ``domain``
    unless ``samples`` is given.  ``uses_input``/``uses_output`` say what the vjp reads;
    ``ufunc``: the NumPy ufunc of the forward (``OpDef.ufunc``)."""
    low, high = domain
    return register(OpDef(
        name=name, doc=doc, attrs=NoAttrs, input_names=("x",),
        forward=forward, vjp=vjp, shape=same_shape, reference=reference,
        samples=samples or (lambda rng: unary_samples(rng, low, high)),
        convention=convention, vjp_uses_inputs=uses_input, vjp_uses_output=uses_output,
        fast_forward=fast_forward, fast_vjp=fast_vjp, ufunc=ufunc,
        not_probabilities=not_probabilities))


def binary_op(name: str, doc: str, *, forward: Forward, vjp: Vjp,
              reference: Callable[..., np.ndarray], domains: tuple[Domain, Domain],
              uses_inputs: bool, uses_output: bool,
              input_names: tuple[str, str] = ("a", "b"), convention: str = "",
              samples: Callable[[np.random.Generator], list[Sample]] | None = None,
              fast_vjp: Vjp | None = None, ufunc: Callable[..., Any] | None = None,
              dtype: Callable[..., str] | None = None,
              not_probabilities: bool = False) -> OpDef:
    """Register an elementwise op of two broadcasting inputs; ``domains`` gives each
    input's sample range unless ``samples`` is given.  ``uses_inputs``/``uses_output``
    say what the vjp reads.  ``ufunc``: the NumPy ufunc of the forward (``OpDef.ufunc``);
    ``dtype``: the dtype rule (default: floats only)."""
    return register(OpDef(
        name=name, doc=doc, attrs=NoAttrs, input_names=input_names,
        forward=forward, vjp=vjp, shape=broadcast_shape, reference=reference,
        samples=samples or (lambda rng: binary_samples(rng, domains)),
        convention=convention, vjp_uses_inputs=uses_inputs, vjp_uses_output=uses_output,
        fast_vjp=fast_vjp, ufunc=ufunc, dtype=dtype, not_probabilities=not_probabilities))
