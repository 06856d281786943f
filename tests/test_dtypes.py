"""What ``engine check`` infers is what runs: every op's dtype and shape rules against what
its forward and vjp return in each float dtype (as PyTorch's OpInfo tests dtypes), and every
value and gradient of whole graphs on the plain path against the graph's inferred ones."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GRAPHS
from test_optimized_path import random_spec

import engine
from engine.graph.shapes import Dims
from engine.ops import REGISTRY, OpDef, Sample
from engine.ops.base import FLOAT_DTYPES
from engine.ops.stochastic import RunMode

CASES = [
    pytest.param(op, sample, dtype, fast, id=f"{name}-{index}-{dtype}-{'fast' if fast else 'rule'}")
    for name, op in sorted(REGISTRY.items())
    for index, sample in enumerate(op.samples(np.random.default_rng(0)))
    for dtype in FLOAT_DTYPES
    for fast in (False, True)
]


def _as(dtype: str, x: np.ndarray) -> np.ndarray:
    """A float sample input in ``dtype``; integer inputs (class indices) stay integers."""
    return x.astype(dtype) if x.dtype.kind == "f" else x


@pytest.mark.parametrize(("op", "sample", "dtype", "fast"), CASES)
def test_the_dtype_rule_is_the_runtime_dtype(op: OpDef, sample: Sample, dtype: str,
                                             fast: bool) -> None:
    attrs = op.attrs(**sample.attrs)
    inputs = [_as(dtype, x) for x in sample.inputs]
    dtypes = [str(x.dtype) for x in inputs]
    forward, vjp = op.lowered(fast)
    modes = [{}, {"mode": RunMode(training=True, seed=0), "key": 1}] if op.stochastic else [{}]
    for mode in modes:
        with np.errstate(all="ignore"):  # float16 overflows are not this test's business
            out = np.asarray(forward(np, attrs, *inputs, **mode))
        assert str(out.dtype) == op.result_dtype(attrs, dtypes), (op.name, dtypes, mode)
        assert out.shape == tuple(op.shape(attrs, Dims(), *[x.shape for x in inputs]))
        # gradients never flow into integer or bool inputs
        needs = tuple(op.is_differentiable(i) and x.dtype.kind == "f"
                      for i, x in enumerate(inputs))
        upstream = np.ones(out.shape, out.dtype)
        with np.errstate(all="ignore"):
            parts = vjp(np, attrs, upstream, out, inputs, needs, **mode)
        for x, part in zip(inputs, parts, strict=True):
            if part is not None:  # a gradient comes in its input's dtype
                assert np.asarray(part).dtype == x.dtype, (op.name, dtypes, mode)


MIXED = """\
name: mixed
inputs:
  a32: {shape: [2, 3], dtype: float32, init: {uniform: {low: 0.5, high: 1.0}}, requires_grad: true}
  a64: {shape: [2, 3], init: {uniform: {low: 0.5, high: 1.0}}, requires_grad: true}
  a16: {shape: [3], dtype: float16, init: ones, requires_grad: true}
constants:
  k: 2.0
  half: 0.5
nodes:
  p: {op: Mul, inputs: [a32, k]}
  q: {op: Mul, inputs: [a64, k]}
  r: {op: Pow, inputs: [a16, k]}
  s: {op: Add, inputs: [p, half]}
  t: {op: Add, inputs: [q, half]}
  u: {op: Mul, inputs: [s, r]}
  v: {op: Add, inputs: [t, u]}
  w: {op: Mul, inputs: [k, 3]}
  loss: {op: Sum, inputs: [v]}
outputs: [p, q, r, u, w]
loss: loss
"""


def test_a_bare_constant_runs_at_each_uses_dtype() -> None:
    """k: 2.0 used by a float32 and a float64 node: check said float32, forward gave float64."""
    graph = engine.loads(MIXED)
    assert (graph.values["p"].dtype, graph.values["q"].dtype) == ("float32", "float64")
    for optimize in (True, False):
        out = engine.Executor(graph, optimize=optimize).forward()
        assert {k: str(v.dtype) for k, v in out.items()} == {
            "p": "float32", "q": "float64", "r": "float16", "u": "float32", "w": "float64"}


def assert_runs_as_inferred(graph: engine.Graph) -> None:
    """Every value and gradient, on the plain path (which keeps them all), has the dtype and
    shape that the graph says it has."""
    ex = engine.Executor(graph, optimize=False)
    with np.errstate(all="ignore"):
        ex.forward()
        grads = ex.backward(keep=list(graph.nodes)) if graph.loss is not None else {}
    for name, value in graph.values.items():
        array = np.asarray(ex.value(name))
        assert (str(array.dtype), array.shape) == (value.dtype, ex._dims.shape(value.shape)), \
            f"{graph.file}: {value.kind} {name!r}"
        if name in grads:
            assert (np.asarray(grads[name]).dtype, np.shape(grads[name])) == \
                (array.dtype, array.shape), f"{graph.file}: gradient of {name!r}"


@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_graph_runs_as_inferred(path) -> None:
    assert_runs_as_inferred(engine.load(path))


@pytest.mark.parametrize("seed", range(8))
def test_random_graphs_run_as_inferred(seed: int) -> None:
    assert_runs_as_inferred(engine.loads(random_spec(seed)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_random_graphs_in_each_float_dtype_run_as_inferred(dtype: str) -> None:
    text = random_spec(3).replace("inputs:\n", "inputs:\n", 1)
    text = text.replace("requires_grad:", f"dtype: {dtype}, requires_grad:")
    assert_runs_as_inferred(engine.loads(text))


def test_the_mixed_graph_runs_as_inferred() -> None:
    assert_runs_as_inferred(engine.loads(MIXED))
