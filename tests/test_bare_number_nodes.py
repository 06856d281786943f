"""A node of bare numbers only (``root: {op: Sqrt, inputs: [2.0]}``) is the bare number it
computes: computed once, in float64, when the spec loads, and read by each use in that use's
dtype, checked to fit it, as a number written in the spec is (JAX's weak-type rule).

So what ``engine check`` infers is what runs on both executor paths and in ONNX export; no
use sees the number computed in a narrower dtype; the order of the spec's lines decides
nothing.  Expected numbers are worked out by hand in the comments (or by float64 arithmetic
on the written numbers, then one rounding to the use's dtype)."""

from __future__ import annotations

import math
import textwrap
import warnings

import numpy as np
import onnxruntime as ort
import pytest

import engine
from engine.draw.picture import forward_picture
from engine.errors import SpecError
from engine.onnx.export import export

#: the reviewer's graph: b reads a, which a float32 use types; r's use of b is a Reshape
STALE = """
    inputs: {x: {shape: [1], dtype: float32, init: {ones: true}}}
    nodes:
      a: {op: Sqrt, inputs: [2.0]}
      b: {op: Neg, inputs: [a]}
      c: {op: Mul, inputs: [x, a]}
      r: {op: Reshape, inputs: [b], shape: [1]}
    outputs: [c, r]
"""


def load(body: str) -> engine.Graph:
    return engine.loads("name: t\n" + textwrap.dedent(body).strip() + "\n")


def run(graph: engine.Graph, optimize: bool) -> dict[str, np.ndarray]:
    ex = engine.Executor(graph, optimize=optimize)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow hidden anywhere
        return {name: np.asarray(value) for name, value in ex.forward().items()}


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
def test_check_infers_what_runs_for_a_node_of_numbers_that_another_one_reads(optimize: bool
                                                                               ) -> None:
    graph = load(STALE)
    assert graph.values["r"].dtype == "float64" and graph.values["c"].dtype == "float32"
    got = run(graph, optimize)
    assert {n: str(v.dtype) for n, v in got.items()} == {"c": "float32", "r": "float64"}
    # r is -sqrt(2) in float64, not float32's sqrt(2) widened; c is sqrt(2) rounded to float32
    assert got["r"].tolist() == [-math.sqrt(2.0)]
    assert got["c"].tolist() == [float(np.float32(math.sqrt(2.0)))]
    if not optimize:  # the plain path keeps every value: each one's dtype is the inferred one
        ex = engine.Executor(graph, optimize=False)
        ex.forward()
        assert {n: str(np.asarray(ex.value(n)).dtype) for n in graph.values} == \
            {n: v.dtype for n, v in graph.values.items()}


def test_onnx_export_of_a_node_of_numbers_passes_the_checker_and_runs() -> None:
    graph = load(STALE)
    made = export(graph)  # runs onnx's full checker
    session = ort.InferenceSession(made.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"x": np.ones(1, np.float32)}), strict=True))
    assert got["r"].dtype == np.float64 and got["r"].tolist() == [-math.sqrt(2.0)]
    assert got["c"].dtype == np.float32
    assert got["c"].tolist() == [float(np.float32(math.sqrt(2.0)))]


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
def test_a_float16_use_reads_the_number_computed_in_float64(optimize: bool) -> None:
    graph = load("""
        inputs: {x: {shape: [2], dtype: float16, init: {ones: true}}}
        nodes:
          big: {op: Mul, inputs: [300, 300]}
          root: {op: Sqrt, inputs: [big]}
          y: {op: Mul, inputs: [x, root]}
          near: {op: Add, inputs: [1000, 0.1]}
          small: {op: Sub, inputs: [near, 1000]}
          z: {op: Mul, inputs: [x, small]}
        outputs: [y, z]
    """)
    got = run(graph, optimize)
    # sqrt(300 * 300) = 300, which float16 holds exactly (float16 arithmetic gives inf)
    assert got["y"].dtype == np.float16 and got["y"].tolist() == [300.0, 300.0]
    # (1000 + 0.1) - 1000 in float64 is 0.1 to 13 digits; float16 arithmetic gives 0.0
    want = float(np.float16((1000 + 0.1) - 1000))
    assert want != 0.0 and abs(want - 0.1) < 1e-4
    assert got["z"].dtype == np.float16 and got["z"].tolist() == [want, want]


def test_a_number_its_use_cannot_hold_is_an_error_at_the_node() -> None:
    with pytest.raises(SpecError) as caught:
        load("""
            inputs: {x: {shape: [2], dtype: float16, init: {ones: true}}}
            nodes:
              big: {op: Mul, inputs: [300, 300]}
              y: {op: Mul, inputs: [x, big]}
            outputs: [y]
        """)
    text = str(caught.value)
    assert ":3:" in text and "float16" in text and "node 'y'" in text  # big's line, its use


def test_a_node_of_numbers_that_is_not_finite_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"node 'bad' \(Log\).*-\.inf"):
        load("""
            inputs: {x: {shape: [2], init: {ones: true}}}
            nodes:
              bad: {op: Log, inputs: [0.0]}
              y: {op: Mul, inputs: [x, bad]}
            outputs: [y]
        """)


USES = {"p": "p: {op: Mul, inputs: [a, third]}", "q": "q: {op: Mul, inputs: [b, third]}"}


@pytest.mark.parametrize("first", ["p", "q"])
def test_each_use_gets_the_number_in_its_own_dtype_whatever_the_order(first: str) -> None:
    second = "q" if first == "p" else "p"
    graph = load(f"""
        inputs:
          a: {{shape: [1], dtype: float32, init: {{ones: true}}}}
          b: {{shape: [1], dtype: float64, init: {{ones: true}}}}
        nodes:
          third: {{op: Div, inputs: [1, 3]}}
          {USES[first]}
          {USES[second]}
        outputs: [p, q]
    """)
    for optimize in (False, True):
        got = run(graph, optimize)
        assert got["q"].dtype == np.float64 and got["q"].tolist() == [1 / 3]
        assert got["p"].dtype == np.float32 and got["p"].tolist() == [float(np.float32(1 / 3))]


def test_the_picture_still_draws_the_node_as_written() -> None:
    picture = forward_picture(load(STALE))
    boxes = {box.id: box for box in picture.boxes}
    assert boxes["a"].title == "Sqrt" and boxes["b"].title == "Neg"
    arrows = {(arrow.tail, arrow.head, arrow.label) for arrow in picture.arrows}
    assert {("a.inputs[0]", "a", "2"), ("a", "b", "a"), ("a", "c", "a"),
            ("b", "r", "b")} <= arrows


def test_lint_counts_what_a_node_of_numbers_reads_as_used() -> None:
    graph = load("""
        inputs: {x: {shape: [2], init: {ones: true}}}
        nodes:
          big: {op: Mul, inputs: [3, 3]}
          root: {op: Sqrt, inputs: [big]}
          lone: {op: Neg, inputs: [2.0]}
          y: {op: Mul, inputs: [x, root]}
        outputs: [y]
    """)
    assert [p.message for p in graph.warnings] == [
        "node 'lone' (Neg) is used by no node; remove it or list it among a node's inputs"]
