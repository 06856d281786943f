"""The op contract: everything about one op lives in one ``OpDef``.

Following PyTorch's OpInfo and JAX's primitives, an op is a single record: its
attribute model (validated by pydantic, unknown keys refused), its forward, its
vector-Jacobian product, its static shape and dtype rules, an independent NumPy
reference and sample inputs for tests.  Tests iterate over the registry, so an
op is gradient-checked the day it is registered.

Forward and vjp receive the array namespace ``xp`` from the executor and use
only functions of the Python array API standard, so the same code runs on
NumPy, array-api-strict and, later, other array libraries, and can be traced by
a symbolic namespace.  NumPy-only speed-ups (``out=``, einsum, ufunc methods)
never sit inside a rule: they are the optional ``fast_forward``/``fast_vjp``
beside it, as JAX registers a per-platform lowering beside a primitive, and the
plan picks them once, at compile time, when it runs optimized on NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import ConfigDict

from engine.graph.shapes import Dims, Shape, ShapeError
from engine.ops.samples import Sample
from schemas.base import StrictModel

Array = Any  # an array of whichever namespace the executor runs on

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
#: Every dtype a spec may declare.  JAX and Dask compute with each of them; torch lacks most
#: ops on uint16, uint32 and uint64, so that backend refuses them (``engine.runtime.backends``).
DTYPES = (*FLOAT_DTYPES, *INT_DTYPES, "bool")

#: Arrays up to this many elements take the plain NumPy calls in the ops' NumPy fast paths:
#: below it, the Python-level setup of einsum or broadcast_to costs more than the
#: temporary array they avoid.
SMALL_ARRAY = 1 << 14


class OpAttrs(StrictModel):
    """Base of every op's attribute model: the spec's strict model (unknown keys refused,
    nothing converted), frozen so that a step's attributes never change."""

    model_config = ConfigDict(frozen=True)


Forward = Callable[..., Array]
Vjp = Callable[..., tuple[Array | None, ...]]
ShapeRule = Callable[..., Shape]


@dataclass(frozen=True)
class OpDef:
    """One op. ``vjp(xp, attrs, g, out, inputs, needs)`` returns one gradient per input.

    Gradients come in the shape of the broadcast output; the executor sums them back
    to each input's shape. ``needs[i]`` says whether input i wants a gradient, so that
    no work is spent on data that does not require grad.

    ``fast_forward`` and ``fast_vjp``, when given, take the same arguments as
    ``forward`` and ``vjp`` and compute the same values on NumPy arrays only, faster.

    ``variadic`` ops (Concat) take any number, at least ``min_inputs``, of inputs named
    after their last input name: ``inputs[0]``, ``inputs[1]``...

    ``stochastic`` ops (Dropout) also take the keywords ``mode`` (the executor's
    ``RunMode``: training or not, seed, step) and ``key`` (the node's own random
    stream) in forward and vjp; called without them they evaluate.

    ``ufunc``, when given, is the NumPy ufunc that computes the forward on NumPy arrays
    (``ufunc(*inputs)``; Exp: ``np.exp``; or a function called the same way, ``out=``
    included, where the ufunc alone would promote differently: Pow's integer exponent).
    The plan's memory planning calls it directly and
    with ``out=`` a dead value's buffer, and runs chains of such ops as one step
    (``engine.runtime.plan.schedule``); the rules stay the reference.

    ``fast_forward_saving`` and ``fast_vjp_saved``, when given together, are NumPy fast
    paths that pass a residual from forward to backward (JAX's ``custom_vjp`` fwd/bwd):
    ``fast_forward_saving(xp, attrs, *inputs)`` returns ``(value, residual)``, and
    ``fast_vjp_saved(xp, attrs, g, residual, inputs, needs)`` is the vjp given that
    residual where ``fast_vjp`` gets the output (CrossEntropy keeps its probabilities, so
    that backward need not exponentiate again).  The residual lives until the next forward
    and may be read by several backwards: the vjp never writes into it.

    ``vjp_uses_inputs`` and ``vjp_uses_output`` say which forward values the vjp reads
    (values or shapes); the plan keeps exactly those alive for backward and frees every
    other value after its last use in forward.  A vjp that does not read them is handed
    ``None`` in their place.  They default to True, which is always correct.

    ``indexes``, for ops that index with an input (Gather, ScatterAdd), is (the input
    holding the indices, the input whose axis ``attrs.axis`` they index).  NumPy's fast
    paths refuse an index out of range, but the array-API rules and other libraries
    would quietly drop it (a one-hot product) or fill in NaN (JAX), so the executor
    checks these indices on every other path (``engine.runtime.indexcheck``).

    ``not_probabilities`` ops (Exp, Log, LogSoftmax, Add, MatMul, Sum...) make values that
    are not class probabilities whatever their inputs are: NLL of them is a mistake, which
    ``engine.graph.lint`` warns about.  Ops that may finish computing probabilities (Mul
    and Div normalising, Softmax, Sigmoid, Clip) leave it False.
    """

    name: str
    doc: str
    attrs: type[OpAttrs]
    input_names: tuple[str, ...]
    forward: Forward
    vjp: Vjp
    shape: ShapeRule
    reference: Callable[..., np.ndarray]
    samples: Callable[[np.random.Generator], list[Sample]]
    differentiable: tuple[bool, ...] | None = None
    min_inputs: int | None = None
    dtype: Callable[..., str] | None = None
    convention: str = ""
    vjp_uses_inputs: bool = True
    vjp_uses_output: bool = True
    fast_forward: Forward | None = None
    fast_vjp: Vjp | None = None
    ufunc: Callable[..., Array] | None = None
    fast_forward_saving: Callable[..., tuple[Array, Any]] | None = None
    fast_vjp_saved: Vjp | None = None
    variadic: bool = False
    stochastic: bool = False
    not_probabilities: bool = False
    indexes: tuple[int, int] | None = None

    @property
    def arity(self) -> tuple[int, int | None]:
        """(fewest, most) inputs the op accepts; most is None for a variadic op."""
        most = len(self.input_names)
        return (most if self.min_inputs is None else self.min_inputs,
                None if self.variadic else most)

    def input_name(self, index: int) -> str:
        """The name of input ``index``, for messages (``inputs[2]`` of a variadic op)."""
        if self.variadic and index >= len(self.input_names) - 1:
            return f"{self.input_names[-1]}[{index - len(self.input_names) + 1}]"
        return self.input_names[index]

    def is_differentiable(self, index: int) -> bool:
        return self.differentiable is None or self.differentiable[index]

    def lowered(self, fast: bool) -> tuple[Forward, Vjp]:
        """(forward, vjp) to run: the NumPy fast paths where ``fast`` and they exist."""
        if not fast:
            return self.forward, self.vjp
        return self.fast_forward or self.forward, self.fast_vjp or self.vjp

    def result_dtype(self, attrs: OpAttrs, dtypes: Sequence[str]) -> str:
        rule = self.dtype or float_result
        return rule(attrs, *dtypes)


REGISTRY: dict[str, OpDef] = {}


def apply(xp: Any, name: str, *inputs: Array, **attrs: Any) -> Array:
    """Another registered op inside a rule, so that a derivative can be that op (Gather's is
    ScatterAdd, and ScatterAdd's Gather).  Numerically it is the op's forward; when the rule
    is traced (``engine grad``), the symbolic namespace writes one node of the op instead."""
    emit = getattr(xp, "apply_op", None)
    if emit is not None:
        return emit(name, inputs, attrs)
    op = REGISTRY[name]
    return op.forward(xp, op.attrs(**attrs), *inputs)


def register(op: OpDef) -> OpDef:
    """Add an op to the registry; its name is what a spec writes after ``op:``."""
    if op.name in REGISTRY:  # pragma: no cover - programming error
        raise ValueError(f"op {op.name} registered twice")
    REGISTRY[op.name] = op
    return op


def float_result(_attrs: OpAttrs, *dtypes: str) -> str:
    """NumPy promotion of the inputs, which must all be floating point."""
    for dtype in dtypes:
        if dtype not in FLOAT_DTYPES:
            raise ShapeError(f"needs floating-point inputs, got {dtype}")
    return promoted(*dtypes) if dtypes else "float64"


def number_result(_attrs: OpAttrs, *dtypes: str) -> str:
    """NumPy promotion of numbers of one kind: floats with floats, integers with integers.

    An integer meeting a float is refused rather than promoted: NumPy makes int64 + float32
    float64 where PyTorch makes it float32, so no one rule would be what runs on every
    backend; a Cast says which is meant.  Bools are not numbers here (NumPy's bool + bool is
    a logical or).

    Integers whose NumPy promotion is a float (uint64 with a signed integer: no integer
    dtype holds both ranges, so NumPy makes float64, which rounds above 2^53) are refused
    too: an integer op never quietly gives floats."""
    kinds = set()
    for dtype in dtypes:
        if dtype not in FLOAT_DTYPES and dtype not in INT_DTYPES:
            raise ShapeError(f"needs numbers, got {dtype}; Cast it to an integer or float dtype")
        kinds.add(dtype in FLOAT_DTYPES)
    integer_result(*(d for d in dtypes if d in INT_DTYPES))
    if len(kinds) > 1:
        raise ShapeError("mixes integers and floats, which NumPy and PyTorch promote "
                         "differently; Cast the integer input to the float dtype")
    return promoted(*dtypes) if dtypes else "float64"


def integer_result(*dtypes: str) -> str | None:
    """NumPy's promotion of integer dtypes (None for none), refusing the mixes it makes a
    float: uint64 with int8..int64 is float64 in NumPy (and in JAX), which no integer op
    means."""
    if not dtypes:
        return None
    result = promoted(*dtypes)
    if result not in INT_DTYPES:
        signed = sorted({d for d in dtypes if d.startswith("int")})
        raise ShapeError(f"mixes uint64 with {', '.join(signed)}: no integer dtype holds both "
                         f"(NumPy would make {result}, rounding above 2^53); Cast one of them "
                         "(uint64 to int64, or the signed input to uint64) so both agree")
    return result


def weak_dtype(strong: Sequence[str], integral: bool) -> str:
    """The dtype a bare number takes from the values it meets, as a Python scalar does in
    NumPy (NEP 50): the floats' promotion; with integers only, theirs if the number is
    written as an integer (``2``, not ``2.0``); float64 otherwise."""
    floats = [d for d in strong if d in FLOAT_DTYPES]
    if floats:
        return promoted(*floats)
    ints = [d for d in strong if d in INT_DTYPES]
    return promoted(*ints) if integral and ints else "float64"


def same_dtype(_attrs: OpAttrs, x: str, *_rest: str) -> str:
    """The first input's dtype, whatever it is: ops that move elements without computing."""
    return x


@lru_cache(maxsize=256)
def promoted(*dtypes: str) -> str:
    """NumPy's promotion of dtype names, remembered: a 100,000-node graph asks 100,000 times."""
    return str(np.result_type(*dtypes))


def same_shape(_attrs: OpAttrs, _dims: Dims, shape: Shape) -> Shape:
    """Shape rule of elementwise unary ops."""
    return shape


def broadcast_shape(_attrs: OpAttrs, dims: Dims, *shapes: Shape) -> Shape:
    """Shape rule of elementwise binary ops."""
    return dims.broadcast(*shapes)


class NoAttrs(OpAttrs):
    """The op takes no attributes."""
