"""Each engine op as ONNX nodes: a table of lowerings, and the traced fallback.

An op with an ONNX counterpart has a lowering here (``Add`` is ``Add``, ``Sum`` is
``ReduceSum``, ``SumTo`` is a ``ReduceSum`` over the broadcast axes).  Every other op
(``LayerNorm``, ``NLL``, ``Gelu``, ``Erf`` in float64, which onnxruntime has no
kernel for) is written as the ops its own forward rule is made of: the rule is run
on the symbolic array namespace of ``engine grad`` (``engine.transform.symbolic``),
which records each array-API call as a node of a registered op, and those nodes are
lowered in turn.  So the ONNX graph computes what the engine computes, step for
step, and a new op exports the day it is registered if its forward can be traced.

A lowering names the attributes it understands; an op that grows another attribute
(``NLL``'s ``weight``, say) is traced until its lowering learns it, so no attribute is
ever silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.graph.shapes import Dims, normalize_axes
from engine.onnx.common import ONNX_DTYPES
from engine.onnx.emitter import Emitter, Operand
from engine.ops import REGISTRY, OpAttrs, OpDef
from engine.ops.base import FLOAT_DTYPES, promoted
from engine.ops.piecewise import clip_bounds
from engine.transform.symbolic import Namespace, SymbolicArray, TraceError, Tracer


class Unsupported(Exception):
    """The op cannot be written as ONNX; the message says why (the caller locates it)."""


@dataclass(frozen=True)
class Step:
    """One op application to lower: the op, its attributes, inputs and output."""

    op: OpDef
    attrs: OpAttrs
    inputs: tuple[Operand, ...]
    out: Operand


Lowering = Callable[[Emitter, Step], None]


@dataclass(frozen=True)
class _Entry:
    lower: Lowering
    attrs: frozenset[str]


LOWERINGS: dict[str, _Entry] = {}


def _lowering(*names: str, attrs: tuple[str, ...] = ()) -> Callable[[Lowering], Lowering]:
    def register(function: Lowering) -> Lowering:
        for name in names:
            LOWERINGS[name] = _Entry(function, frozenset(attrs))
        return function
    return register


def lower(emitter: Emitter, step: Step, dims: Dims) -> None:
    """Write ``step`` into ``emitter``, its result named ``step.out.name``; Unsupported if it
    cannot be."""
    entry = LOWERINGS.get(step.op.name)
    if entry is not None and set(step.op.attrs.model_fields) <= entry.attrs and \
            not _needs_trace(emitter, step):
        entry.lower(emitter, step)
    else:
        _traced(emitter, step, dims)


def _needs_trace(emitter: Emitter, step: Step) -> bool:
    """onnxruntime has no float64 (nor float16) Erf kernel: trace the engine's series."""
    return step.op.name == "Erf" and step.out.dtype != "float32"


# -- elementwise -----------------------------------------------------------------------------

_UNARY = {"Exp": "Exp", "Log": "Log", "Neg": "Neg", "Relu": "Relu", "Tanh": "Tanh",
          "Sigmoid": "Sigmoid", "Sqrt": "Sqrt", "Abs": "Abs", "Identity": "Identity",
          "Erf": "Erf"}


@_lowering(*_UNARY)
def _unary(e: Emitter, s: Step) -> None:
    e.node(_UNARY[s.op.name], [e.cast(s.inputs[0], s.out.dtype)], s.out.name, out=s.out.name)


_BINARY = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow",
           "MatMul": "MatMul"}


#: ONNX op -> {integer dtype onnxruntime (1.32) has no kernel of it for, though ONNX allows
#: it: the dtype it is computed in instead}.  Exact: every value fits the wider dtype, and the
#: Cast back keeps the low bits, which is NumPy's wrap-around (Where moves uint64 through
#: int64 unchanged, bit for bit).  Pow of integers is computed by onnxruntime in float64, so
#: it is exact while the power stays below 2^53, as for the int32 and int64 it has kernels of.
_WIDENED: dict[str, dict[str, str]] = {
    "Max": {"int16": "int32", "uint16": "int32"},
    "Min": {"int16": "int32", "uint16": "int32"},
    "Clip": {"int16": "int32", "uint16": "int32"},
    "Where": {"int16": "int32", "uint16": "int32", "uint64": "int64"},
    "Pow": {"int8": "int64", "int16": "int64", "uint8": "int64", "uint16": "int64",
            "uint32": "int64"},
}


@_lowering(*_BINARY)
def _binary(e: Emitter, s: Step) -> None:
    if s.op.name == "Pow" and s.out.dtype == "uint64":
        raise Unsupported("Pow of uint64 has no onnxruntime kernel, and no wider integer holds "
                          "it; Cast the base to int64 (or float64) before the Pow")
    _binary_as(e, s, _BINARY[s.op.name])


def _binary_as(e: Emitter, s: Step, onnx_op: str) -> None:
    """ONNX wants one dtype where NumPy promotes: inputs are cast to the result's."""
    _widened(e, s, onnx_op, list(s.inputs))


def _widened(e: Emitter, s: Step, onnx_op: str, inputs: list[Operand],
             extra: tuple[tuple[str, Any], ...] = ()) -> None:
    """``onnx_op`` of ``inputs`` cast to the result's dtype, or, where onnxruntime lacks that
    kernel, to the wider one ``_WIDENED`` names and the result cast back (a bool input, Where's
    condition, stays bool).  ``extra``: more
    inputs, (hint, Python number or None for an omitted one) written as constants in the
    dtype computed in."""
    wide = _WIDENED.get(onnx_op, {}).get(s.out.dtype)
    dtype = wide or s.out.dtype
    names = [e.cast(x, dtype) if x.dtype != "bool" or dtype == "bool" else x.name
             for x in inputs]
    names += ["" if value is None else e.constant(value, dtype, f"{s.out.name}_{hint}")
              for hint, value in extra]
    while names and not names[-1]:
        names.pop()
    if wide is None:
        e.node(onnx_op, names, s.out.name, out=s.out.name)
        return
    result = e.node(onnx_op, names, f"{s.out.name}_{wide}")
    e.node("Cast", [result], s.out.name, out=s.out.name, to=ONNX_DTYPES[s.out.dtype])


_EXTREMUM = {"Maximum": "Max", "Minimum": "Min"}


@_lowering(*_EXTREMUM)
def _extremum(e: Emitter, s: Step) -> None:
    _binary_as(e, s, _EXTREMUM[s.op.name])


@_lowering("Greater", "Less", "Equal")
def _compare(e: Emitter, s: Step) -> None:
    common = promoted(*(x.dtype for x in s.inputs))
    e.node(s.op.name, [e.cast(x, common) for x in s.inputs], s.out.name, out=s.out.name)


@_lowering("Where")
def _where(e: Emitter, s: Step) -> None:
    _widened(e, s, "Where", list(s.inputs))  # the condition is bool (its dtype rule)


@_lowering("Cast", attrs=("to",))
def _cast(e: Emitter, s: Step) -> None:
    e.node("Cast", [s.inputs[0].name], s.out.name, out=s.out.name, to=ONNX_DTYPES[s.out.dtype])


@_lowering("Clip", attrs=("min", "max"))
def _clip(e: Emitter, s: Step) -> None:
    integral = s.out.dtype not in FLOAT_DTYPES
    limits = clip_bounds(s.attrs, np.iinfo(s.out.dtype) if integral else None)
    _widened(e, s, "Clip", list(s.inputs), tuple(zip(("min", "max"), limits, strict=True)))


@_lowering("Softplus")
def _softplus(e: Emitter, s: Step) -> None:
    """(x + |x|) / 2 + log1p(e^-|x|), as the engine computes it (no overflow).  ONNX has no
    log1p: log1p(u) = u log(w) / (w - 1) with w = 1 + u (exact to a few ulp; Goldberg),
    and u where w rounds to 1.  onnxruntime's Softplus has no float64 kernel."""
    x, dtype, hint = e.cast(s.inputs[0], s.out.dtype), s.out.dtype, s.out.name
    one, two = e.constant(1.0, dtype, "one"), e.constant(2.0, dtype, "two")
    magnitude = e.node("Abs", [x], f"{hint}_abs")
    positive = e.node("Div", [e.node("Add", [x, magnitude], f"{hint}_sum"), two],
                      f"{hint}_positive")
    u = e.node("Exp", [e.node("Neg", [magnitude], f"{hint}_neg")], f"{hint}_exp")
    w = e.node("Add", [one, u], f"{hint}_w")
    ratio = e.node("Div", [e.node("Mul", [e.node("Log", [w], f"{hint}_log"), u], f"{hint}_num"),
                           e.node("Sub", [w, one], f"{hint}_den")], f"{hint}_ratio")
    tail = e.node("Where", [e.node("Equal", [w, one], f"{hint}_tiny"), u, ratio],
                  f"{hint}_log1p")
    e.node("Add", [positive, tail], hint, out=hint)


@_lowering("Dropout", attrs=("rate", "training", "seed"))
def _dropout(e: Emitter, s: Step) -> None:
    if s.attrs.training:
        raise Unsupported("training: true draws a random mask each step, which an exported "
                          "model cannot reproduce; the export is the evaluation pass, so set "
                          "training: null (or false)")
    e.node("Identity", [s.inputs[0].name], s.out.name, out=s.out.name)


# -- linear algebra --------------------------------------------------------------------------

@_lowering("Dense", attrs=("activation",))
def _dense(e: Emitter, s: Step) -> None:
    """MatMul, Add, and a Relu when the activation is fused in (``activation: relu``)."""
    x, w, b = (e.cast(v, s.out.dtype) for v in s.inputs)
    product = e.node("MatMul", [x, w], f"{s.out.name}_matmul")
    if getattr(s.attrs, "activation", "none") == "none":
        e.node("Add", [product, b], s.out.name, out=s.out.name)
        return
    if s.attrs.activation != "relu":
        raise Unsupported(f"activation {s.attrs.activation!r} has no lowering yet")
    linear = e.node("Add", [product, b], f"{s.out.name}_linear")
    e.node("Relu", [linear], s.out.name, out=s.out.name)


# -- reductions ------------------------------------------------------------------------------

_REDUCE = {"Sum": "ReduceSum", "Mean": "ReduceMean", "Max": "ReduceMax"}


@_lowering(*_REDUCE, attrs=("axis", "keepdims"))
def _reduce(e: Emitter, s: Step) -> None:
    (x,) = s.inputs
    axis = s.attrs.axis
    if isinstance(axis, list) and not axis:  # NumPy reduces over no axis: x itself
        e.node("Identity", [x.name], s.out.name, out=s.out.name)
        return
    axes = None if axis is None else [axis] if isinstance(axis, int) else list(axis)
    if s.out.dtype in _REDUCIBLE:
        reduce(e, _REDUCE[s.op.name], e.cast(x, s.out.dtype), axes, s.attrs.keepdims,
               s.out.name, out=s.out.name)
        return
    # onnxruntime reduces no int8, int16, uint8, uint16, uint32, uint64 nor bool: in int64,
    # then back (a sum wraps modulo 2^bits either way, as NumPy's does)
    if s.out.dtype == "uint64":
        (_uint64_max if s.op.name == "Max" else _uint64_sum)(e, s, x, axes)
        return
    wide = reduce(e, _REDUCE[s.op.name], e.cast(x, "int64"), axes, s.attrs.keepdims,
                  f"{s.out.name}_int64")
    e.node("Cast", [wide], s.out.name, out=s.out.name, to=ONNX_DTYPES[s.out.dtype])


def _uint64_sum(e: Emitter, s: Step, x: Operand, axes: list[int] | None) -> None:
    """Sum of uint64, which wraps modulo 2^64 in NumPy, where onnxruntime's int64 ReduceSum
    saturates on overflow: the low and the high 32 bits summed apart in int64 (exact below
    2^31 elements), then (high << 32) + low in uint64, wrapping as NumPy does."""
    hint, keep = s.out.name, s.attrs.keepdims
    shift = e.constant(32, "uint64", f"{hint}_shift")
    low = e.node("Cast", [e.node("Cast", [x.name], f"{hint}_low32", to=ONNX_DTYPES["uint32"])],
                 f"{hint}_low", to=ONNX_DTYPES["int64"])
    high = e.node("Cast", [e.node("BitShift", [x.name, shift], f"{hint}_high64",
                                  direction="RIGHT")], f"{hint}_high", to=ONNX_DTYPES["int64"])
    sums = [e.node("Cast", [reduce(e, "ReduceSum", half, axes, keep, f"{hint}_{which}_sum")],
                   f"{hint}_{which}_uint64", to=ONNX_DTYPES["uint64"])
            for which, half in (("low", low), ("high", high))]
    top = e.node("BitShift", [sums[1], shift], f"{hint}_top", direction="LEFT")
    e.node("Add", [top, sums[0]], s.out.name, out=s.out.name)


def _uint64_max(e: Emitter, s: Step, x: Operand, axes: list[int] | None) -> None:
    """Max of uint64 in int64, whose order is not uint64's above 2^63: of x - 2^63 (wrapping
    in uint64; its bits as int64 are ordered as x is), then 2^63 added back (an empty axis
    gives int64's lowest, which comes back as 0, uint64's lowest, as the engine's)."""
    half = e.constant(2**63, "uint64", f"{s.out.name}_half")
    shifted = e.node("Sub", [x.name, half], f"{s.out.name}_shifted")
    ordered = e.node("Cast", [shifted], f"{s.out.name}_int64", to=ONNX_DTYPES["int64"])
    wide = reduce(e, "ReduceMax", ordered, axes, s.attrs.keepdims, f"{s.out.name}_max")
    back = e.node("Cast", [wide], f"{s.out.name}_uint64", to=ONNX_DTYPES["uint64"])
    e.node("Add", [back, half], s.out.name, out=s.out.name)


#: The dtypes ONNX's ReduceSum, ReduceMean and ReduceMax take.
_REDUCIBLE = ("float16", "float32", "float64", "int32", "int64")


def reduce(e: Emitter, op_type: str, x: str, axes: list[int] | None, keepdims: bool,
           hint: str, out: str | None = None) -> str:
    """A ReduceX over ``axes`` (None: all), axes as an input from the opset that takes them
    so (ReduceSum 13, the others 18), else as the attribute."""
    as_input = op_type == "ReduceSum" or e.opset >= 18
    if axes is None:
        return e.node(op_type, [x], hint, out=out, keepdims=int(keepdims))
    if as_input:
        return e.node(op_type, [x, e.ints(axes, "axes")], hint, out=out,
                      keepdims=int(keepdims))
    return e.node(op_type, [x], hint, out=out, axes=axes, keepdims=int(keepdims))


@_lowering("Count", attrs=("axis",))
def _count(e: Emitter, s: Step) -> None:
    """The product of the counted sizes: a constant where they are all known, else computed
    from the value's shape (a named size is known only when data is fed)."""
    (x,) = s.inputs
    axis = tuple(s.attrs.axis) if isinstance(s.attrs.axis, list) else s.attrs.axis
    axes = normalize_axes(axis, len(x.shape))
    sizes = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in sizes):
        e.node("Identity", [e.constant(float(math.prod(sizes)), s.out.dtype, f"{s.out.name}_n")],
               s.out.name, out=s.out.name)
        return
    shape = e.node("Shape", [x.name], f"{s.out.name}_shape")
    picked = e.node("Gather", [shape, e.ints(axes, "axes")], f"{s.out.name}_sizes", axis=0)
    count = reduce(e, "ReduceProd", picked, None, False, f"{s.out.name}_count")
    e.node("Cast", [count], s.out.name, out=s.out.name, to=ONNX_DTYPES[s.out.dtype])


@_lowering("Softmax", "LogSoftmax", attrs=("axis",))
def _softmax(e: Emitter, s: Step) -> None:
    e.node(s.op.name, [e.cast(s.inputs[0], s.out.dtype)], s.out.name, out=s.out.name,
           axis=s.attrs.axis)


# -- shapes ----------------------------------------------------------------------------------

@_lowering("SumTo")
def _sum_to(e: Emitter, s: Step) -> None:
    """x summed over the axes where like broadcasts to it: the leading axes like lacks, and
    those where like has size 1 and x another; then like's shape."""
    x, like = s.inputs
    lead = len(x.shape) - len(like.shape)
    axes = [*range(lead), *(lead + i for i, d in enumerate(like.shape)
                            if d == 1 and x.shape[lead + i] != 1)]
    source = e.cast(x, s.out.dtype)
    if not axes:
        e.node("Identity", [source], s.out.name, out=s.out.name)
        return
    if lead == 0:
        reduce(e, "ReduceSum", source, axes, True, s.out.name, out=s.out.name)
        return
    summed = reduce(e, "ReduceSum", source, axes, True, f"{s.out.name}_sum")
    target = e.ints([d if isinstance(d, int) else 0 for d in like.shape], "shape") \
        if all(isinstance(d, int) for d in like.shape) else \
        e.node("Shape", [like.name], f"{s.out.name}_shape")
    e.node("Reshape", [summed, target], s.out.name, out=s.out.name, allowzero=1)


@_lowering("BroadcastTo")
def _broadcast_to(e: Emitter, s: Step) -> None:
    x, like = s.inputs
    e.node("Expand", [e.cast(x, s.out.dtype), _shape_of(e, like, s.out.name)], s.out.name,
           out=s.out.name)


@_lowering("ReshapeLike")
def _reshape_like(e: Emitter, s: Step) -> None:
    x, like = s.inputs
    e.node("Reshape", [e.cast(x, s.out.dtype), _shape_of(e, like, s.out.name)], s.out.name,
           out=s.out.name, allowzero=1)


def _shape_of(e: Emitter, like: Operand, hint: str) -> str:
    """like's shape as an int64 tensor: a constant when every size is known."""
    if all(isinstance(d, int) for d in like.shape):
        return e.ints(list(like.shape), "shape")
    return e.node("Shape", [like.name], f"{hint}_shape")


@_lowering("Reshape", attrs=("shape", "allowzero"))
def _reshape(e: Emitter, s: Step) -> None:
    e.node("Reshape", [s.inputs[0].name, e.ints(s.attrs.shape, "shape")], s.out.name,
           out=s.out.name, allowzero=int(s.attrs.allowzero))


@_lowering("Transpose", attrs=("axes",))
def _transpose(e: Emitter, s: Step) -> None:
    rank = len(s.inputs[0].shape)
    perm = None if s.attrs.axes is None else [a % rank for a in s.attrs.axes]
    e.node("Transpose", [s.inputs[0].name], s.out.name, out=s.out.name, perm=perm)


@_lowering("Squeeze", "Unsqueeze", attrs=("axes",))
def _squeeze(e: Emitter, s: Step) -> None:
    e.node(s.op.name, [s.inputs[0].name, e.ints(s.attrs.axes, "axes")], s.out.name,
           out=s.out.name)


@_lowering("Concat", attrs=("axis",))
def _concat(e: Emitter, s: Step) -> None:
    e.node("Concat", [e.cast(x, s.out.dtype) for x in s.inputs], s.out.name, out=s.out.name,
           axis=s.attrs.axis)


@_lowering("Slice", attrs=("starts", "ends", "axes", "steps"))
def _slice(e: Emitter, s: Step) -> None:
    a = s.attrs
    axes = list(range(len(a.starts))) if a.axes is None else a.axes
    steps = [1] * len(a.starts) if a.steps is None else a.steps
    e.node("Slice", [s.inputs[0].name, e.ints(a.starts, "starts"), e.ints(a.ends, "ends"),
                     e.ints(axes, "axes"), e.ints(steps, "steps")], s.out.name, out=s.out.name)


@_lowering("Gather", attrs=("axis",))
def _gather(e: Emitter, s: Step) -> None:
    data, indices = s.inputs
    e.node("Gather", [e.cast(data, s.out.dtype), indices.name], s.out.name, out=s.out.name,
           axis=s.attrs.axis)


@_lowering("ScatterAdd", attrs=("axis",))
def _scatter_add(e: Emitter, s: Step) -> None:
    """Zeros of like's shape plus the updates at the indices (repeated ones summed): a
    ScatterND with reduction add on the zeros, with the indexed axis moved first (and the
    indices' axes first in the updates), negative indices taken modulo the axis' size."""
    updates, indices, like = s.inputs
    rank, hint = len(like.shape), s.out.name
    axis = s.attrs.axis % rank
    k = len(indices.shape)
    zero = e.constant(np.zeros(1), s.out.dtype, "zero")
    shape = _shape_of(e, like, hint)
    zeros = e.node("Expand", [zero, shape], f"{hint}_zeros")
    to_front = [axis, *range(axis), *range(axis + 1, rank)]
    moved = zeros if axis == 0 else e.node("Transpose", [zeros], f"{hint}_moved", perm=to_front)
    updates_perm = [*range(axis, axis + k), *range(axis), *range(axis + k, rank + k - 1)]
    source = e.cast(updates, s.out.dtype)
    if updates_perm != list(range(len(updates_perm))):
        source = e.node("Transpose", [source], f"{hint}_updates", perm=updates_perm)
    size = e.node("Gather", [e.node("Shape", [like.name], f"{hint}_like_shape"),
                             e.constant(axis, "int64", "axis")], f"{hint}_size", axis=0)
    positions = e.node("Mod", [e.cast(indices, "int64"), size], f"{hint}_positions")
    where = e.node("Unsqueeze", [positions, e.ints([-1], "axes")], f"{hint}_where")
    if axis == 0:
        e.node("ScatterND", [moved, where, source], hint, out=hint, reduction="add")
        return
    scattered = e.node("ScatterND", [moved, where, source], f"{hint}_scattered",
                       reduction="add")
    back = [int(i) for i in np.argsort(to_front)]
    e.node("Transpose", [scattered], hint, out=hint, perm=back)


# -- the traced fallback ---------------------------------------------------------------------

def _traced(e: Emitter, s: Step, dims: Dims) -> None:
    """``s`` as the ops its forward rule is made of (see the module's docstring)."""
    tracer = Tracer(dims.copy())
    tracer.hint = s.out.name
    arrays = [SymbolicArray(tracer, x.shape, x.dtype, label=x.name) for x in s.inputs]
    try:
        if s.op.stochastic:
            raise TraceError("it is random")
        result = tracer.operand(s.op.forward(Namespace(tracer), s.attrs, *arrays))
    except (TraceError, TypeError, ValueError) as exc:
        raise Unsupported(f"op {s.op.name} has no ONNX counterpart, and its forward rule "
                          f"cannot be written as other ops: {exc}") from None
    used = _ancestors(result)
    counters = iter(range(1, len(tracer.nodes) + 1))
    for array in tracer.nodes:
        if id(array) not in used:
            continue
        node = array.node
        assert node is not None
        array.label = s.out.name if array is result else e.fresh(f"{s.out.name}_{next(counters)}")
        if node.op == "Constant":
            e.initializer(array.label, np.asarray(node.extra["value"],
                                                  dtype=node.extra["dtype"]))
            continue
        if node.op == s.op.name:
            raise Unsupported(f"op {s.op.name}'s forward rule calls {s.op.name} itself")
        op = REGISTRY[node.op]
        inputs = tuple(_operand(e, x, node.inputs) for x in node.inputs)
        lower(e, Step(op, op.attrs(**node.attrs), inputs,
                      Operand(array.label, array.dtype, array.shape_)), tracer.dims)
    if id(result) not in used:  # the rule returned an input, or a number
        source = _operand(e, result, [result])
        e.node("Identity", [e.cast(source, s.out.dtype)], s.out.name, out=s.out.name)


def _ancestors(result: SymbolicArray) -> set[int]:
    """The emitted arrays the result is computed from (a rule may compute more)."""
    seen: set[int] = set()
    stack = [result]
    while stack:
        array = stack.pop()
        if array.node is None or id(array) in seen:
            continue
        seen.add(id(array))
        stack.extend(array.node.inputs)
    return seen


def _operand(e: Emitter, array: SymbolicArray, siblings: list[SymbolicArray]) -> Operand:
    """An input of a traced node; an inline number becomes a constant of the dtype the
    tracer gave it (the floats among its siblings, promoted)."""
    if array.literal is None:
        return Operand(array.label, array.dtype, array.shape_)
    floats = [x.dtype for x in siblings if x.literal is None and x.dtype in FLOAT_DTYPES]
    dtype = promoted(*floats) if floats else "float64"
    return Operand(e.constant(array.literal, dtype, "c"), dtype, ())
