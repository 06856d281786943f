"""One converter per ONNX op: the engine nodes that compute what the ONNX node computes.

Most ONNX ops are one engine op under the same or another name (``ReduceSum`` is
``Sum``, ``Max`` of several inputs a chain of ``Maximum``).  Where ONNX takes a
tensor input that the engine takes as an attribute (a Reshape's shape, a Slice's
starts, a reduction's axes), the input must be a constant: an initializer, a
``Constant`` node or, in the backend adapter, an input whose value is given.  Some
ops become a few nodes (``Gemm`` is ``Transpose``, ``MatMul``, ``Mul`` and ``Add``).
Anything the engine would compute differently from ONNX is refused with the reason.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine.graph.shapes import ShapeError
from engine.onnx.types import Unsupported, dtype_name
from engine.ops import REGISTRY

Ref = str | int | float
FLOATS = ("float16", "float32", "float64")


class NodeContext:
    """What a converter sees of one ONNX node: its inputs as spec names, constants,
    attributes, dtypes and shapes; and how it adds engine nodes."""

    def __init__(self, importer: Any, node: Any, index: int):
        self.importer, self.node, self.index = importer, node, index
        self.opset: int = importer.opset
        self.op = node.op_type
        self.helper = importer.onnx.helper

    def where(self) -> str:
        label = f"node {self.index}" + (f" {self.node.name!r}" if self.node.name else "")
        return f"{self.importer.source}: {label} ({self.op}, opset {self.opset})"

    def unsupported(self, message: str) -> Unsupported:
        return Unsupported(f"{self.where()}: {message}")

    # -- reading ---------------------------------------------------------------------------

    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                value = self.helper.get_attribute_value(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def has(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def input(self, i: int) -> str:
        if not self.has(i):
            raise self.unsupported(f"input {i} is missing")
        return self.importer.ref(self.node.input[i])

    def inputs(self) -> list[str]:
        return [self.input(i) for i in range(len(self.node.input)) if self.has(i)]

    def static(self, i: int, what: str) -> np.ndarray | None:
        """Input ``i`` as a constant array (None when the optional input is absent)."""
        if not self.has(i):
            return None
        name = self.node.input[i]
        if name in self.importer.known:
            return self.importer.known[name]
        if name in self.importer.bound:
            self.importer.fixed[name] = self.importer.bound[name]
            return self.importer.bound[name]
        raise self.unsupported(
            f"its {what} (input {i}, {name!r}) must be a constant, an initializer or a "
            f"Constant node: the engine takes it as an attribute, fixed when the spec is "
            f"loaded")

    def dtype(self, i: int) -> str:
        return self.importer.dtype(self.node.input[i], f"input {i} {self.node.input[i]!r}",
                                   self.where())

    def rank(self, i: int) -> int | None:
        shape = self.importer.shape(self.node.input[i])
        return None if shape is None else len(shape)

    def need_rank(self, i: int, why: str) -> int:
        rank = self.rank(i)
        if rank is None:
            raise self.unsupported(f"the rank of input {i} ({self.node.input[i]!r}) is unknown, "
                                   f"and {why}")
        return rank

    def wants(self, j: int) -> bool:
        return j < len(self.node.output) and self.node.output[j] != ""

    # -- writing ---------------------------------------------------------------------------

    def emit(self, op: str, inputs: Sequence[Ref], *, out: int | None = None, role: str = "",
             **attrs: Any) -> str:
        """Add an engine node; ``out=j`` makes it ONNX output j (named after it), else a
        helper named after the node's first output and ``role``."""
        importer = self.importer
        if out is not None:
            name = importer.names.of(self.node.output[out])
            importer.refs[self.node.output[out]] = name
        else:
            name = importer.names.take(f"{importer.names.of(self.node.output[0])}_{role}")
        importer.sections["nodes"][name] = {"op": op, "inputs": list(inputs), **attrs}
        return name

    def name_last(self, j: int, last: str) -> None:
        """Node ``last``, the one added last, becomes ONNX output ``j`` (it took a helper's
        name, and nothing reads it yet)."""
        nodes, importer = self.importer.sections["nodes"], self.importer
        assert next(reversed(nodes)) == last, (last, next(reversed(nodes)))
        entry = nodes.pop(last)
        name = importer.names.of(self.node.output[j])
        nodes[name] = entry
        importer.refs[self.node.output[j]] = name

    def array(self, role: str, array: np.ndarray) -> str:
        """A constant the translation needs (a class range): declared like a model's."""
        importer = self.importer
        name = importer.names.take(f"{importer.names.of(self.node.output[0])}_{role}")
        importer.names.given[name] = name
        importer.known[name] = array
        return importer.ref(name)

    def constant(self, j: int, array: np.ndarray) -> None:
        """Output ``j`` is a known array (a Constant node): a constant where it is used."""
        self.importer.known[self.node.output[j]] = array


Converter = Callable[[NodeContext], None]
CONVERTERS: dict[str, Converter] = {}


def converts(*ops: str) -> Callable[[Converter], Converter]:
    def register(function: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = function
        return function
    return register


def accepts(op: str, *dtypes: str, **attrs: Any) -> bool:
    """Whether the engine's ``op`` takes inputs of these dtypes (its dtype rule)."""
    definition = REGISTRY[op]
    try:
        definition.result_dtype(definition.attrs(**attrs), dtypes)
    except (ShapeError, ValueError):
        return False
    return True


# -- elementwise --------------------------------------------------------------------------

_SAME = ("Exp", "Log", "Neg", "Relu", "Tanh", "Sigmoid", "Sqrt", "Abs", "Erf", "Softplus",
         "Identity", "Add", "Sub", "Mul", "Greater", "Less", "Equal", "Where", "MatMul")


@converts(*_SAME)
def _same(ctx: NodeContext) -> None:
    ctx.emit(ctx.op, ctx.inputs(), out=0)


@converts("Div")
def _div(ctx: NodeContext) -> None:
    """Integers divide truncating toward zero in ONNX: in float64, then Cast back, which
    truncates; exact while the operands fit in 32 bits (int64 is refused)."""
    dtype = ctx.dtype(0)
    if dtype in FLOATS:
        ctx.emit("Div", ctx.inputs(), out=0)
        return
    if dtype in ("int64", "uint64"):
        raise ctx.unsupported(f"Div of {dtype} truncates toward zero in ONNX, which the "
                              "engine computes exactly only for integers of 32 bits or less")
    a, b = (ctx.emit("Cast", [ctx.input(i)], role=f"{'ab'[i]}_float", to="float64")
            for i in (0, 1))
    quotient = ctx.emit("Div", [a, b], role="float")
    ctx.emit("Cast", [quotient], out=0, to=dtype)


@converts("Pow")
def _pow(ctx: NodeContext) -> None:
    """ONNX's result has the base's dtype, whatever the exponent's."""
    base, exponent = ctx.input(0), ctx.input(1)
    base_t, exponent_t = ctx.dtype(0), ctx.dtype(1)
    if base_t in FLOATS:
        if exponent_t != base_t:
            exponent = ctx.emit("Cast", [exponent], role="exponent", to=base_t)
        ctx.emit("Pow", [base, exponent], out=0)
        return
    if base_t == exponent_t and accepts("Pow", base_t, exponent_t):
        ctx.emit("Pow", [base, exponent], out=0)
        return
    # an integer base: computed in float64, exact for results below 2**53, then truncated
    base = ctx.emit("Cast", [base], role="base", to="float64")
    if exponent_t != "float64":
        exponent = ctx.emit("Cast", [exponent], role="exponent", to="float64")
    power = ctx.emit("Pow", [base, exponent], role="float64")
    ctx.emit("Cast", [power], out=0, to=base_t)


def _chain(ctx: NodeContext, op: str, inputs: list[str], out: int | None, role: str) -> str:
    """``op`` folded over the inputs (variadic ONNX ops: Max, Min, Sum)."""
    if len(inputs) == 1:
        return ctx.emit("Identity", inputs, out=out, role=role)
    result = inputs[0]
    for k, other in enumerate(inputs[1:], start=2):
        last = k == len(inputs)
        result = ctx.emit(op, [result, other], out=out if last else None,
                          role=role if last else f"{role or 'partial'}{k}")
    return result


@converts("Max", "Min", "Sum")
def _variadic(ctx: NodeContext) -> None:
    op = {"Max": "Maximum", "Min": "Minimum", "Sum": "Add"}[ctx.op]
    _chain(ctx, op, ctx.inputs(), 0, "")


@converts("Mean")
def _mean(ctx: NodeContext) -> None:
    inputs = ctx.inputs()
    if len(inputs) == 1:
        ctx.emit("Identity", inputs, out=0)
        return
    total = _chain(ctx, "Add", inputs, None, "sum")
    ctx.emit("Div", [total, len(inputs)], out=0)


@converts("Cast")
def _cast(ctx: NodeContext) -> None:
    to = dtype_name(ctx.attr("to"))
    if ctx.node.input[0] in ctx.importer.counts and to in FLOATS:
        tensor, axes = ctx.importer.counts[ctx.node.input[0]]
        count = ctx.emit("Count", [ctx.importer.ref(tensor)], role="count", axis=axes)
        ctx.emit("Cast", [count], out=0, to=to)
        return
    allowed = typing.get_args(REGISTRY["Cast"].attrs.model_fields["to"].annotation)
    if to not in allowed:
        label = ctx.importer.onnx.TensorProto.DataType.Name(ctx.attr("to")).lower()
        raise ctx.unsupported(f"Cast to {label}: the engine casts to {', '.join(allowed)}")
    ctx.dtype(0)  # refused here if the input's dtype is not the engine's
    ctx.emit("Cast", [ctx.input(0)], out=0, to=to)


@converts("Clip")
def _clip(ctx: NodeContext) -> None:
    if ctx.opset >= 11:
        low, high = ctx.static(1, "min"), ctx.static(2, "max")
        bounds = {"min": None if low is None else low.item(),
                  "max": None if high is None else high.item()}
        for which, bound in bounds.items():  # the attribute is a float: no rounding there
            if isinstance(bound, int) and float(bound) != bound:
                raise ctx.unsupported(f"its {which} {bound} is an integer that a float64 "
                                      "cannot hold exactly, and the engine's Clip bounds are "
                                      "float64 attributes")
    else:
        bounds = {"min": ctx.attr("min"), "max": ctx.attr("max")}
    if None not in bounds.values() and bounds["min"] > bounds["max"]:
        bounds["min"] = bounds["max"]  # ONNX (as np.clip): every element is max
    ctx.emit("Clip", [ctx.input(0)], out=0, **{k: v for k, v in bounds.items() if v is not None})


@converts("Gelu")
def _gelu(ctx: NodeContext) -> None:
    approximate = ctx.attr("approximate", "none")
    ctx.emit("Gelu", [ctx.input(0)], out=0,
             **({"approximate": approximate} if approximate != "none" else {}))


# -- linear algebra -----------------------------------------------------------------------

@converts("Gemm")
def _gemm(ctx: NodeContext) -> None:
    """alpha * A' @ B' + beta * C, A' and B' transposed where asked."""
    a, b = ctx.input(0), ctx.input(1)
    if ctx.attr("transA", 0):
        a = ctx.emit("Transpose", [a], role="a_t", axes=[1, 0])
    if ctx.attr("transB", 0):
        b = ctx.emit("Transpose", [b], role="b_t", axes=[1, 0])
    alpha, beta, bias = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0), ctx.has(2)
    last = alpha == 1.0 and not bias
    product = ctx.emit("MatMul", [a, b], out=0 if last else None, role="matmul")
    if alpha != 1.0:
        product = ctx.emit("Mul", [product, alpha], out=None if bias else 0, role="alpha")
    if bias:
        c = ctx.input(2)
        if beta != 1.0:
            c = ctx.emit("Mul", [c, beta], role="beta")
        ctx.emit("Add", [product, c], out=0)


# -- reductions and normalization ---------------------------------------------------------

_REDUCE = {"ReduceSum": ("Sum", 13), "ReduceMean": ("Mean", 18), "ReduceMax": ("Max", 18)}


@converts(*_REDUCE)
def _reduce(ctx: NodeContext) -> None:
    op, axes_input_since = _REDUCE[ctx.op]
    axes = ctx.static(1, "axes") if ctx.opset >= axes_input_since else ctx.attr("axes")
    axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if not axes and ctx.attr("noop_with_empty_axes", 0):
        ctx.emit("Identity", [ctx.input(0)], out=0)
        return
    attrs = {"axis": axes or None, "keepdims": bool(ctx.attr("keepdims", 1))}
    shape = ctx.importer.shape(ctx.node.input[0])
    if shape is not None and 0 in shape and not _reduces_empty(op, shape, attrs):
        raise ctx.unsupported(f"the engine's {op} cannot reduce an axis of size 0 here (ONNX "
                              "defines it: the reduction's identity)")
    ctx.emit(op, [ctx.input(0)], out=0, **attrs)


def _reduces_empty(op: str, shape: tuple[int | None, ...], attrs: dict[str, Any]) -> bool:
    """Whether the engine's reduction runs on an input with a size-0 axis (asked of the op
    itself, so that this follows the op as it changes)."""
    definition = REGISTRY[op]
    empty = np.zeros([d or 0 for d in shape])
    try:
        definition.forward(np, definition.attrs(**attrs), empty)
    except (ValueError, ShapeError):
        return False
    return True


@converts("Softmax", "LogSoftmax")
def _softmax(ctx: NodeContext) -> None:
    axis = ctx.attr("axis", -1 if ctx.opset >= 13 else 1)
    if ctx.opset < 13:
        rank = ctx.need_rank(0, f"before opset 13 {ctx.op} flattens its input at axis")
        if axis % rank != rank - 1:
            raise ctx.unsupported(f"before opset 13, {ctx.op} normalizes over every axis from "
                                  f"axis {axis} on together; the engine normalizes one axis "
                                  "(supported here: the last)")
    ctx.emit(ctx.op, [ctx.input(0)], out=0, axis=axis)


@converts("LayerNormalization")
def _layer_norm(ctx: NodeContext) -> None:
    axis, eps = ctx.attr("axis", -1), ctx.attr("epsilon", 1e-5)
    x = ctx.input(0)
    ctx.emit("LayerNorm", ctx.inputs(), out=0, axis=axis, eps=eps)
    if not (ctx.wants(1) or ctx.wants(2)):
        return
    rank = ctx.need_rank(0, "the outputs Mean and InvStdDev reduce over its last axes")
    axes = list(range(axis % rank, rank))
    mean = ctx.emit("Mean", [x], out=1 if ctx.wants(1) else None, role="mean", axis=axes,
                    keepdims=True)
    if ctx.wants(2):
        centred = ctx.emit("Sub", [x, mean], role="centred")
        squares = ctx.emit("Mul", [centred, centred], role="squares")
        variance = ctx.emit("Mean", [squares], role="variance", axis=axes, keepdims=True)
        shifted = ctx.emit("Add", [variance, eps], role="shifted")
        ctx.emit("Pow", [shifted, -0.5], out=2)


@converts("NegativeLogLikelihoodLoss")
def _nll(ctx: NodeContext) -> None:
    """-x[n, target[n], d...] (times the target's class weight), summed, averaged or not.

    Written with Where picking the target's entry of the log-probabilities, classes moved
    last: exact, where the engine's NLL (of probabilities, Exp of these) would take
    log(exp(x)) and turn an underflowed probability into NaN."""
    _picked_loss(ctx, ctx.input(0))


@converts("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(ctx: NodeContext) -> None:
    """The engine's CrossEntropy (classes moved last) where ONNX asks for no more than it
    computes; else NegativeLogLikelihoodLoss of LogSoftmax over the classes (axis 1), as
    ONNX defines it, with the log-probabilities as the optional second output."""
    reduction = ctx.attr("reduction", "mean")
    plain = not (ctx.wants(1) or ctx.has(2) or ctx.attr("ignore_index") is not None)
    if plain and "CrossEntropy" in REGISTRY and reduction in typing.get_args(
            REGISTRY["CrossEntropy"].attrs.model_fields["reduction"].annotation):
        logits, target = _classes_last(ctx, ctx.input(0))
        ctx.emit("CrossEntropy", [logits, target], out=0, reduction=reduction)
        return
    log_probabilities = ctx.emit("LogSoftmax", [ctx.input(0)], role="log_prob", axis=1,
                                 **({"out": 1} if ctx.wants(1) else {}))
    _picked_loss(ctx, log_probabilities)


def _classes_last(ctx: NodeContext, scores: str) -> tuple[str, str]:
    """``scores`` (laid out as input 0, classes on axis 1, as ONNX's losses take them) with
    the classes moved last, where the engine's NLL and CrossEntropy take them, and the
    target (input 1) as the int64 class indices they read."""
    rank = ctx.need_rank(0, "its classes (axis 1) are moved last")
    if rank > 2:
        scores = ctx.emit("Transpose", [scores], role="classes_last",
                          axes=[0, *range(2, rank), 1])
    target = ctx.input(1)
    if ctx.dtype(1) != "int64":
        target = ctx.emit("Cast", [target], role="target", to="int64")
    return scores, target


def _picked_loss(ctx: NodeContext, scores: str) -> None:
    """ONNX's NLL of log-probabilities ``scores`` (classes on axis 1) and the target,
    input 1, with the class weights of input 2, ignore_index and reduction."""
    reduction, ignore = ctx.attr("reduction", "mean"), ctx.attr("ignore_index")
    scores, target = _classes_last(ctx, scores)
    classes = ctx.importer.shape(ctx.node.input[0])[1]
    if classes is None:
        raise ctx.unsupported("the number of classes (axis 1 of input 0) is not known")
    dtype = ctx.dtype(0)
    ignored = None
    if ignore is not None:
        ignored = ctx.emit("Equal", [target, int(ignore)], role="ignored")
    column = ctx.emit("Unsqueeze", [target], role="target_column", axes=[-1])
    hot = ctx.emit("Equal", [column, ctx.array("classes", np.arange(classes))], role="hot")
    picked = ctx.emit("Where", [hot, scores, 0], role="picked")
    losses = ctx.emit("Neg", [ctx.emit("Sum", [picked], role="picked_sum", axis=-1)],
                      role="losses")
    weight = None
    if ctx.has(2):
        chosen = ctx.emit("Where", [hot, ctx.input(2), 0], role="weight_picked")
        weight = ctx.emit("Sum", [chosen], role="weight", axis=-1)
        losses = ctx.emit("Mul", [losses, weight], role="weighted")
    if ignored is not None:
        losses = ctx.emit("Where", [ignored, 0, losses], role="kept")
        if reduction == "mean":  # the weights applied, which the mean divides by
            weight = ctx.emit("Where", [ignored, 0, weight], role="weight_kept") if weight \
                else ctx.emit("Sub", [1, ctx.emit("Cast", [ignored], role="ignored_f",
                                                  to=dtype)], role="weight_kept")
    if reduction == "sum":
        losses = ctx.emit("Sum", [losses], role="sum")
    elif reduction == "mean" and weight is None:
        losses = ctx.emit("Mean", [losses], role="mean")
    elif reduction == "mean":
        total = ctx.emit("Sum", [losses], role="total")
        losses = ctx.emit("Div", [total, ctx.emit("Sum", [weight], role="weights")],
                          role="mean")
    elif reduction != "none":
        raise ctx.unsupported(f"reduction {reduction!r} (ONNX has none, sum and mean)")
    ctx.name_last(0, losses)


@converts("Dropout")
def _dropout(ctx: NodeContext) -> None:
    if ctx.opset >= 12:
        ratio, training = ctx.static(1, "ratio"), ctx.static(2, "training_mode")
        rate = 0.5 if ratio is None else float(ratio)
        training = training is not None and bool(training)
    else:
        rate, training = float(ctx.attr("ratio", 0.5)), False
    x = ctx.input(0)
    if training and rate != 0.0:
        raise ctx.unsupported("Dropout in training mode draws its mask from its own random "
                              "numbers, which no other library reproduces")
    if training:
        ctx.emit("Identity", [x], out=0)
    else:
        ctx.emit("Dropout", [x], out=0, rate=rate)
    if ctx.wants(1):  # the mask of the evaluation pass: every element kept
        ones = ctx.emit("BroadcastTo", [1, x], role="ones")
        ctx.emit("Cast", [ones], out=1, to="bool")


# -- shapes -------------------------------------------------------------------------------

def _ints(array: np.ndarray | Sequence[int] | None) -> list[int] | None:
    return None if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


@converts("Reshape")
def _reshape(ctx: NodeContext) -> None:
    like = _whole_shape(ctx, 1)
    if like is not None:
        ctx.emit("ReshapeLike", [ctx.input(0), like], out=0)
        return
    shape = _ints(ctx.static(1, "shape") if ctx.opset >= 5 else ctx.attr("shape"))
    allowzero = bool(ctx.attr("allowzero", 0))
    ctx.emit("Reshape", [ctx.input(0)], out=0, shape=shape,
             **({"allowzero": True} if allowzero else {}))


@converts("Flatten")
def _flatten(ctx: NodeContext) -> None:
    rank = ctx.need_rank(0, "Flatten's axis counts from it")
    axis = ctx.attr("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        shape = [1, -1]
    elif axis == 1:
        shape = [0, -1]
    else:
        leading = ctx.importer.shape(ctx.node.input[0])[:axis]
        if any(d is None for d in leading):
            raise ctx.unsupported(f"Flatten at axis {axis} needs the sizes of the first "
                                  f"{axis} axes, which are not known")
        shape = [int(np.prod(leading)), -1]
    ctx.emit("Reshape", [ctx.input(0)], out=0, shape=shape)


@converts("Transpose")
def _transpose(ctx: NodeContext) -> None:
    perm = ctx.attr("perm")
    ctx.emit("Transpose", [ctx.input(0)], out=0,
             **({"axes": list(perm)} if perm is not None else {}))


@converts("Squeeze", "Unsqueeze")
def _squeeze(ctx: NodeContext) -> None:
    axes = _ints(ctx.static(1, "axes") if ctx.opset >= 13 else ctx.attr("axes"))
    if axes is None and ctx.op == "Squeeze":
        shape = ctx.importer.shape(ctx.node.input[0])
        if shape is None or any(d is None for d in shape):
            raise ctx.unsupported("Squeeze without axes removes the axes of size 1, and the "
                                  "input's shape is not known")
        axes = [i for i, d in enumerate(shape) if d == 1]
    if axes is None:
        raise ctx.unsupported("Unsqueeze needs its axes")
    ctx.emit(ctx.op, [ctx.input(0)], out=0, axes=axes)


@converts("Concat")
def _concat(ctx: NodeContext) -> None:
    ctx.emit("Concat", ctx.inputs(), out=0, axis=ctx.attr("axis"))


@converts("Slice")
def _slice(ctx: NodeContext) -> None:
    if ctx.opset >= 10:
        starts, ends = ctx.static(1, "starts"), ctx.static(2, "ends")
        axes, steps = ctx.static(3, "axes"), ctx.static(4, "steps")
    else:
        starts, ends, axes, steps = (ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"),
                                     None)
    attrs = {"starts": _ints(starts), "ends": _ints(ends)}
    if axes is not None:
        attrs["axes"] = _ints(axes)
    if steps is not None:
        attrs["steps"] = _ints(steps)
    ctx.emit("Slice", [ctx.input(0)], out=0, **attrs)


@converts("Gather")
def _gather(ctx: NodeContext) -> None:
    source = ctx.node.input[0]
    if source in ctx.importer.shapes:  # sizes of a shape known only at run time
        tensor, _ = ctx.importer.shapes[source]
        indices = ctx.static(1, "indices")
        if indices is None or indices.ndim != 1 or ctx.attr("axis", 0) != 0:
            raise ctx.unsupported("Gather from a run-time shape takes a 1-D constant list")
        ctx.importer.shapes[ctx.node.output[0]] = (tensor, _ints(indices))
        return
    indices = ctx.input(1)
    if ctx.dtype(1) != "int64":
        indices = ctx.emit("Cast", [indices], role="indices", to="int64")
    ctx.emit("Gather", [ctx.input(0), indices], out=0, axis=ctx.attr("axis", 0))


@converts("Constant")
def _constant(ctx: NodeContext) -> None:
    onnx = ctx.importer.onnx
    for attribute in ctx.node.attribute:
        value = ctx.helper.get_attribute_value(attribute)
        if attribute.name == "value":
            array = onnx.numpy_helper.to_array(value)
        elif attribute.name in ("value_float", "value_floats"):
            array = np.asarray(value, dtype=np.float32)
        elif attribute.name in ("value_int", "value_ints"):
            array = np.asarray(value, dtype=np.int64)
        else:
            raise ctx.unsupported(f"a Constant given by {attribute.name!r}: the engine's "
                                  "constants are numbers")
        ctx.constant(0, array)
        return
    raise ctx.unsupported("a Constant without a value")


# -- shapes known only at run time (a named dimension such as batch) ----------------------

@converts("Shape")
def _shape(ctx: NodeContext) -> None:
    """A constant where the shape is known; else a symbol that Expand, Reshape and
    ReduceProd-then-Cast turn into BroadcastTo, ReshapeLike and Count."""
    name = ctx.node.input[0]
    shape = ctx.importer.shape(name)
    start, end = ctx.attr("start", 0), ctx.attr("end")
    if shape is not None and None not in shape:
        ctx.constant(0, np.asarray(shape[start:end], dtype=np.int64))
        return
    if start != 0 or end is not None:
        raise ctx.unsupported("Shape with start or end of a shape known only at run time")
    ctx.importer.shapes[ctx.node.output[0]] = (name, None)


def _whole_shape(ctx: NodeContext, i: int) -> str | None:
    """The tensor whose whole run-time shape input ``i`` is, as a spec name, or None."""
    symbol = ctx.importer.shapes.get(ctx.node.input[i]) if ctx.has(i) else None
    if symbol is None:
        return None
    if symbol[1] is not None:
        raise ctx.unsupported("a part of a run-time shape where the whole one is needed")
    return ctx.importer.ref(symbol[0])


@converts("ReduceProd")
def _reduce_prod(ctx: NodeContext) -> None:
    """Only the product of a run-time shape's sizes: the engine's Count."""
    symbol = ctx.importer.shapes.get(ctx.node.input[0])
    if symbol is None or ctx.attr("keepdims", 1) or ctx.has(1):
        raise ctx.unsupported("ReduceProd is read only as the element count of a shape "
                              "(keepdims 0, over everything)")
    tensor, axes = symbol
    rank = ctx.importer.shape(tensor)
    if axes is None:
        axes = list(range(len(rank))) if rank is not None else None
    if axes is None:
        raise ctx.unsupported("the rank of the counted tensor is unknown")
    ctx.importer.counts[ctx.node.output[0]] = (tensor, axes)


@converts("Expand")
def _expand(ctx: NodeContext) -> None:
    """x broadcast to a tensor's run-time shape, or to a constant shape (a constant of
    zeros of that shape stands for it): BroadcastTo."""
    like = _whole_shape(ctx, 1)
    if like is not None:
        ctx.emit("BroadcastTo", [ctx.input(0), like], out=0)
        return
    target, shape = ctx.static(1, "shape"), ctx.importer.shape(ctx.node.input[0])
    if shape is None or None in shape:
        raise ctx.unsupported("Expand of a tensor whose shape is not known")
    result = np.broadcast_shapes(tuple(shape), tuple(_ints(target)))
    if result == tuple(shape):
        ctx.emit("Identity", [ctx.input(0)], out=0)
        return
    like = ctx.array("like", np.zeros(result, dtype=np.dtype(ctx.dtype(0))))
    ctx.emit("BroadcastTo", [ctx.input(0), like], out=0)
