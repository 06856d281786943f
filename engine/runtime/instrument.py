"""Tracing and NaN/Inf detection, by wrapping each step's forward and vjp in the compiled plan.

The executor's loops call ``step.forward`` and ``step.vjp``; when a trace or a
finiteness check is asked for, each step gets a forward and vjp that also record
statistics and timings, or check the result.  When
neither is asked for the plan is returned as it is, so the feature costs nothing
when off: the hot loop never tests a flag.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import NonFiniteError
from engine.graph.model import Graph
from engine.graph.shapes import format_shape
from engine.runtime.plan import Plan, Step

Array = Any


@dataclass(frozen=True)
class Stats:
    """Summary of one array: min, max and mean (over all elements), and its NaN and Inf counts."""

    min: float
    max: float
    mean: float
    nan: int
    inf: int
    size: int

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0

    def __str__(self) -> str:
        if self.size == 0:
            return "empty"
        bad = "".join(f", {n} {what}" for n, what in ((self.nan, "NaN"), (self.inf, "inf")) if n)
        return f"min {self.min:.6g}, max {self.max:.6g}, mean {self.mean:.6g}{bad}"


def stats(xp: Any, array: Array) -> Stats:
    """``Stats`` of an array of any array-API namespace, computed in float64 (no overflow)."""
    wide = xp.astype(xp.asarray(array), xp.float64)
    size = int(np.prod(wide.shape))
    if size == 0:
        return Stats(0.0, 0.0, 0.0, 0, 0, 0)
    nan = int(xp.sum(xp.astype(xp.isnan(wide), xp.int64)))
    inf = int(xp.sum(xp.astype(xp.isinf(wide), xp.int64)))
    return Stats(float(xp.min(wide)), float(xp.max(wide)), float(xp.mean(wide)), nan, inf, size)


def _is_finite(xp: Any, array: Array) -> bool:
    if not xp.isdtype(array.dtype, "real floating"):
        return True
    return bool(xp.all(xp.isfinite(array)))


@dataclass
class Row:
    """What a trace knows of one node after the last forward and backward passes."""

    name: str
    op: str
    shape: str
    dtype: str
    value: Stats | None = None
    grad: Stats | None = None
    forward_s: float | None = None
    backward_s: float | None = None


class Trace:
    """One ``Row`` per node, in execution order, refreshed by every forward and backward pass."""

    def __init__(self, graph: Graph):
        self.rows: dict[str, Row] = {
            name: Row(name, graph.nodes[name].op.name, format_shape(graph.values[name].shape),
                      graph.values[name].dtype)
            for name in graph.order}

    def as_json(self) -> list[dict[str, Any]]:
        """Flat rows for JSON: ``value_min`` ... ``grad_mean`` (None when not computed), times."""
        rows = []
        for r in self.rows.values():
            row: dict[str, Any] = {"node": r.name, "op": r.op, "shape": r.shape, "dtype": r.dtype}
            for part, s in (("value", r.value), ("grad", r.grad)):
                for field in ("min", "max", "mean"):
                    row[f"{part}_{field}"] = None if s is None else getattr(s, field)
            row.update(forward_s=r.forward_s, backward_s=r.backward_s)
            rows.append(row)
        return rows

    def table(self) -> str:
        """A fixed-width table: value and gradient statistics, and time spent per node."""
        header = ("node", "op", "shape", "dtype", "value min", "value max", "value mean",
                  "grad min", "grad max", "grad mean", "fwd ms", "bwd ms")
        body = []
        for row in self.rows.values():
            cells = [row.name, row.op, row.shape, row.dtype]
            for s in (row.value, row.grad):
                cells += ["-"] * 3 if s is None else [f"{s.min:.4g}", f"{s.max:.4g}",
                                                      f"{s.mean:.4g}"]
            cells += ["-" if t is None else f"{t * 1e3:.3f}" for t in (row.forward_s,
                                                                        row.backward_s)]
            body.append(cells)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                 for r in [header, *body]]
        return "\n".join(lines) + "\n"


def instrument(plan: Plan, graph: Graph, *, trace: Trace | None = None,
               check_finite: bool = False) -> Plan:
    """The plan with each step's op wrapped to trace and/or check; the same plan when neither."""
    if trace is None and not check_finite:
        return plan
    steps = tuple(_wrap(step, plan, graph, trace, check_finite) for step in plan.steps)
    return dataclasses.replace(plan, steps=steps)


def _wrap(step: Step, plan: Plan, graph: Graph, trace: Trace | None, check: bool) -> Step:
    inner_forward, inner_vjp = step.forward, step.vjp
    row = trace.rows[step.name] if trace is not None else None
    checker = _Checker(step, plan, graph)
    quiet = {"all": "ignore"} if check else {}

    def forward(xp: Any, attrs: Any, *inputs: Array) -> Array:
        start = time.perf_counter()
        with np.errstate(**quiet):  # NumPy's warning would only repeat the report below
            out = inner_forward(xp, attrs, *inputs)
        elapsed = time.perf_counter() - start
        if row is not None:
            row.value, row.forward_s, row.grad, row.backward_s = stats(xp, out), elapsed, None, None
        if check and not _is_finite(xp, out):
            raise checker.forward_error(xp, out, inputs)
        return out

    def vjp(xp: Any, attrs: Any, g: Array, out: Array, inputs: Sequence[Array],
            needs: Sequence[bool]) -> tuple[Array | None, ...]:
        if check and not _is_finite(xp, g):
            raise checker.arriving_error(xp, g)
        start = time.perf_counter()
        with np.errstate(**quiet):
            parts = inner_vjp(xp, attrs, g, out, inputs, needs)
        elapsed = time.perf_counter() - start
        if row is not None:
            row.grad, row.backward_s = stats(xp, g), elapsed
        if check:
            for index, part in enumerate(parts):
                if needs[index] and part is not None and not _is_finite(xp, part):
                    raise checker.backward_error(xp, index, part, g, inputs)
        return parts

    return dataclasses.replace(step, forward=forward, vjp=vjp)


class _Checker:
    """Builds the report for one node: where it is, what went wrong, what its inputs looked like."""

    def __init__(self, step: Step, plan: Plan, graph: Graph):
        self.step = step
        self.names = [plan.names[i] for i in step.inputs]
        self.graph = graph
        self.dtype = graph.values[step.name].dtype

    def _head(self) -> str:
        return f"node {self.step.name!r} ({self.step.op.name}, {self.graph.where(self.step.name)})"

    def _inputs(self, xp: Any, inputs: Sequence[Array]) -> tuple[str, list[Stats]]:
        summaries = [stats(xp, a) for a in inputs]
        lines = "".join(
            f"\n    {name}  {format_shape(tuple(a.shape))} {self.graph.values[name].dtype}  {s}"
            for name, a, s in zip(self.names, inputs, summaries, strict=True))
        return "\n  inputs:" + lines, summaries

    def _diagnosis(self, bad: Stats, before: list[Stats], dtype: str,
                   wider: Array | None = None) -> str:
        """Why: bad inputs, overflow of a narrow dtype, a pole (1/0, log 0), or an invalid op.

        ``wider`` is the same result recomputed in float64 (None when that is not possible):
        finite there means the values only outgrew ``dtype``, which is an overflow.
        """
        broken = [n for n, s in zip(self.names, before, strict=False) if not s.finite]
        if broken:
            return (f"its input {', '.join(repr(n) for n in broken)} already holds NaN or inf "
                    "(fed data, a constant, or an init)")
        largest = float(np.finfo(dtype).max)
        if bad.inf and not bad.nan and wider is not None and bool(np.isfinite(wider).all()):
            peak = float(np.abs(wider).max())
            return (f"overflow: {dtype} holds at most {largest:.6g}, and values reached "
                    f"{peak:.6g} from finite inputs" + (
                        " (the lesson's float16 limit; subtract the row maximum first, or "
                        "compute in float32)" if dtype == "float16" else ""))
        if bad.inf and not bad.nan:
            return (f"infinite from finite inputs: an overflow past {largest:.6g} ({dtype}), or "
                    "a division by zero or pole (such as 1/0, log(0), or x^-1 at 0)")
        return ("an invalid operation made NaN from finite inputs (such as 0/0, inf - inf, "
                "0 * inf, or the log or root of a negative number)")

    def _in_float64(self, compute: Any, arrays: Sequence[Array]) -> Array | None:
        """``compute(np, *arrays in float64)`` for NumPy float arrays narrower than float64."""
        if not all(isinstance(a, np.ndarray) for a in arrays):
            return None
        if not any(a.dtype.kind == "f" and a.dtype.itemsize < 8 for a in arrays):
            return None
        wide = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
        with np.errstate(all="ignore"):
            return compute(np, *wide)

    def forward_error(self, xp: Any, out: Array, inputs: Sequence[Array]) -> NonFiniteError:
        bad = stats(xp, out)
        listing, before = self._inputs(xp, inputs)
        attrs, op = self.step.attrs, self.step.op
        wider = self._in_float64(lambda np_, *a: op.forward(np_, attrs, *a), inputs)
        return NonFiniteError(
            f"{self._head()}: forward value is not finite ({bad.nan} NaN, {bad.inf} inf of "
            f"{bad.size} elements): {self._diagnosis(bad, before, self.dtype, wider)}{listing}",
            node=self.step.name, phase="forward")

    def arriving_error(self, xp: Any, g: Array) -> NonFiniteError:
        bad = stats(xp, g)
        return NonFiniteError(
            f"{self._head()}: the gradient d({self.step.name}), summed from its consumers, is not "
            f"finite ({bad}): {self._diagnosis(bad, [], self.dtype)}",
            node=self.step.name, phase="backward")

    def backward_error(self, xp: Any, index: int, part: Array, g: Array,
                       inputs: Sequence[Array]) -> NonFiniteError:
        bad = stats(xp, part)
        listing, before = self._inputs(xp, inputs)
        target = self.names[index]
        attrs, op, needs = self.step.attrs, self.step.op, self.step.needs
        wider = self._in_float64(
            lambda np_, g_, *a: op.vjp(np_, attrs, g_, op.forward(np_, attrs, *a), a, needs)[index],
            [g, *inputs])
        diagnosis = self._diagnosis(bad, before, self.graph.values[target].dtype, wider)
        return NonFiniteError(
            f"{self._head()}: in backward, the gradient d({target}) it sends to its input "
            f"{self.step.op.input_name(index)!r} is not finite ({bad.nan} NaN, {bad.inf} inf "
            f"of {bad.size} elements): {diagnosis}{listing}\n  upstream d({self.step.name})  "
            f"{stats(xp, g)}",
            node=self.step.name, phase="backward")
