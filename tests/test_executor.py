"""Executor semantics: fan-out sums, broadcast reduction, pruning, repeatability, scale."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.testing.gradcheck import numeric_grad


def test_mul_of_a_value_with_itself_counts_twice(build) -> None:
    ex = engine.Executor(build("""
        name: square
        inputs: {x: {shape: [4], requires_grad: true}}
        nodes:
          sq: {op: Mul, inputs: [x, x]}
          loss: {op: Sum, inputs: [sq]}
        loss: loss
    """))
    x = np.array([1.0, -2.0, 3.0, 0.5])
    ex.forward({"x": x})
    np.testing.assert_array_equal(ex.backward()["x"], 2 * x)


def test_value_feeding_three_nodes_sums_three_gradients(build) -> None:
    ex = engine.Executor(build("""
        name: fan
        inputs: {x: {shape: [3], requires_grad: true}}
        nodes:
          a: {op: Exp, inputs: [x]}
          b: {op: Mul, inputs: [x, 3]}
          c: {op: Tanh, inputs: [x]}
          ab: {op: Add, inputs: [a, b]}
          abc: {op: Add, inputs: [ab, c]}
          loss: {op: Sum, inputs: [abc]}
        loss: loss
    """))
    x = np.array([0.1, -0.4, 0.9])
    ex.forward({"x": x})
    np.testing.assert_allclose(ex.backward()["x"], np.exp(x) + 3 + (1 - np.tanh(x) ** 2),
                               rtol=1e-14)


def test_diamond_graph_matches_finite_differences(build) -> None:
    ex = engine.Executor(build("""
        name: diamond
        inputs: {x: {shape: [2, 3], requires_grad: true}}
        nodes:
          e1: {op: Exp, inputs: [x]}
          m1: {op: Mul, inputs: [x, 0.5]}
          d1: {op: Mul, inputs: [e1, m1]}
          e2: {op: Exp, inputs: [d1]}
          m2: {op: Mul, inputs: [d1, 0.5]}
          d2: {op: Mul, inputs: [e2, m2]}
          loss: {op: Sum, inputs: [d2]}
        loss: loss
    """))
    feeds = {"x": np.random.default_rng(0).uniform(-1, 1, size=(2, 3))}
    ex.forward(feeds)
    np.testing.assert_allclose(ex.backward()["x"], numeric_grad(ex, feeds, "x"), rtol=1e-6)


@pytest.mark.parametrize("bias_shape", [[3], [1, 3], [1, 1, 3], [2, 1, 3], [1, 8, 1], []])
def test_broadcast_bias_gradient_is_summed_to_its_shape(build, bias_shape) -> None:
    ex = engine.Executor(build(f"""
        name: bias
        inputs: {{x: {{shape: [2, 8, 3]}}}}
        parameters: {{b: {{shape: {bias_shape}, init: {{normal: {{}}}}}}}}
        nodes:
          z: {{op: Add, inputs: [x, b]}}
          t: {{op: Tanh, inputs: [z]}}
          loss: {{op: Sum, inputs: [t]}}
        loss: loss
    """))
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 8, 3))}
    ex.forward(feeds)
    grad = ex.backward()["b"]
    assert grad.shape == tuple(bias_shape)
    full = 1 - np.tanh(feeds["x"] + ex.parameters["b"]) ** 2
    lead = full.ndim - len(bias_shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(bias_shape) if d == 1)
    np.testing.assert_allclose(grad, full.sum(axis=axes).reshape(bias_shape), rtol=1e-12)


@pytest.mark.parametrize("spec", ["mlp.yaml", "dense.yaml"])
def test_mlp_gradients_match_finite_differences(spec) -> None:
    ex = engine.Executor(engine.load(GRAPHS / spec))
    rng = np.random.default_rng(2)
    feeds = {"x": rng.normal(size=(4, 13)), "y": np.eye(3)[rng.integers(0, 3, 4)]}
    ex.forward(feeds)
    grads = ex.backward()
    assert set(grads) == {"w1", "b1", "w2", "b2"}  # x and y require no grad
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, numeric_grad(ex, feeds, name), rtol=1e-5, atol=1e-8)


def test_mlp_and_dense_compute_the_same_thing() -> None:
    mlp = engine.Executor(engine.load(GRAPHS / "mlp.yaml"))
    dense = engine.Executor(engine.load(GRAPHS / "dense.yaml"))
    a, b = mlp.forward(), dense.forward()
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-14)
    ga, gb = mlp.backward(), dense.backward()
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-12, atol=1e-15)


def test_backward_twice_gives_the_same_result() -> None:
    ex = engine.Executor(engine.load(GRAPHS / "mlp.yaml"))
    ex.forward()
    first = {k: v.copy() for k, v in ex.backward().items()}
    second = ex.backward()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_no_gradient_is_computed_for_data_without_requires_grad(build, monkeypatch) -> None:
    graph = build("""
        name: frozen
        inputs: {x: {shape: [2, 3], init: ones}}
        parameters: {w: {shape: [3, 2], init: ones}}
        nodes:
          z: {op: MatMul, inputs: [x, w]}
          loss: {op: Sum, inputs: [z]}
        loss: loss
    """)
    ex = engine.Executor(graph)
    (step,) = [s for s in ex.plan.steps if s.name == "z"]
    assert step.needs == (False, True)
    ex.forward()
    assert set(ex.backward()) == {"w"}


def test_pow_exponent_tensor_gets_its_gradient(build) -> None:
    ex = engine.Executor(build("""
        name: powexp
        inputs:
          base: {shape: [3], init: {value: [0.5, 2.0, 3.0]}}
          e: {shape: [3], init: {value: [1.5, -1.0, 2.0]}, requires_grad: true}
        nodes:
          p: {op: Pow, inputs: [base, e]}
          loss: {op: Sum, inputs: [p]}
        loss: loss
    """))
    ex.forward()
    base, e = np.array([0.5, 2.0, 3.0]), np.array([1.5, -1.0, 2.0])
    np.testing.assert_allclose(ex.backward()["e"], base**e * np.log(base), rtol=1e-14)


def test_nll_with_integer_class_indices_equals_one_hot(build) -> None:
    spec = """
        name: nll
        inputs:
          z: {{shape: [4, 3], requires_grad: true}}
          t: {{shape: {tshape}, dtype: {dtype}}}
        nodes:
          p: {{op: Softmax, inputs: [z]}}
          loss: {{op: NLL, inputs: [p, t], reduction: mean}}
        loss: loss
    """
    labels = np.array([0, 2, 1, 2])
    z = np.random.default_rng(3).normal(size=(4, 3))
    by_index = engine.Executor(build(spec.format(tshape="[4]", dtype="int64")))
    by_one_hot = engine.Executor(build(spec.format(tshape="[4, 3]", dtype="float64")))
    by_index.forward({"z": z, "t": labels})
    by_one_hot.forward({"z": z, "t": np.eye(3)[labels]})
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert by_index.loss == pytest.approx(-np.log(p[np.arange(4), labels]).mean(), rel=1e-14)
    assert by_one_hot.loss == pytest.approx(by_index.loss, rel=1e-14)
    np.testing.assert_allclose(by_index.backward()["z"], (p - np.eye(3)[labels]) / 4, atol=1e-15)


def test_user_arrays_are_never_written_to(build) -> None:
    ex = engine.Executor(build("""
        name: nowrite
        inputs: {x: {shape: [3], requires_grad: true}}
        nodes:
          a: {op: Add, inputs: [x, x]}
          b: {op: Add, inputs: [a, x]}
          c: {op: Add, inputs: [b, a]}
        outputs: [c]
    """))
    x = np.array([1.0, 2.0, 3.0])
    upstream = np.ones(3)
    ex.forward({"x": x})
    grads = ex.backward({"c": upstream})
    np.testing.assert_array_equal(grads["x"], [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(upstream, np.ones(3))
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


NAMED_BATCH_SPEC = """
        name: named
        dims: {batch: 2}
        inputs:
          x: {shape: [batch, 3], requires_grad: true}
          y: {shape: [batch, 3], init: one_hot}
        nodes:
          p: {op: Softmax, inputs: [x]}
          loss: {op: NLL, inputs: [p, y]}
        loss: loss
    """


def test_named_dimensions_bind_from_feeds(build) -> None:
    graph = build(NAMED_BATCH_SPEC)
    ex = engine.Executor(graph)
    ex.forward({"x": np.zeros((7, 3))})
    assert ex.value("y").shape == (7, 3)  # the default follows the fed batch size
    with pytest.raises(engine.DataError, match=r"input 'y'.*\[batch, 3\].*batch = 7.*\[5, 3\]"):
        ex.forward({"x": np.zeros((7, 3)), "y": np.zeros((5, 3))})


def test_feed_checks_remembered_per_shape_bind_their_own_dims(build) -> None:
    """Feeds of a few shapes (a training loop's batches and splits) skip the checks they
    passed before, yet each shape keeps its own named dimensions, and a new bad feed fails."""
    ex = engine.Executor(build(NAMED_BATCH_SPEC))
    for rows in (7, 5, 7, 5):  # the second round finds both shapes remembered
        ex.forward({"x": np.zeros((rows, 3))})
        assert ex.value("y").shape == (rows, 3)
        assert ex.backward()["x"].shape == (rows, 3)
    with pytest.raises(engine.DataError, match=r"expected shape \[batch, 3\].*fed \[7, 4\]"):
        ex.forward({"x": np.zeros((7, 4))})
    with pytest.raises(engine.DataError, match=r"declared dtype float64, fed complex128"):
        ex.forward({"x": np.zeros((7, 3), dtype=np.complex128)})
    with pytest.raises(engine.DataError, match=r"expected shape \[batch, 3\].*fed \[7, 2\]"):
        ex.forward({"x": [[0.0, 0.0]] * 7})  # not an array: checked every time


@pytest.mark.parametrize(("feeds", "pattern"), [
    ({"x": np.zeros((5, 4))}, r"input 'x' \(test.yaml:4:3\): expected shape \[5, 3\], fed "
                              r"\[5, 4\]"),
    ({"x": np.zeros(3)}, r"expected shape \[5, 3\], fed \[3\]"),
    ({"x": np.zeros((5, 3), dtype=np.complex128)}, r"declared dtype float64, fed complex128"),
    ({"x": np.array([["a"] * 3] * 5)}, r"expected numbers"),
    ({"w": np.zeros((5, 3))}, r"cannot feed 'w': it is not declared"),
    ({"softmax": np.zeros((5, 3))}, r"cannot feed 'softmax': it is a node"),
])
def test_bad_feeds_name_the_input_and_the_shapes(build, feeds, pattern) -> None:
    graph = build("""
        name: feeds
        inputs:
          x: {shape: [5, 3]}
        nodes:
          softmax: {op: Softmax, inputs: [x]}
        outputs: [softmax]
    """)
    with pytest.raises(engine.DataError, match=pattern):
        engine.Executor(graph).forward(feeds)


def test_missing_feed_without_init_is_a_clear_error(build) -> None:
    graph = build("""
        name: missing
        inputs: {x: {shape: [2]}}
        nodes: {e: {op: Exp, inputs: [x]}}
        outputs: [e]
    """)
    with pytest.raises(engine.DataError, match=r"input 'x' \(test.yaml:3:10\) was not fed and "
                                               r"has no init"):
        engine.Executor(graph).forward()


def test_float32_graph_stays_float32_with_bare_constants(build) -> None:
    ex = engine.Executor(build("""
        name: f32
        inputs: {x: {shape: [3], dtype: float32, requires_grad: true}}
        constants: {minus_one: -1}
        nodes:
          inv: {op: Pow, inputs: [x, minus_one]}
          half: {op: Mul, inputs: [inv, 0.5]}
          loss: {op: Sum, inputs: [half]}
        loss: loss
    """))
    ex.forward({"x": np.array([1.0, 2.0, 4.0], dtype=np.float32)})
    assert ex.value("half").dtype == np.float32
    grad = ex.backward()["x"]
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, -0.5 / np.array([1.0, 4.0, 16.0]), rtol=1e-6)


def chain_spec(length: int) -> str:
    lines = ["name: chain", "inputs: {x: {shape: [4, 4], init: {uniform: {low: -1, high: 1}},"
             " requires_grad: true}}", "nodes:"]
    previous = "x"
    for i in range(length):
        op = "Tanh" if i % 2 else "Mul"
        inputs = f"[{previous}]" if op == "Tanh" else f"[{previous}, 0.9]"
        lines.append(f"  n{i}: {{op: {op}, inputs: {inputs}}}")
        previous = f"n{i}"
    lines += [f"  loss: {{op: Sum, inputs: [{previous}]}}", "loss: loss"]
    return "\n".join(lines) + "\n"


def test_a_100000_node_chain_loads_compiles_and_runs_without_recursion(tmp_path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chain_spec(100_000))
    ex = engine.Executor(engine.load(path))
    ex.forward()
    grad = ex.backward()["x"]
    assert grad.shape == (4, 4) and np.isfinite(grad).all()


def test_short_chain_gradient_matches_finite_differences(tmp_path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chain_spec(20))
    ex = engine.Executor(engine.load(path))
    feeds = {"x": np.random.default_rng(4).uniform(-1, 1, size=(4, 4))}
    ex.forward(feeds)
    np.testing.assert_allclose(ex.backward()["x"], numeric_grad(ex, feeds, "x"), rtol=1e-6)


def test_backward_before_forward_is_a_clear_error() -> None:
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    with pytest.raises(engine.EngineError, match="forward"):
        ex.backward()


def test_seed_makes_defaults_reproducible() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    a, b, c = (engine.Executor(graph, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.parameters["w1"], b.parameters["w1"])
    assert not np.array_equal(a.parameters["w1"], c.parameters["w1"])


def test_runs_on_array_api_strict() -> None:
    import array_api_strict as xps

    graph = engine.load(GRAPHS / "mlp.yaml")
    on_numpy, on_strict = engine.Executor(graph), engine.Executor(graph, xp=xps)
    on_numpy.forward()
    out = on_strict.forward()
    np.testing.assert_allclose(np.asarray(out["probs"]), on_numpy.value("probs"), rtol=1e-14)
    strict_grads = on_strict.backward()
    for name, grad in on_numpy.backward().items():
        np.testing.assert_allclose(np.asarray(strict_grads[name]), grad, rtol=1e-12, atol=1e-15)


def test_parameter_shape_from_a_dims_default(build) -> None:
    ex = engine.Executor(build("""
        name: pd
        dims: {hidden: 4}
        inputs: {x: {shape: [2, 3], init: ones}}
        parameters: {w: {shape: [3, hidden], init: ones}}
        nodes:
          z: {op: MatMul, inputs: [x, w]}
          loss: {op: Sum, inputs: [z]}
        loss: loss
    """))
    assert ex.parameters["w"].shape == (3, 4)
    ex.forward()
    np.testing.assert_array_equal(ex.backward()["w"], np.full((3, 4), 2.0))  # column sums of x


def test_keep_accepts_tensors_that_require_grad() -> None:
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"))
    ex.forward()
    grads = ex.backward(keep=["x", "raised"])
    assert set(grads) == {"x", "raised"}
    with pytest.raises(engine.DataError, match="'y' is not a node"):
        ex.backward(keep=["y"])


def test_graph_executor_plan_and_step_print_as_one_short_line() -> None:
    from conftest import GRAPHS

    graph = engine.load(GRAPHS / "mlp.yaml")
    ex = engine.Executor(graph, optimize=False)
    for text in (repr(graph), repr(ex)):
        assert "\n" not in text and len(text) < 120, text
        assert "'mlp'" in text and f"{len(graph.nodes)} nodes" in text
        assert "loss 'loss'" in text and "float64" in text
    assert "plain" in repr(ex) and "plain rules" in repr(ex.plan)
    assert repr(ex.plan).startswith(f"<Plan {len(graph.nodes)} steps")
    assert all(len(repr(step)) < 120 and step.name in repr(step) for step in ex.plan.steps)
