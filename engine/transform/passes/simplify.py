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
that broadcast without changing x's shape or dtype.  One walk in order: linear.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.graph.model import Value
from engine.transform.passes.stage import Match, Ref, Stage, replace_node, substitute

_NONNEGATIVE = frozenset({"Exp", "Softmax", "Sigmoid"})


def simplify(stage: Stage) -> Stage:
    return _Simplifier(stage).run()


class _Simplifier:
    def __init__(self, stage: Stage):
        self.stage = stage
        self.spec = stage.edit()
        self.subst: dict[str, Ref] = {}
        self.matches: list[Match] = []

    def run(self) -> Stage:
        for name in list(self.spec["nodes"]):
            substitute(self.spec, name, self.subst)
            self.rewrite(name)
        return self.stage.rebuilt(self.spec, self.matches)

    # -- what the graph says ---------------------------------------------------------------

    def value(self, ref: Ref, name: str, index: int) -> Value:
        """The value of input ``index`` of ``name`` as the loaded graph has it."""
        return self.stage.graph.values[self.stage.graph.nodes[name].inputs[index]]

    def current(self, ref: Ref) -> dict[str, Any] | None:
        """The node entry ``ref`` names in the spec being edited, if it is a node."""
        return self.spec["nodes"].get(ref) if isinstance(ref, str) else None

    def is_number(self, name: str, index: int, number: float) -> bool:
        literal = self.stage.literal(self.value(None, name, index))
        return literal is not None and literal.size > 0 and bool(np.all(literal == number))

    def same_as(self, name: str, index: int) -> bool:
        """Node ``name``'s result has the shape and dtype of its input ``index``."""
        out, x = self.stage.graph.values[name], self.value(None, name, index)
        return tuple(out.shape) == tuple(x.shape) and out.dtype == x.dtype

    # -- the rules -------------------------------------------------------------------------

    def rewrite(self, name: str) -> None:
        entry = self.spec["nodes"][name]
        op, refs = entry["op"], entry["inputs"]
        keep = {"Mul": (1.0, (0, 1)), "Div": (1.0, (0,)), "Pow": (1.0, (0,)),
                "Add": (0.0, (0, 1)), "Sub": (0.0, (0,))}.get(op)
        if keep is not None:
            number, sides = keep
            for side in sides:
                other = 1 - side
                if self.is_number(name, other, number) and self.same_as(name, side) \
                        and isinstance(refs[side], str):
                    return self.replace(name, refs[side], f"{op} by {number:g}")
        if op == "Neg" and (inner := self.current(refs[0])) and inner["op"] == "Neg":
            return self.replace(name, inner["inputs"][0], "Neg of Neg")
        if op == "Sum":
            return self.sum_of_ones(name, entry)
        if op == "Reshape":
            return self.reshape(name, entry)
        if op == "Exp" and (inner := self.current(refs[0])) and inner["op"] == "LogSoftmax":
            self.matches.append(self.stage.match(name, "Exp of LogSoftmax is Softmax"))
            self.spec["nodes"][name] = {**inner, "op": "Softmax"}
            return None
        if op == "Exp" and (inner := self.current(refs[0])) and inner["op"] == "Log" \
                and isinstance(inner["inputs"][0], str) and self.nonnegative(inner["inputs"][0]):
            return self.replace(name, inner["inputs"][0], "Exp of Log of a value >= 0")
        return None

    def replace(self, name: str, by: str, what: str) -> None:
        self.matches.append(self.stage.match(name, f"{what} is {by}"))
        replace_node(self.spec, name, by, self.subst)

    def nonnegative(self, ref: str) -> bool:
        entry = self.current(ref)
        if entry is not None:
            return entry["op"] in _NONNEGATIVE
        value = self.stage.graph.values.get(ref)
        literal = None if value is None else self.stage.literal(value)
        return literal is not None and bool(np.all(literal >= 0))

    def sum_of_ones(self, name: str, entry: dict[str, Any]) -> None:
        x = self.value(None, name, 0)
        axis = entry.get("axis")
        rank = len(x.shape)
        axes = range(rank) if axis is None else [a % rank for a in
                                                 (axis if isinstance(axis, list) else [axis])]
        if rank == 0 or any(x.shape[a] != 1 for a in axes) \
                or not isinstance(entry["inputs"][0], str):
            return
        if entry.get("keepdims"):
            self.replace(name, entry["inputs"][0], "Sum over axes of size 1")
            return
        self.matches.append(self.stage.match(name, "Sum over axes of size 1 is a Squeeze"))
        self.spec["nodes"][name] = {"op": "Squeeze", "inputs": entry["inputs"],
                                    "axes": sorted(axes)}

    def reshape(self, name: str, entry: dict[str, Any]) -> None:
        ref = entry["inputs"][0]
        if not isinstance(ref, str):
            return
        if self.same_as(name, 0) and all(isinstance(d, int) for d in
                                         self.stage.graph.values[name].shape):
            self.replace(name, ref, "Reshape to the shape it has")
            return
        inner = self.current(ref)
        copies = 0 in entry["shape"] and not entry.get("allowzero")
        if inner is not None and inner["op"] == "Reshape" and not copies:
            self.matches.append(self.stage.match(name, f"Reshape of Reshape ({ref}) is one "
                                                       "Reshape"))
            entry["inputs"] = [inner["inputs"][0]]
