"""The optimized executor against the plain path, and what freeing values means for users.

``Executor(graph, optimize=False)`` keeps every value, checks every gradient's
shape at run time, adds nothing in place and runs the ops' plain rules without
their NumPy fast paths.  Every optimization must give the same numbers (within 1e-12), on every
example graph and on randomly generated graphs.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.runtime.plan import compile_plan
from engine.testing.gradcheck import numeric_grad


def assert_same_run(graph: engine.Graph, feeds: dict[str, np.ndarray] | None = None) -> None:
    fast, plain = engine.Executor(graph), engine.Executor(graph, optimize=False)
    out_fast, out_plain = fast.forward(feeds), plain.forward(feeds)
    assert out_fast.keys() == out_plain.keys()
    for name in out_plain:
        np.testing.assert_allclose(out_fast[name], out_plain[name], rtol=1e-12, atol=1e-300)
    if graph.loss is None:
        return
    assert fast.loss == pytest.approx(plain.loss, rel=1e-12)
    g_fast, g_plain = fast.backward(), plain.backward()
    assert g_fast.keys() == g_plain.keys() and g_plain
    for name in g_plain:
        assert g_fast[name].shape == g_plain[name].shape
        np.testing.assert_allclose(g_fast[name], g_plain[name], rtol=1e-12, atol=1e-14,
                                   err_msg=name)


@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.name)
@pytest.mark.filterwarnings("ignore::engine.errors.DataWarning")  # random soft targets: meant
def test_every_example_graph_gives_the_plain_paths_numbers(path) -> None:
    graph = engine.load(path)
    assert_same_run(graph)
    defaults = engine.Executor(graph)
    defaults.forward()
    rng = np.random.default_rng(5)
    feeds = {name: rng.uniform(0.1, 1.0, size=defaults.value(name).shape)
             if value.dtype.startswith("float") else np.flip(defaults.value(name))  # labels
             for name, value in graph.values.items() if value.kind == "input"}
    assert_same_run(graph, feeds)


# -- random graphs ---------------------------------------------------------------------------

#: Shapes that broadcast against [3, 4], the main shape of the random graphs.
_SHAPES = {"x": [3, 4], "row": [4], "col": [3, 1], "s": [1, 1]}


def random_spec(seed: int, size: int = 14) -> str:
    """A random DAG over many ops: fan-out, broadcasting, reductions, reshapes, matmul.

    Values stay finite: Exp and Div only see Tanh-bounded values, Log only Sigmoid's.
    """
    rng = np.random.default_rng(seed)
    grads = {name: bool(rng.integers(0, 2)) or name == "x" for name in _SHAPES}
    lines = ["name: random", f"seed: {seed}", "inputs:"]
    for name, shape in _SHAPES.items():
        lines.append(f"  {name}: {{shape: {shape}, init: {{normal: {{std: 0.5}}}}, "
                     f"requires_grad: {str(grads[name]).lower()}}}")
    lines += ["parameters:", "  w: {shape: [4, 4], init: {normal: {std: 0.5}}}", "nodes:"]
    full = ["x"]  # values of shape [3, 4]
    small = ["row", "col", "s"]  # values that broadcast against them
    count = 0

    def node(op: str, inputs: list[str], extra: str = "", into: list[str] | None = None) -> str:
        nonlocal count
        count += 1
        name = f"v{count}"
        lines.append(f"  {name}: {{op: {op}, inputs: [{', '.join(inputs)}]{extra}}}")
        (full if into is None else into).append(name)
        return name

    def pick(pool: list[str]) -> str:
        return pool[int(rng.integers(0, len(pool)))]

    for _ in range(size):
        a = pick(full)
        kind = int(rng.integers(0, 12))
        if kind == 0:
            node(pick(["Tanh", "Sigmoid", "Neg", "Relu"]), [a])
        elif kind == 1:
            node("Exp", [node("Tanh", [a], into=[])])
        elif kind == 2:
            node("Log", [node("Sigmoid", [a], into=[])])
        elif kind == 3:
            node(pick(["Add", "Sub", "Mul"]), [a, pick(full + small)])
        elif kind == 4:
            node(pick(["Add", "Mul"]), [pick(small), a])
        elif kind == 5:
            node("Div", [a, node("Exp", [node("Tanh", [pick(full + small)], into=[])], into=[])])
        elif kind == 6:
            axis, keep = [("-1", "true"), ("0", "false"), ("[0, 1]", "true")][
                int(rng.integers(0, 3))]
            node(pick(["Sum", "Mean", "Max"]), [a], f", axis: {axis}, keepdims: {keep}", small)
        elif kind == 7:
            node("MatMul", [a, "w"])
        elif kind == 8:
            node(pick(["Softmax", "LogSoftmax"]), [a])
        elif kind == 9:
            flat = node("Reshape", [a], ", shape: [-1]", into=[])
            node("Reshape", [flat], ", shape: [3, 4]")
        elif kind == 10:
            node("Transpose", [node("Transpose", [a], into=[])])
        else:
            node("Pow", [node("Sigmoid", [a], into=[]), pick(["2", "-1", "0.5"])])
    # Every value reaches the loss, most through more than one path.
    terms = [node("Sum", [name], into=[]) for name in full + small[3:]]
    total = terms[0]
    for term in terms[1:]:
        total = node("Add", [total, term], into=[])
    lines.append(f"loss: {total}")
    lines.append(f"outputs: [{total}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_random_graph_gives_the_plain_paths_numbers(seed) -> None:
    assert_same_run(engine.loads(random_spec(seed), file=f"random{seed}.yaml"))


def test_random_graphs_free_values_and_still_agree_with_finite_differences() -> None:
    """The plain path is itself right: a check of one random graph against differences."""
    graph = engine.loads(random_spec(3, size=8), file="random.yaml")
    ex = engine.Executor(graph)
    ex.forward()
    feeds = {name: np.array(ex.value(name)) for name in _SHAPES}
    ex.forward(feeds)
    grads = ex.backward()
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, numeric_grad(ex, feeds, name), rtol=1e-5, atol=1e-8)


# -- what freeing values means for users -----------------------------------------------------

def test_intermediate_values_are_freed_unless_kept(build) -> None:
    graph = build("""
        name: free
        inputs: {x: {shape: [2, 3], requires_grad: true}}
        parameters: {b: {shape: [3], init: zeros}}
        nodes:
          z: {op: Add, inputs: [x, b]}
          t: {op: Tanh, inputs: [z]}
          loss: {op: Sum, inputs: [t]}
        outputs: [loss]
        loss: loss
    """)
    ex = engine.Executor(graph)
    ex.forward({"x": np.ones((2, 3))})
    with pytest.raises(engine.EngineError, match=r"'z' was freed.*list it under outputs"):
        ex.value("z")
    np.testing.assert_allclose(ex.value("t"), np.tanh(np.ones((2, 3))))  # Tanh's vjp reads it
    np.testing.assert_array_equal(ex.value("x"), np.ones((2, 3)))
    plain = engine.Executor(graph, optimize=False)
    plain.forward({"x": np.ones((2, 3))})
    np.testing.assert_array_equal(plain.value("z"), np.ones((2, 3)))
    with pytest.raises(engine.EngineError, match=r"'zz' names no value.*did you mean 'z'"):
        ex.value("zz")


def test_value_before_forward_is_a_clear_error() -> None:
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    with pytest.raises(engine.EngineError, match=r"run forward\(\) first"):
        ex.value("x")


def test_backward_can_start_at_a_freed_node_with_a_checked_shape(build) -> None:
    graph = build("""
        name: seedfree
        inputs: {x: {shape: [2, 3], requires_grad: true}}
        nodes:
          z: {op: Add, inputs: [x, 1.0]}
          t: {op: Tanh, inputs: [z]}
        outputs: [t]
    """)
    ex = engine.Executor(graph)
    x = np.array([[0.1, 0.2, 0.3], [-0.4, 0.5, -0.6]])
    ex.forward({"x": x})
    np.testing.assert_array_equal(ex.backward({"z": np.full((2, 3), 2.0)})["x"],
                                  np.full((2, 3), 2.0))
    with pytest.raises(engine.DataError, match=r"upstream gradient for 'z' has shape \[3\]"):
        ex.backward({"z": np.ones(3)})


def test_a_gradient_returned_earlier_is_never_overwritten() -> None:
    """Buffers are added into in place only while backward owns them, never after."""
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    ex.forward()
    first = ex.backward(keep=["raised"])
    saved = {name: grad.copy() for name, grad in first.items()}
    ex.forward({"x": np.full((5, 3), 0.5), "y": np.eye(3)[[0, 1, 2, 0, 1]]})
    ex.backward(keep=["raised"])
    for name, grad in first.items():
        np.testing.assert_array_equal(grad, saved[name])


def test_the_plan_keeps_only_what_backward_reads() -> None:
    """mlp.yaml as written: Add's vjp reads neither input, so z1 and z2 die right after their
    Add.  (The executor's default runs it fused: Dense, whose vjp reads its output.)"""
    plan = compile_plan(engine.load(GRAPHS / "mlp.yaml"), fast=True)
    kept = {plan.names[slot] for slot in plan.kept}
    assert kept == {"a1", "probs", "loss"}  # Relu and Softmax read outputs; NLL its inputs
    freed = {plan.names[slot] for step in plan.steps for slot in step.frees}
    assert freed == {"z1", "h1", "z2", "logits"}


def test_a_gradient_passed_through_add_to_two_inputs_is_not_added_into(build) -> None:
    """Add hands the same upstream array to both inputs; adding into it in place for one
    input would change the other's gradient."""
    ex = engine.Executor(build("""
        name: alias
        inputs: {x: {shape: [3], requires_grad: true}}
        nodes:
          a: {op: Tanh, inputs: [x]}
          b: {op: Exp, inputs: [x]}
          p: {op: Mul, inputs: [a, b]}
          s: {op: Add, inputs: [a, b]}
          t: {op: Add, inputs: [s, p]}
          loss: {op: Sum, inputs: [t]}
        loss: loss
    """))
    x = np.array([0.3, -0.2, 0.7])
    ex.forward({"x": x})
    grads = ex.backward(keep=["a", "b"])
    a, b = np.tanh(x), np.exp(x)
    np.testing.assert_allclose(grads["a"], 1 + b, rtol=1e-14)  # d(a + b + a b)/da
    np.testing.assert_allclose(grads["b"], 1 + a, rtol=1e-14)
    np.testing.assert_allclose(grads["x"], (1 + b) * (1 - a * a) + (1 + a) * b, rtol=1e-14)


def test_check_finite_keeps_every_value_for_its_reports() -> None:
    """A NaN report lists the node's inputs, so check_finite frees nothing; trace frees."""
    graph = engine.load(GRAPHS / "mlp.yaml")
    checked, traced = (engine.Executor(graph, check_finite=True),
                       engine.Executor(graph, trace=True))
    checked.forward()
    traced.forward()
    assert checked.value("z1").shape == (10, 10)
    with pytest.raises(engine.EngineError, match="'z1' is not computed on the optimized path"):
        traced.value("z1")  # fused into Dense a1
    traced.value("a1")  # kept: Dense's vjp reads it
    for name, grad in checked.backward().items():
        np.testing.assert_allclose(grad, traced.backward()[name], rtol=1e-12)


def test_large_arrays_take_the_numpy_fast_paths_and_agree(build) -> None:
    """Above SMALL_ARRAY elements the ops switch to einsum and broadcast views."""
    from engine.ops.base import SMALL_ARRAY

    rows, cols = 160, 128
    assert rows * cols > SMALL_ARRAY
    graph = build(f"""
        name: big
        inputs:
          x: {{shape: [{rows}, {cols}], init: {{uniform: {{low: 0, high: 1}}}},
              requires_grad: true}}
          y: {{shape: [{rows}, {cols}], init: one_hot}}
        parameters: {{scale: {{shape: [1, {cols}], init: {{normal: {{mean: 1, std: 0.1}}}}}}}}
        nodes:
          raised:   {{op: Exp, inputs: [x]}}
          summed:   {{op: Sum, inputs: [raised], axis: -1, keepdims: true}}
          mean:     {{op: Mean, inputs: [raised], axis: 0}}
          inverted: {{op: Pow, inputs: [summed, -1]}}
          softmax:  {{op: Mul, inputs: [raised, inverted]}}
          scaled:   {{op: Mul, inputs: [softmax, scale]}}
          shifted:  {{op: Add, inputs: [scaled, mean]}}
          probs:    {{op: Softmax, inputs: [shifted]}}
          loss:     {{op: NLL, inputs: [probs, y], reduction: mean}}
        loss: loss
    """)
    assert_same_run(graph)


@pytest.mark.parametrize("columns", [2, 3, 7])
def test_reductions_over_a_few_columns_give_numpys_bits(columns) -> None:
    """NumPy reduces a short last axis row by row, slowly; folding the columns instead must
    give exactly what NumPy's reduce gives (NaN included)."""
    from engine.runtime.kernels import FOLD_MIN_SIZE, numpy_max, numpy_sum

    rng = np.random.default_rng(columns)
    x = rng.normal(size=(FOLD_MIN_SIZE, columns)) * 10.0 ** rng.uniform(-8, 8, (1, columns))
    x[3, 1] = np.nan
    for keepdims in (True, False):
        np.testing.assert_array_equal(numpy_sum(x, -1, keepdims),
                                      np.add.reduce(x, axis=-1, keepdims=keepdims))
        np.testing.assert_array_equal(numpy_max(x, (1,), keepdims),
                                      np.maximum.reduce(x, axis=-1, keepdims=keepdims))


def test_a_classifier_over_few_classes_agrees_with_the_plain_path(build) -> None:
    graph = build("""
        name: few
        inputs:
          z: {shape: [5000, 3], init: {normal: {std: 3}}, requires_grad: true}
          y: {shape: [5000, 3], init: one_hot}
        nodes:
          top: {op: Max, inputs: [z], axis: -1, keepdims: true}
          p: {op: Softmax, inputs: [z]}
          lp: {op: LogSoftmax, inputs: [z]}
          nll: {op: NLL, inputs: [p, y]}
          both: {op: Add, inputs: [lp, top]}
          s: {op: Sum, inputs: [both]}
          loss: {op: Add, inputs: [nll, s]}
        outputs: [top, p, lp]
        loss: loss
    """)
    assert_same_run(graph)
