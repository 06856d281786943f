"""A symbolic array namespace: the ops' vjp rules, run on it, write graph nodes.

Each op's derivative is written once, as an array-API function of ``xp``.  The
executor calls it with NumPy; ``engine.grad`` calls it with a ``Namespace`` whose
arrays (``SymbolicArray``) record every operation as a node of a registered op,
with its shape and dtype inferred by that op's own rules.  This is design (a) of
the gradient-graph issue: one source per derivative, traced (as tinygrad builds
gradients from UOps and JAX traces rules into jaxprs).

Shapes may hold named dimensions (``batch``).  Where a rule reads a shape to
compute with it, the namespace keeps it symbolic: a named size is a ``SymbolicDim``
(a ``str`` that remembers which value and axis it is), products of sizes are a
``SymbolicCount`` that becomes a ``Count`` node when it meets an array, and a
target shape for ``broadcast_to`` or ``reshape`` is taken from a value that has it
(``BroadcastTo(g, like)``), or expressed as ``Squeeze``/``Unsqueeze`` when only
size-1 axes differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from engine.graph.shapes import Dims, Shape, ShapeError, format_shape
from engine.ops import REGISTRY
from engine.ops.base import FLOAT_DTYPES, INT_DTYPES, weak_dtype


class TraceError(Exception):
    """A vjp rule did something the symbolic namespace cannot write as graph nodes."""


Number = int | float


class SymbolicDim(str):
    """A named size (``batch``) that knows the value and axis it is read from."""

    source: SymbolicArray
    axis: int

    def __new__(cls, name: str, source: SymbolicArray, axis: int) -> SymbolicDim:
        dim = super().__new__(cls, name)
        dim.source, dim.axis = source, axis
        return dim

    def __mul__(self, other: Any) -> SymbolicCount:  # type: ignore[override]
        return SymbolicCount((self,)) * other

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> SymbolicCount:
        return SymbolicCount((self,)) // other

    __truediv__ = __floordiv__


@dataclass(frozen=True)
class SymbolicCount:
    """A product of sizes, some of them named: ``factors`` times ``scale``."""

    factors: tuple[SymbolicDim, ...] = ()
    scale: Fraction = Fraction(1)

    def __mul__(self, other: Any) -> SymbolicCount:
        if isinstance(other, SymbolicCount):
            return SymbolicCount(self.factors + other.factors, self.scale * other.scale)
        if isinstance(other, SymbolicDim):
            return SymbolicCount((*self.factors, other), self.scale)
        if isinstance(other, int):
            return SymbolicCount(self.factors, self.scale * other)
        return NotImplemented

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> SymbolicCount:
        if isinstance(other, int):
            return SymbolicCount(self.factors, self.scale / other)
        if isinstance(other, SymbolicDim):
            factors = list(self.factors)
            for index, factor in enumerate(factors):
                if factor == other:
                    del factors[index]
                    return SymbolicCount(tuple(factors), self.scale)
        raise TraceError(f"cannot divide the element count {self} by {other}")

    __truediv__ = __floordiv__

    def __str__(self) -> str:
        return " * ".join([str(self.scale), *self.factors])


@dataclass(eq=False)
class SymbolicArray:
    """A value of the graph being written: a name (assigned when the spec is written), its
    inferred shape (names kept) and dtype.  Operators emit nodes through its tracer."""

    tracer: Tracer
    shape_: Shape
    dtype: str
    label: str = ""
    node: EmittedNode | None = None
    literal: Number | None = None  # an inline number written into its users' inputs
    empty: bool = False  # zeros without elements (``xp.zeros`` with a 0 size): no node

    # -- what rules read -------------------------------------------------------------------

    @property
    def shape(self) -> tuple[Any, ...]:
        return tuple(SymbolicDim(d, self, i) if isinstance(d, str) else d
                     for i, d in enumerate(self.shape_))

    @property
    def ndim(self) -> int:
        return len(self.shape_)

    @property
    def size(self) -> int | SymbolicCount:
        count: Any = 1
        for dim in self.shape:
            count = count * dim
        return count

    @property
    def mT(self) -> SymbolicArray:  # the array API spells it so
        if self.ndim < 2:
            raise TraceError(f"matrix transpose of a value of rank {self.ndim}")
        axes = [*range(self.ndim - 2), self.ndim - 1, self.ndim - 2]
        return self.tracer.emit("Transpose", [self], {"axes": axes})

    # -- arithmetic ------------------------------------------------------------------------

    def _binary(self, op: str, other: Any, reverse: bool = False) -> SymbolicArray:
        other = self.tracer.operand(other)
        return self.tracer.emit(op, [other, self] if reverse else [self, other])

    def __add__(self, other): return self._binary("Add", other)
    def __radd__(self, other): return self._binary("Add", other, True)
    def __sub__(self, other): return self._binary("Sub", other)
    def __rsub__(self, other): return self._binary("Sub", other, True)
    def __mul__(self, other): return self._binary("Mul", other)
    def __rmul__(self, other): return self._binary("Mul", other, True)
    def __truediv__(self, other): return self._binary("Div", other)
    def __rtruediv__(self, other): return self._binary("Div", other, True)
    def __pow__(self, other): return self._binary("Pow", other)
    def __rpow__(self, other): return self._binary("Pow", other, True)
    def __gt__(self, other): return self._binary("Greater", other)
    def __lt__(self, other): return self._binary("Less", other)
    def __eq__(self, other): return self._binary("Equal", other)  # type: ignore[override]
    def __neg__(self): return self.tracer.emit("Neg", [self])

    __hash__ = object.__hash__
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """NumPy scalars (``np.float64(2) * x``) and NumPy's own ufuncs on symbolic arrays:
        those with a graph op are traced, any other is a TraceError naming it."""
        op = _UFUNCS.get(ufunc.__name__)
        if method != "__call__" or kwargs or op is None:
            raise TraceError(f"the NumPy function {ufunc.__name__} was called on a symbolic "
                             "array: the rule is not written with the array namespace xp")
        return self.tracer.emit(op, [self.tracer.operand(x) for x in inputs])

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TraceError("a NumPy function was called on a symbolic array: the rule is not "
                         "written with the array namespace xp")

    def __bool__(self) -> bool:
        raise TraceError("a vjp rule branched on an array's values, which a graph cannot do")

    def __getitem__(self, key: Any) -> SymbolicArray:
        """New axes (``x[..., None]``) become Unsqueeze, basic slices (``g[:, 2:5]``) Slice;
        indexing by arrays or integers cannot be traced."""
        key = key if isinstance(key, tuple) else (key,)
        if key.count(Ellipsis) > 1 or any(
                k is not None and k is not Ellipsis and not isinstance(k, slice) for k in key):
            raise TraceError(f"indexing with {key!r}: only slices and new axes can be traced")
        if Ellipsis not in key:
            key = (*key, Ellipsis)
        split = key.index(Ellipsis)
        before, after = key[:split], key[split + 1:]
        if any(isinstance(k, slice) for k in key) and None in key:
            raise TraceError(f"indexing with {key!r}: slices and new axes at once")
        if None in key:
            rank = self.ndim + len(before) + len(after)
            axes = [*range(len(before)), *range(rank - len(after), rank)]
            return self.tracer.emit("Unsqueeze", [self], {"axes": axes})
        positions = [*enumerate(before), *((self.ndim - len(after) + i, k)
                                           for i, k in enumerate(after))]
        cuts = [(axis, k) for axis, k in positions if k != slice(None)]
        if not cuts:
            return self
        starts, ends, steps = [], [], []
        for _axis, cut in cuts:
            step = 1 if cut.step is None else cut.step
            starts.append(cut.start if cut.start is not None else (0 if step > 0 else -1))
            ends.append(cut.stop if cut.stop is not None else (_END if step > 0 else -_END))
            steps.append(step)
        return self.tracer.emit("Slice", [self], {"starts": starts, "ends": ends,
                                                  "axes": [a for a, _ in cuts], "steps": steps})


#: An end beyond any axis (ONNX writes INT_MAX): slices clamp it to the axis' length.
_END = 2**62


#: NumPy ufuncs that a graph op computes, for ``SymbolicArray.__array_ufunc__``.
_UFUNCS = {"add": "Add", "subtract": "Sub", "multiply": "Mul", "divide": "Div",
           "true_divide": "Div", "power": "Pow", "negative": "Neg", "greater": "Greater",
           "less": "Less", "equal": "Equal", "exp": "Exp", "log": "Log", "tanh": "Tanh"}


@dataclass(eq=False)
class EmittedNode:
    """A node the tracer wrote: op name, attributes, inputs (arrays or inline numbers)."""

    op: str
    attrs: dict[str, Any]
    inputs: list[SymbolicArray]
    hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Tracer:
    """Emits nodes with shapes and dtypes inferred by the ops' own rules, over ``dims``.

    ``hint`` prefixes the names of the nodes emitted next (the node whose vjp is
    being traced); ``context`` holds the arrays of the rule being traced, whose
    shapes ``broadcast_to`` and ``reshape`` may borrow.
    """

    def __init__(self, dims: Dims):
        self.dims = dims
        self.nodes: list[SymbolicArray] = []
        self.hint = "grad"
        self.context: list[SymbolicArray] = []

    def constant(self, number: Number, dtype: str = "") -> SymbolicArray:
        """An inline number: written into its users' inputs, dtype taken from them."""
        return SymbolicArray(self, (), dtype, literal=number)

    def operand(self, value: Any) -> SymbolicArray:
        if isinstance(value, SymbolicArray):
            return value
        if isinstance(value, bool):
            raise TraceError("a bool Python scalar in a vjp rule cannot be traced")
        if isinstance(value, (int, np.integer)):  # kept an integer: weak_dtype reads it
            return self.constant(int(value))
        if isinstance(value, (float, np.number)):
            return self.constant(float(value))
        if isinstance(value, (SymbolicCount, SymbolicDim)):
            return self.count(value if isinstance(value, SymbolicCount)
                              else SymbolicCount((value,)))
        raise TraceError(f"cannot use {type(value).__name__} {value!r} as an array")

    def array_constant(self, value: Any, dtype: str) -> SymbolicArray:
        """A constant written under ``constants:`` with its dtype (``arange``, the seed 1)."""
        node = EmittedNode("Constant", {}, [], self.hint, {"value": value, "dtype": dtype})
        array = SymbolicArray(self, tuple(np.shape(value)), dtype, node=node)
        self.nodes.append(array)
        return array

    def count(self, count: SymbolicCount) -> SymbolicArray:
        """An element count as nodes: one ``Count`` per value read, times the known part."""
        by_source: dict[int, tuple[SymbolicArray, list[int]]] = {}
        for factor in count.factors:
            source, axes = by_source.setdefault(id(factor.source), (factor.source, []))
            axes.append(factor.axis)
        result: SymbolicArray | None = None
        for source, axes in by_source.values():
            counted = self.emit("Count", [source], {"axis": sorted(axes)})
            result = counted if result is None else self.emit("Mul", [result, counted])
        if result is None:
            return self.constant(float(count.scale))
        if count.scale != 1:
            result = self.emit("Mul", [result, self.constant(float(count.scale))])
        return result

    def emit(self, op_name: str, inputs: Sequence[SymbolicArray], attrs: dict | None = None
             ) -> SymbolicArray:
        if any(v.empty for v in inputs):
            raise TraceError(f"{op_name} of an array without elements")
        op = REGISTRY[op_name]
        attrs = attrs or {}
        model = op.attrs(**attrs)
        strong = [v.dtype for v in inputs if v.literal is None]
        dtypes = [weak_dtype(strong, isinstance(v.literal, int)) if v.literal is not None
                  else v.dtype for v in inputs]
        # an integer that meets floats is written as the float it becomes (1.0, not 1)
        inputs = [self.constant(float(v.literal)) if isinstance(v.literal, int) and
                  d in FLOAT_DTYPES else v for v, d in zip(inputs, dtypes, strict=True)]
        try:
            shape = op.shape(model, self.dims, *[v.shape_ for v in inputs])
            dtype = op.result_dtype(model, dtypes)
        except ShapeError as exc:
            shapes = ", ".join(format_shape(v.shape_) for v in inputs)
            raise TraceError(f"{op_name} on {shapes}: {exc}") from None
        if inputs and all(v.literal is not None for v in inputs):  # numbers only: fold them
            folded = op.forward(np, model, *[np.float64(v.literal) for v in inputs])
            return self.constant(float(folded))
        node = EmittedNode(op_name, attrs, list(inputs), self.hint)
        array = SymbolicArray(self, tuple(self.dims.resolve(d) for d in shape), dtype, node=node)
        self.nodes.append(array)
        self.context.append(array)
        return array

    def like(self, shape: Sequence[Any]) -> SymbolicArray | None:
        """An array of the traced rule whose shape is ``shape`` (to borrow it)."""
        wanted = tuple(shape)
        for array in reversed(self.context):
            if array.literal is None and tuple(array.shape_) == wanted:
                return array
        return None


class Namespace:
    """The functions of the array API that vjp rules call, writing nodes instead of computing.

    Functions without a graph op raise TraceError naming them.
    """

    float16, float32, float64, int64 = "float16", "float32", "float64", "int64"
    int32, int16, int8, uint8 = "int32", "int16", "int8", "uint8"
    uint16, uint32, uint64 = "uint16", "uint32", "uint64"
    bool = "bool"

    def __init__(self, tracer: Tracer):
        self._tracer = tracer

    def __getattr__(self, name: str) -> Any:
        raise TraceError(f"the array function xp.{name} has no graph op yet")

    def apply_op(self, name: str, inputs: Sequence[Any], attrs: dict) -> SymbolicArray:
        """``engine.ops.base.apply``: a rule that uses another op becomes one node of it."""
        return self._emit(name, inputs, attrs)

    def _emit(self, op: str, inputs: Sequence[Any], attrs: dict | None = None) -> SymbolicArray:
        tracer = self._tracer
        return tracer.emit(op, [tracer.operand(x) for x in inputs], attrs)

    # elementwise
    def exp(self, x): return self._emit("Exp", [x])
    def log(self, x): return self._emit("Log", [x])
    def tanh(self, x): return self._emit("Tanh", [x])
    def negative(self, x): return self._emit("Neg", [x])
    def pow(self, a, b): return self._emit("Pow", [a, b])
    def add(self, a, b): return self._emit("Add", [a, b])
    def subtract(self, a, b): return self._emit("Sub", [a, b])
    def multiply(self, a, b): return self._emit("Mul", [a, b])
    def divide(self, a, b): return self._emit("Div", [a, b])
    def greater(self, a, b): return self._emit("Greater", [a, b])
    def less(self, a, b): return self._emit("Less", [a, b])
    def equal(self, a, b): return self._emit("Equal", [a, b])
    def where(self, cond, a, b): return self._emit("Where", [cond, a, b])
    def matmul(self, a, b): return self._emit("MatMul", [a, b])

    # reductions
    def _reduce(self, op: str, x, axis, keepdims) -> SymbolicArray:
        axis = list(axis) if isinstance(axis, tuple) else axis
        return self._emit(op, [x], {"axis": axis, "keepdims": bool(keepdims)})

    def sum(self, x, axis=None, keepdims=False): return self._reduce("Sum", x, axis, keepdims)
    def max(self, x, axis=None, keepdims=False): return self._reduce("Max", x, axis, keepdims)
    def mean(self, x, axis=None, keepdims=False): return self._reduce("Mean", x, axis, keepdims)

    # dtypes
    def isdtype(self, dtype: str, kind: str) -> bool:
        kinds = {"real floating": FLOAT_DTYPES, "bool": ("bool",), "integral": INT_DTYPES}
        if kind not in kinds:
            raise TraceError(f"xp.isdtype(..., {kind!r}) is not supported")
        return str(dtype) in kinds[kind]

    def astype(self, x, dtype, copy=True) -> SymbolicArray:
        dtype = str(dtype)
        if x.dtype == dtype:
            return x
        return self._emit("Cast", [x], {"to": dtype})

    # shapes
    def permute_dims(self, x, axes): return self._emit("Transpose", [x], {"axes": list(axes)})

    def broadcast_to(self, x, shape) -> SymbolicArray:
        if tuple(x.shape_) == tuple(shape):
            return x
        like = self._tracer.like(shape)
        if like is None:
            raise TraceError(f"broadcast_to {format_shape(shape)}: no value of the rule has "
                             "that shape to take it from")
        return self._emit("BroadcastTo", [x, like])

    def reshape(self, x, shape) -> SymbolicArray:
        source, target = tuple(x.shape_), tuple(shape)
        if -1 in target and all(isinstance(d, int) for d in source):
            known = math.prod(d for d in target if d != -1)
            target = tuple(math.prod(source) // known if d == -1 else d for d in target)
        if source == target:
            return x
        if [d for d in source if d != 1] == [d for d in target if d != 1]:
            # only size-1 axes differ: Squeeze and Unsqueeze keep named sizes
            squeezed = [i for i, d in enumerate(source) if d == 1]
            added = [i for i, d in enumerate(target) if d == 1]
            if squeezed:
                x = self._emit("Squeeze", [x], {"axes": squeezed})
            return self._emit("Unsqueeze", [x], {"axes": added}) if added else x
        if all(isinstance(d, int) and not isinstance(d, bool) for d in (*source, *target)):
            return self._emit("Reshape", [x], {"shape": list(target)})
        like = self._tracer.like(target)
        if like is None:
            raise TraceError(f"reshape {format_shape(source)} to {format_shape(target)}: no "
                             "value of the rule has that shape to take it from")
        return self._emit("ReshapeLike", [x, like])

    def sign(self, x) -> SymbolicArray:
        """-1, 0 or 1: the difference of two comparisons, in x's dtype."""
        tracer, dtype = self._tracer, x.dtype
        positive = self.astype(self._emit("Greater", [x, 0.0]), dtype)
        negative = self.astype(self._emit("Less", [x, 0.0]), dtype)
        return tracer.emit("Sub", [positive, negative])

    def abs(self, x): return self._emit("Abs", [x])
    def sqrt(self, x): return self._emit("Sqrt", [x])
    def maximum(self, a, b): return self._emit("Maximum", [a, b])
    def minimum(self, a, b): return self._emit("Minimum", [a, b])

    def concat(self, arrays, axis=0) -> SymbolicArray:
        arrays = [a for a in arrays if not getattr(a, "empty", False)]
        if len(arrays) == 1:
            return arrays[0]
        return self._emit("Concat", arrays, {"axis": axis})

    def flip(self, x, axis=None) -> SymbolicArray:
        axes = range(x.ndim) if axis is None else ((axis,) if isinstance(axis, int) else axis)
        key = [slice(None)] * x.ndim
        for a in axes:
            key[a] = slice(None, None, -1)
        return x[tuple(key)]

    def expand_dims(self, x, axis=0) -> SymbolicArray:
        return self._emit("Unsqueeze", [x], {"axes": [axis]})

    def squeeze(self, x, axis) -> SymbolicArray:
        return self._emit("Squeeze", [x], {"axes": [axis] if isinstance(axis, int) else list(axis)})

    def tensordot(self, a, b, axes) -> SymbolicArray:
        """``axes=([i], [0])`` with a matrix ``b``: a's axis i moved last, times b."""
        (left,), (right,) = axes
        if right != 0 or b.ndim != 2:
            raise TraceError(f"tensordot with axes {axes} and b of rank {b.ndim}")
        left %= a.ndim
        order = [*(i for i in range(a.ndim) if i != left), left]
        moved = self.permute_dims(a, order) if order != list(range(a.ndim)) else a
        return self._emit("MatMul", [moved, b])  # a vector ``moved`` is a row, as in NumPy

    # creation
    def zeros_like(self, x) -> SymbolicArray:
        return self._emit("BroadcastTo", [self._tracer.constant(0.0), x])

    def ones_like(self, x) -> SymbolicArray:
        return self._emit("BroadcastTo", [self._tracer.constant(1.0), x])

    def full_like(self, x, value) -> SymbolicArray:
        return self._emit("BroadcastTo", [self._tracer.constant(float(value)), x])

    def zeros(self, shape, dtype=None) -> SymbolicArray:
        """Zeros of a shape some value of the rule has, or else a constant (known sizes)."""
        like = self._tracer.like(shape)
        if like is not None and (dtype is None or str(dtype) == like.dtype):
            return self.zeros_like(like)
        if not all(isinstance(d, int) for d in shape):
            raise TraceError(f"zeros of shape {format_shape(shape)}: no value of the rule has "
                             "that shape to take it from")
        if 0 in shape:  # no elements: only concat may use it, and leaves it out
            return SymbolicArray(self._tracer, tuple(shape), str(dtype or "float64"), empty=True)
        return self._tracer.array_constant(np.zeros(tuple(shape)).tolist(),
                                           str(dtype or "float64"))

    def arange(self, stop, dtype=None):
        return self._tracer.array_constant(list(range(int(stop))), str(dtype or "int64"))


def trace_vjp(tracer: Tracer, vjp: Callable[..., Any], attrs: Any, g: SymbolicArray,
              out: SymbolicArray, inputs: list[SymbolicArray], needs: tuple[bool, ...]
              ) -> tuple[SymbolicArray | None, ...]:
    """Run one op's vjp rule on symbolic arrays; its parts are arrays (or None)."""
    tracer.context = [g, out, *inputs]
    parts = vjp(Namespace(tracer), attrs, g, out, inputs, needs)
    return tuple(None if part is None else tracer.operand(part) for part in parts)
