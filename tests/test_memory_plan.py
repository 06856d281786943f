"""The plan's memory: which nodes write into the buffer of a value that is dead by then, and
which elementwise chains run as one block (``engine.runtime.plan.schedule``).

Each rule is checked where it must fire and where it must not, against the graph itself
(who reads a value, what backward reads, the shapes and dtypes it inferred), against the
plain path's numbers, and by looking at the arrays: no value still alive shares memory with
another, and the caller's arrays are never written.
"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest
from test_optimized_path import random_spec

import engine
from engine.ops import REGISTRY


def plain_and_fast(graph: engine.Graph, feeds: dict[str, np.ndarray] | None = None
                   ) -> tuple[engine.Executor, dict, engine.Executor, dict]:
    """Both paths run on ``feeds``; every output (and the loss and gradients, when there is
    a loss) must agree to 1e-12."""
    fast, plain = engine.Executor(graph), engine.Executor(graph, optimize=False)
    out_fast, out_plain = fast.forward(feeds), plain.forward(feeds)
    for name in out_plain:
        np.testing.assert_allclose(out_fast[name], out_plain[name], rtol=1e-12, atol=1e-300)
    if graph.loss is not None:
        g_fast, g_plain = fast.backward(), plain.backward()
        for name in g_plain:
            np.testing.assert_allclose(g_fast[name], g_plain[name], rtol=1e-12, atol=1e-14)
    return fast, out_fast, plain, out_plain


def test_a_chain_writes_each_result_into_the_previous_buffer(build) -> None:
    """No gradient: each intermediate value dies at the next node, so the chain is one block
    computing in the first node's buffer; the input x is the caller's and stays as fed."""
    graph = build("""
        name: chain
        inputs: {x: {shape: [2, 3]}}
        nodes:
          a: {op: Mul, inputs: [x, 2.0]}
          b: {op: Exp, inputs: [a]}
          c: {op: Tanh, inputs: [b]}
          d: {op: Sub, inputs: [c, x]}
        outputs: [d]
    """)
    x = np.array([[0.1, -0.2, 0.3], [0.4, -0.5, 0.6]])
    before = x.copy()
    fast, out, _, _ = plain_and_fast(graph, {"x": x})
    assert fast.plan.reuses() == {"b": "a", "c": "b", "d": "c"}
    assert [[s.name for s in block.steps] for block in fast.plan.blocks] == [["a", "b", "c", "d"]]
    np.testing.assert_allclose(out["d"], np.tanh(np.exp(x * 2.0)) - x, rtol=1e-15)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out["d"], x)
    with pytest.raises(engine.EngineError, match="'b' was freed"):
        fast.value("b")


def test_nothing_is_written_over_a_value_backward_reads_or_an_output(build) -> None:
    """Tanh's vjp reads its output t, and Mul's vjp reads its inputs: neither may be written
    over, and nor may the output o; m, which nothing reads after Tanh, may."""
    graph = build("""
        name: kept
        inputs: {x: {shape: [4], requires_grad: true}}
        nodes:
          m: {op: Mul, inputs: [x, 3.0]}
          t: {op: Tanh, inputs: [m]}
          o: {op: Exp, inputs: [t]}
          n: {op: Neg, inputs: [o]}
          p: {op: Mul, inputs: [n, t]}
          loss: {op: Sum, inputs: [p]}
        outputs: [o, loss]
        loss: loss
    """)
    x = np.array([0.1, -0.3, 0.2, 0.05])
    fast, out, _, _ = plain_and_fast(graph, {"x": x})
    assert fast.plan.reuses() == {"t": "m"}
    for name in ("t", "o", "n"):  # alive after forward, each in memory of its own
        others = [fast.value(other) for other in ("t", "o", "n", "x") if other != name]
        assert not any(np.shares_memory(fast.value(name), other) for other in others)
    np.testing.assert_allclose(fast.value("t"), np.tanh(3.0 * x), rtol=1e-15)
    np.testing.assert_allclose(out["o"], np.exp(np.tanh(3.0 * x)), rtol=1e-15)


def test_a_value_with_a_view_alive_is_not_written_over(build) -> None:
    """r is a Reshape of a (a view of a's memory) and is still read after Neg, a's last
    elementwise reader: writing Neg's result into a's buffer would change r."""
    graph = build("""
        name: view
        inputs: {x: {shape: [2, 3]}}
        nodes:
          a: {op: Exp, inputs: [x]}
          r: {op: Reshape, inputs: [a], shape: [3, 2]}
          b: {op: Neg, inputs: [a]}
          back: {op: Reshape, inputs: [r], shape: [2, 3]}
          s: {op: Add, inputs: [b, back]}
        outputs: [s]
    """)
    x = np.array([[0.1, -0.2, 0.3], [0.4, -0.5, 0.6]])
    fast, out, _, _ = plain_and_fast(graph, {"x": x})
    assert "b" not in fast.plan.reuses()
    np.testing.assert_allclose(out["s"], np.zeros((2, 3)), atol=1e-15)  # -e^x + e^x


@pytest.mark.parametrize("spec, why", [
    ("""
        inputs: {x: {shape: [3, 4]}, row: {shape: [4]}}
        nodes:
          a: {op: Exp, inputs: [row]}
          b: {op: Add, inputs: [a, x]}
        outputs: [b]
    """, "a's shape [4] is not the result's [3, 4]"),
    ("""
        inputs: {x: {shape: [3], dtype: float32}}
        constants: {k: {value: [1.0, 2.0, 3.0], dtype: float64}}
        nodes:
          a: {op: Exp, inputs: [x]}
          b: {op: Add, inputs: [a, 1.5]}
          c: {op: Mul, inputs: [b, k]}
        outputs: [c]
    """, "b is float32, c float64"),
    ("""
        inputs: {x: {shape: []}}
        nodes:
          a: {op: Exp, inputs: [x]}
          b: {op: Neg, inputs: [a]}
        outputs: [b]
    """, "a 0-d result is a NumPy scalar, not a buffer"),
    ("""
        inputs: {x: {shape: [3]}}
        parameters: {w: {shape: [3], init: ones}}
        nodes:
          a: {op: Exp, inputs: [x]}
          b: {op: Mul, inputs: [w, x]}
        outputs: [a, b]
    """, "x and w are the caller's"),
])
def test_no_buffer_is_reused_where_a_rule_says_no(build, spec: str, why: str) -> None:
    graph = build("name: rules\n" + textwrap.dedent(spec))
    feeds = {name: np.linspace(0.1, 0.9, int(np.prod(v.shape, dtype=int))).reshape(v.shape)
             .astype(v.dtype) for name, v in graph.values.items() if v.kind == "input"}
    kept = {name: a.copy() for name, a in feeds.items()}
    fast, _, _, _ = plain_and_fast(graph, feeds)
    last = fast.plan.blocks[-1]
    assert not any(node == last.steps[-1].name for node, _ in last.writes), why
    for name, array in feeds.items():
        np.testing.assert_array_equal(array, kept[name])
    np.testing.assert_array_equal(fast.parameters.get("w", np.ones(3)), np.ones(3))


def _readers(graph: engine.Graph) -> dict[str, list[str]]:
    readers: dict[str, list[str]] = {name: [] for name in graph.values}
    for name in graph.order:
        for ref in graph.nodes[name].inputs:
            readers[ref].append(name)
    return readers


@pytest.mark.parametrize("seed", range(20))
def test_every_reuse_in_random_graphs_is_of_a_dead_value_of_its_own(seed: int) -> None:
    """Checked against the graph (not the plan's own bookkeeping): the donor is a node made
    and read only by elementwise ops, whose last reader is the node writing into it, which
    backward does not read, which is no output, and which has the node's shape and dtype;
    and the numbers are the plain path's.  The random graphs have no loss here, so that
    nothing is kept for backward and most chains reuse."""
    spec = random_spec(seed).split("\nloss:")[0].replace("requires_grad: true",
                                                         "requires_grad: false")
    graph = engine.loads(spec + f"\noutputs: [{graph_last(spec)}]\n", file="random.yaml")
    fast, _, _, _ = plain_and_fast(graph)
    readers = _readers(graph)
    position = {name: i for i, name in enumerate(graph.order)}
    reuses = fast.plan.reuses()
    for node, donor in reuses.items():
        assert donor in graph.nodes and donor not in graph.outputs
        assert REGISTRY[graph.nodes[donor].op.name].ufunc is not None
        assert all(REGISTRY[graph.nodes[r].op.name].ufunc is not None for r in readers[donor])
        assert max(position[r] for r in readers[donor]) == position[node]
        assert graph.values[donor].shape == graph.values[node].shape
        assert graph.values[donor].dtype == graph.values[node].dtype
    if seed == 0:
        assert reuses  # the rules do fire on these graphs


def graph_last(spec: str) -> str:
    """The last node of a random spec (the sum of every term)."""
    return [line.split(":")[0].strip() for line in spec.splitlines()
            if line.startswith("  v")][-1]


def test_a_failing_chain_names_its_nodes(build) -> None:
    """An error inside a block names its last node and the nodes run with it (their values
    never reach a slot, so the failure may be theirs)."""
    graph = build("""
        name: bad
        inputs: {x: {shape: [3]}}
        nodes:
          a: {op: Add, inputs: [x, x]}
          b: {op: Exp, inputs: [a]}
        outputs: [b]
    """)
    ex = engine.Executor(graph)
    (run,) = ex._forward_program

    def broken(*arrays: np.ndarray) -> np.ndarray:
        raise ValueError("a kernel failed")

    ex._forward_program[0] = run._replace(call=broken)
    with pytest.raises(engine.DataError,
                       match=r"node 'b' \(Exp, .*\) failed in forward \(run as one step after "
                             r"'a'\) with inputs x: \[3\]: a kernel failed"):
        ex.forward({"x": np.ones(3)})


# -- what the plan runs instead of the rules: ufuncs, residual-passing fast paths ---------------

UFUNC_OPS = [op for op in REGISTRY.values() if op.ufunc is not None]
SAVING_OPS = [op for op in REGISTRY.values() if op.fast_forward_saving is not None]


def test_the_elementwise_ops_name_their_ufunc() -> None:
    assert {op.name for op in UFUNC_OPS} >= {"Add", "Sub", "Mul", "Div", "Pow", "Exp", "Log",
                                            "Neg", "Tanh"}


@pytest.mark.parametrize("op", UFUNC_OPS, ids=lambda op: op.name)
def test_an_ops_ufunc_computes_its_rule(op) -> None:
    for sample in op.samples(np.random.default_rng(4)):
        want = op.forward(np, op.attrs(**sample.attrs), *sample.inputs)
        np.testing.assert_array_equal(op.ufunc(*sample.inputs), want)


@pytest.mark.parametrize("op", SAVING_OPS, ids=lambda op: op.name)
def test_residual_passing_fast_paths_give_the_rules_numbers(op) -> None:
    """With its residual the vjp is the rule's; the residual is not written into, so a
    second backward gets the same numbers."""
    assert op.fast_vjp_saved is not None
    for sample in op.samples(np.random.default_rng(5)):
        attrs, inputs = op.attrs(**sample.attrs), list(sample.inputs)
        out = op.forward(np, attrs, *inputs)
        value, residual = op.fast_forward_saving(np, attrs, *inputs)
        np.testing.assert_allclose(value, out, rtol=1e-13, atol=0)
        needs = tuple(op.is_differentiable(i) for i in range(len(inputs)))
        g = np.asarray(np.random.default_rng(6).normal(size=np.shape(out)))
        want = op.vjp(np, attrs, g, out, inputs, needs)
        for _ in range(2):
            got = op.fast_vjp_saved(np, attrs, g, residual, inputs, needs)
            for part, ref in zip(got, want, strict=True):
                assert (part is None) == (ref is None)
                if part is not None:
                    np.testing.assert_allclose(part, ref, rtol=1e-12, atol=1e-15)


def test_a_residual_reaches_the_vjp_of_its_own_step(build, monkeypatch) -> None:
    """An op given residual-passing fast paths (here Exp, keeping 2 * e^x) runs them on the
    optimized path: each step's vjp gets its own step's residual, from the last forward,
    as often as backward runs; the plain path runs the rules."""
    exp = REGISTRY["Exp"]
    seen: list[np.ndarray] = []

    def saving(xp, attrs, x):
        value = np.exp(x)
        return value, 2.0 * value

    def saved(xp, attrs, g, residual, inputs, needs):
        seen.append(residual)
        return (g * residual / 2.0,)

    monkeypatch.setitem(REGISTRY, "Exp", dataclasses.replace(
        exp, fast_forward_saving=saving, fast_vjp_saved=saved))
    graph = build("""
        name: saved
        inputs: {x: {shape: [3], requires_grad: true}}
        nodes:
          a: {op: Exp, inputs: [x]}
          b: {op: Exp, inputs: [a]}
          loss: {op: Sum, inputs: [b]}
        loss: loss
    """)
    x = np.array([0.1, -0.4, 0.3])
    fast, _, _, _ = plain_and_fast(graph, {"x": x})
    assert len(seen) == 2
    np.testing.assert_allclose(seen[0], 2 * np.exp(np.exp(x)))  # b's vjp runs first
    np.testing.assert_allclose(seen[1], 2 * np.exp(x))
    first = fast.backward()["x"]
    fast.forward({"x": 2 * x})
    np.testing.assert_allclose(fast.backward()["x"], np.exp(np.exp(2 * x)) * np.exp(2 * x))
    np.testing.assert_allclose(first, np.exp(np.exp(x)) * np.exp(x))
    assert len(seen) == 6
