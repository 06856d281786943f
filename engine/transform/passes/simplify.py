"""Algebraic simplification: identities that remove a node, each only where it is exact.

A node is replaced by its input ``x`` when its result has x's shape and dtype and:

- ``Mul(x, 1)``, ``Mul(1, x)``, ``Div(x, 1)``, ``Pow(x, 1)``: IEEE multiplication and
  division by 1 and ``pow(x, 1)`` return x exactly (NaN and infinities included).
- ``Add(x, 0)``, ``Add(0, x)``, ``Sub(x, 0)``: x + 0 equals x for every x; the one
  difference is the sign of a zero (-0.0 + 0.0 is +0.0), and -0.0 == 0.0.
- ``Neg(Neg(x))``: negation flips the sign bit; twice is x, bit for bit.
- ``Sum`` with ``keepdims`` over axes of size 1: a sum of one number is that number
  (again up to the sign of a zero: NumPy's sum of [-0.0] is +0.0).  Without keepdims
  it becomes ``Squeeze`` of those axes (the same elements).
- ``Reshape`` to the shape x already has; ``Reshape(Reshape(x))`` becomes one
  ``Reshape`` of x to the outer shape (a reshape only renumbers the elements, in
  row-major order), unless the outer one copies a dimension with 0.
- ``Exp(Log(x))`` where x is known to be >= 0 (an Exp, Softmax or Sigmoid output,
  or a constant with no negative element): there log is defined (log 0 = -inf,
  exp(-inf) = 0), and the result is x up to the rounding of exp and log
  (a relative error of a few ulp times |log x|).  Elsewhere, where x may be
  negative (log x is NaN), it does not fire.  ``Log(Exp(x))`` is never rewritten:
  exp overflows to inf above about 709.78, and log(inf) is not x.

- ``Exp(LogSoftmax(x))`` becomes ``Softmax(x)`` on the same axis (the cross-entropy's
  derivative reads it; ``cse`` then merges it with a Softmax the forward already has):
  exp(x - max - log sum) against exp(x - max) / sum, equal up to rounding.

"1" and "0" are inline numbers, or constants whose every element is 1 (or 0) and
that broadcast without changing x's shape or dtype.  A rule fires only where the
node's result has exactly the dtype and shape of what replaces it.  One walk in
order over the nodes a rule may fire at (``engine.transform.passes.census``): linear.
"""

from __future__ import annotations

import numpy as np

from engine.graph.model import Node
from engine.transform.passes.stage import Rewrite, Stage
from engine.transform.passes.written import op_attrs

_NONNEGATIVE = frozenset({"Exp", "Softmax", "Sigmoid"})

#: op -> (the number that leaves the other input as it is, the inputs that may be that other)
_NEUTRAL = {"Mul": (1.0, (0, 1)), "Div": (1.0, (0,)), "Pow": (1.0, (0,)),
            "Add": (0.0, (0, 1)), "Sub": (0.0, (0,))}


def simplify(stage: Stage) -> Stage:
    numbers: dict[tuple[str, float], bool] = {}  # _is_number's answers (no constant changes)
    anchors = stage.census.nodes_of(_anchors(stage, numbers))
    if not anchors:
        return stage.unchanged()
    rewrite = Rewrite(stage)
    for name in anchors:
        node = rewrite.node(name)
        assert node is not None
        _rewrite(rewrite, node, numbers)
    return rewrite.finish()


def _anchors(stage: Stage, numbers: dict[tuple[str, float], bool]) -> set[str]:
    """The ops of the nodes a rule may fire at: the rules by a neutral number only where
    some constant is that number, ``Exp`` only where the graph has a ``Log`` or a
    ``LogSoftmax`` (no rule makes either)."""
    census = stage.census
    anchors = {"Neg", "Sum", "Reshape"}
    if census.has("Log") or census.has("LogSoftmax"):
        anchors.add("Exp")
    neutral = [op for op in _NEUTRAL if census.has(op)]
    wanted = {_NEUTRAL[op][0] for op in neutral}
    if any(_is_number(stage, ref, number, numbers) for ref in census.constants
           for number in wanted):
        anchors.update(neutral)
    return anchors


def _same_as(rewrite: Rewrite, name: str, ref: str) -> bool:
    """Node ``name``'s result has the shape and dtype of value ``ref``."""
    out, x = rewrite.value(name), rewrite.value(ref)
    return tuple(out.shape) == tuple(x.shape) and out.dtype == x.dtype


def _is_number(reader: Rewrite | Stage, ref: str, number: float,
               numbers: dict[tuple[str, float], bool]) -> bool:
    """Whether ``ref`` is a constant whose every element is ``number``; asked once per
    constant and number, however many nodes use it (a shared constant is read by
    thousands)."""
    known = numbers.get((ref, number))
    if known is None:
        literal = reader.literal(ref)
        known = numbers[ref, number] = literal is not None and literal.size > 0 and \
            bool(np.all(literal == number))
    return known


def _rewrite(rewrite: Rewrite, node: Node, numbers: dict[tuple[str, float], bool]) -> None:
    name, op, refs = node.name, node.op.name, node.inputs
    neutral = _NEUTRAL.get(op)
    if neutral is not None:
        number, sides = neutral
        for side in sides:
            if _is_number(rewrite, refs[1 - side], number, numbers) \
                    and _same_as(rewrite, name, refs[side]):
                rewrite.stands_for(name, refs[side], f"{op} by {number:g} is {refs[side]}")
                return
    inner = rewrite.node(refs[0]) if refs else None
    if op == "Neg" and inner is not None and inner.op.name == "Neg":
        rewrite.stands_for(name, inner.inputs[0], f"Neg of Neg is {inner.inputs[0]}")
    elif op == "Sum":
        _sum_of_ones(rewrite, node)
    elif op == "Reshape":
        _reshape(rewrite, node, inner)
    elif op == "Exp" and inner is not None and inner.op.name == "LogSoftmax":
        rewrite.put(name, "Softmax", inner.inputs, "Exp of LogSoftmax is Softmax",
                    axis=inner.attrs.axis)
    elif op == "Exp" and inner is not None and inner.op.name == "Log" \
            and _nonnegative(rewrite, inner.inputs[0]) and _same_as(rewrite, name, inner.inputs[0]):
        rewrite.stands_for(name, inner.inputs[0], f"Exp of Log of a value >= 0 is "
                                                  f"{inner.inputs[0]}")


def _nonnegative(rewrite: Rewrite, ref: str) -> bool:
    node = rewrite.node(ref)
    if node is not None:
        return node.op.name in _NONNEGATIVE
    literal = rewrite.literal(ref)
    return literal is not None and bool(np.all(literal >= 0))


def _sum_of_ones(rewrite: Rewrite, node: Node) -> None:
    (ref,) = node.inputs
    x = rewrite.value(ref)
    axis = node.attrs.axis
    rank = len(x.shape)
    axes = range(rank) if axis is None else [a % rank for a in
                                             (axis if isinstance(axis, (list, tuple)) else [axis])]
    if rank == 0 or any(x.shape[a] != 1 for a in axes):
        return
    if node.attrs.keepdims:
        if _same_as(rewrite, node.name, ref):
            rewrite.stands_for(node.name, ref, f"Sum over axes of size 1 is {ref}")
        return
    rewrite.put(node.name, "Squeeze", node.inputs, "Sum over axes of size 1 is a Squeeze",
                axes=sorted(axes))


def _reshape(rewrite: Rewrite, node: Node, inner: Node | None) -> None:
    ref = node.inputs[0]
    if _same_as(rewrite, node.name, ref) and all(isinstance(d, int)
                                                 for d in rewrite.value(node.name).shape):
        rewrite.stands_for(node.name, ref, f"Reshape to the shape it has is {ref}")
        return
    attrs = node.attrs
    copies = 0 in attrs.shape and not getattr(attrs, "allowzero", False)
    if inner is not None and inner.op.name == "Reshape" and not copies:
        rewrite.put(node.name, "Reshape", inner.inputs,
                    f"Reshape of Reshape ({ref}) is one Reshape",
                    **op_attrs(node, defaults=False))
