"""Functions and the standard library graphs/lib/nn.yaml: what a call computes.

Each library function is compared with the fused op it stages (whose forward and
vjp test_ops checks against NumPy references and finite differences), or with a
hand-derived formula where no op exists, forward and backward; the staged
softmax also with the lesson's own hand-written code.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from conftest import GRAPHS
from test_lesson import lesson_backward, lesson_data

import engine


def library_graph(nodes: str, inputs: str = "", **shapes: list[int]) -> engine.Graph:
    """A spec in graphs/ that imports the library, with float64 inputs of the given shapes.

    Every node the test writes is an output, so that the test can read its value (the
    executor frees intermediate values after their last use).
    """
    declared = "".join(f"  {name}: {{shape: {shape}, requires_grad: true}}\n"
                       for name, shape in shapes.items())
    written = re.findall(r"^(\w+):", textwrap.dedent(nodes), flags=re.M)
    text = ("name: t\nimports: {nn: lib/nn.yaml}\ninputs:\n" + declared + inputs +
            "nodes:\n" + textwrap.indent(textwrap.dedent(nodes), "  ") +
            f"outputs: [{', '.join(written)}]\n")
    return engine.loads(text, file=str(GRAPHS / "t.yaml"), base_dir=GRAPHS)


def same_forward_and_backward(graph: engine.Graph, a: str, b: str,
                              feeds: dict[str, np.ndarray], rtol: float = 1e-12) -> None:
    """Nodes a and b agree in value and in the gradient they send to every input."""
    ex = engine.Executor(graph)
    ex.forward(feeds)
    value = np.asarray(ex.value(a))
    np.testing.assert_allclose(value, ex.value(b), rtol=rtol, atol=1e-14)
    upstream = np.random.default_rng(7).normal(size=value.shape)
    grads_a = ex.backward({a: upstream})
    grads_b = ex.backward({b: upstream})
    wanted = {name for name, v in graph.values.items() if v.requires_grad and v.kind == "input"}
    assert grads_a.keys() == grads_b.keys() == wanted
    for name in wanted:
        np.testing.assert_allclose(grads_a[name], grads_b[name], rtol=rtol, atol=1e-12,
                                   err_msg=name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("function", ["staged_softmax", "softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_functions_equal_the_softmax_op(function: str, axis: int, rng) -> None:
    graph = library_graph(f"""\
        a: {{op: nn.{function}, inputs: [x], axis: {axis}}}
        b: {{op: Softmax, inputs: [x], axis: {axis}}}
    """, x=[4, 3])
    same_forward_and_backward(graph, "a", "b", {"x": rng.normal(size=(4, 3))})


def test_stable_softmax_does_not_overflow_where_the_staged_one_does() -> None:
    graph = library_graph("""\
        staged: {op: nn.staged_softmax, inputs: [x]}
        stable: {op: nn.softmax, inputs: [x]}
    """, x=[1, 2])
    ex = engine.Executor(graph, optimize=False)  # as written: the default fuses the staged one
    with np.errstate(over="ignore", invalid="ignore"):
        ex.forward({"x": np.array([[1000.0, 1001.0]])})
    assert np.isnan(ex.value("staged")).all()
    expected = 1 / (1 + np.exp(-1.0))  # softmax([0, 1])[1], by hand
    np.testing.assert_allclose(ex.value("stable"), [[1 - expected, expected]], rtol=1e-14)


@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_equals_the_log_softmax_op(axis: int, rng) -> None:
    graph = library_graph(f"""\
        a: {{op: nn.log_softmax, inputs: [x], axis: {axis}}}
        b: {{op: LogSoftmax, inputs: [x], axis: {axis}}}
    """, x=[4, 3])
    same_forward_and_backward(graph, "a", "b", {"x": rng.normal(size=(4, 3)) * 10})


def test_dense_equals_the_dense_op(rng) -> None:
    graph = library_graph("""\
        a: {op: nn.dense, inputs: [x, w, b]}
        d: {op: Dense, inputs: [x, w, b]}
    """, x=[5, 4], w=[4, 3], b=[3])
    feeds = {"x": rng.normal(size=(5, 4)), "w": rng.normal(size=(4, 3)),
             "b": rng.normal(size=(3,))}
    same_forward_and_backward(graph, "a", "d", feeds)


def test_nll_equals_the_nll_op(rng) -> None:
    y = np.eye(3)[rng.integers(0, 3, size=5)]
    graph = library_graph("""\
        a: {op: nn.nll, inputs: [p, y]}
        b: {op: NLL, inputs: [p, y], reduction: sum}
    """, inputs="  y: {shape: [5, 3]}\n", p=[5, 3])
    same_forward_and_backward(graph, "a", "b", {"p": rng.uniform(0.1, 1, size=(5, 3)), "y": y})


@pytest.mark.parametrize(("function", "reduction"), [("cross_entropy", "sum"),
                                                      ("mean_cross_entropy", "mean")])
def test_cross_entropy_equals_nll_of_softmax(function: str, reduction: str, rng) -> None:
    y = np.eye(3)[rng.integers(0, 3, size=5)]
    graph = library_graph(f"""\
        a: {{op: nn.{function}, inputs: [z, y]}}
        p: {{op: Softmax, inputs: [z]}}
        b: {{op: NLL, inputs: [p, y], reduction: {reduction}}}
    """, inputs="  y: {shape: [5, 3]}\n", z=[5, 3])
    same_forward_and_backward(graph, "a", "b", {"z": rng.normal(size=(5, 3)) * 5, "y": y})


def test_mse_is_the_mean_of_squared_errors_and_its_gradient(rng) -> None:
    graph = library_graph("loss: {op: nn.mse, inputs: [p, t]}\n", p=[4, 3], t=[4, 3])
    ex = engine.Executor(graph)
    p, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ex.forward({"p": p, "t": t})
    assert float(ex.value("loss")) == pytest.approx(np.mean((p - t) ** 2), rel=1e-14)
    grads = ex.backward({"loss": np.array(1.0)})
    np.testing.assert_allclose(grads["p"], 2 * (p - t) / p.size, rtol=1e-13)  # by hand
    np.testing.assert_allclose(grads["t"], -2 * (p - t) / p.size, rtol=1e-13)


def test_mae_is_the_mean_of_absolute_errors_and_its_gradient(rng) -> None:
    graph = library_graph("loss: {op: nn.mae, inputs: [p, t]}\n", p=[4, 3], t=[4, 3])
    ex = engine.Executor(graph)
    p, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ex.forward({"p": p, "t": t})
    assert float(ex.value("loss")) == pytest.approx(np.mean(np.abs(p - t)), rel=1e-14)
    grads = ex.backward({"loss": np.array(1.0)})
    np.testing.assert_allclose(grads["p"], np.sign(p - t) / p.size, rtol=1e-14)  # by hand


def test_bce_with_logits_is_the_binary_cross_entropy_and_stays_finite(rng) -> None:
    graph = library_graph("loss: {op: nn.bce_with_logits, inputs: [z, y]}\n",
                          inputs="  y: {shape: [4, 3]}\n", z=[4, 3])
    ex = engine.Executor(graph)
    z, y = rng.normal(size=(4, 3)) * 3, rng.uniform(size=(4, 3))
    ex.forward({"z": z, "y": y})
    p = 1 / (1 + np.exp(-z))
    want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))  # the textbook formula
    assert float(ex.value("loss")) == pytest.approx(want, rel=1e-12)
    grads = ex.backward({"loss": np.array(1.0)})
    np.testing.assert_allclose(grads["z"], (p - y) / z.size, rtol=1e-12)  # by hand
    far = np.array([[-800.0, 800.0, 0.0]] * 4)  # sigmoid rounds to 0 and 1 here
    ex.forward({"z": far, "y": np.tile([1.0, 0.0, 1.0], (4, 1))})
    assert float(ex.value("loss")) == pytest.approx((800 + 800 + np.log(2)) / 3, rel=1e-14)


@pytest.mark.parametrize(("axis", "fused_axis", "affine"), [(-1, -1, [4]), ([1, 2], 1, [3, 4])])
def test_layer_norm_function_equals_the_layer_norm_op(axis, fused_axis, affine, rng) -> None:
    graph = library_graph(f"""\
        a: {{op: nn.layer_norm, inputs: [x, s, b], axis: {axis}, eps: 0.001}}
        f: {{op: LayerNorm, inputs: [x, s, b], axis: {fused_axis}, eps: 0.001}}
    """, x=[2, 3, 4], s=affine, b=affine)
    feeds = {"x": rng.normal(1.0, 2.0, size=(2, 3, 4)), "s": rng.normal(size=affine),
             "b": rng.normal(size=affine)}
    same_forward_and_backward(graph, "a", "f", feeds)


def test_embedding_picks_rows_and_adds_the_gradients_of_repeated_ids(rng) -> None:
    graph = library_graph("rows: {op: nn.embedding, inputs: [table, ids]}\n",
                          inputs="  ids: {shape: [2, 3], dtype: int64}\n", table=[5, 4])
    table, ids = rng.normal(size=(5, 4)), np.array([[0, 3, 3], [4, 3, 0]])
    ex = engine.Executor(graph)
    np.testing.assert_array_equal(ex.forward({"table": table, "ids": ids})["rows"], table[ids])
    upstream = rng.normal(size=(2, 3, 4))
    want = np.zeros_like(table)
    np.add.at(want, ids, upstream)
    np.testing.assert_allclose(ex.backward({"rows": upstream})["table"], want, rtol=1e-14)


@pytest.mark.parametrize("seed", [0, 1])
def test_staged_softmax_function_equals_the_lessons_code(seed: int) -> None:
    """The lesson's numbers, intermediate gradients included, under the call's names."""
    x, y = lesson_data(seed)
    graph = library_graph("""\
        probs: {op: nn.staged_softmax, inputs: [x]}
        loss: {op: NLL, inputs: [probs, y], reduction: sum}
    """, inputs="  y: {shape: [5, 3]}\n", x=[5, 3])
    ex = engine.Executor(graph)
    ex.forward({"x": x, "y": y})
    lesson = lesson_backward(x, y)
    np.testing.assert_allclose(ex.value("probs"), lesson["softmax"], rtol=1e-14)
    grads = ex.backward({"loss": np.array(1.0)},
                        keep=["probs", "probs/raised", "probs/inverted", "probs/summed"])
    np.testing.assert_allclose(grads["probs"], lesson["loss_grad"], rtol=1e-14)
    np.testing.assert_allclose(grads["probs/raised"], lesson["raised"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["probs/inverted"], lesson["inverted"], rtol=1e-12)
    np.testing.assert_allclose(grads["probs/summed"], lesson["summed"], rtol=1e-12)
    np.testing.assert_allclose(grads["x"], lesson["x"], rtol=1e-12, atol=1e-15)


def test_calls_expand_to_primitive_nodes_with_hierarchical_names(build) -> None:
    graph = build("""\
        name: t
        inputs:
          x: {shape: [2, 3]}
        functions:
          softmax:
            inputs: [z]
            nodes:
              raised: {op: Exp, inputs: [z]}
              summed: {op: Sum, inputs: [raised], axis: -1, keepdims: true}
              out: {op: Div, inputs: [raised, summed]}
            outputs: [out]
        nodes:
          probs: {op: softmax, inputs: [x]}
        outputs: [probs, probs/summed]
    """)
    assert list(graph.nodes) == ["probs/raised", "probs/summed", "probs"]
    assert {n.op.name for n in graph.nodes.values()} == {"Exp", "Sum", "Div"}
    assert graph.nodes["probs/raised"].inputs == ("x",)
    assert graph.values["probs/summed"].shape == (2, 1)
    out = engine.Executor(graph).forward({"x": np.ones((2, 3))})
    np.testing.assert_allclose(out["probs"], np.full((2, 3), 1 / 3))
    np.testing.assert_allclose(out["probs/summed"], np.full((2, 1), 3 * np.e))


ATTRS = """\
    name: t
    inputs:
      x: {shape: [2, 3]}
    functions:
      scaled_sum:
        inputs: [v]
        attrs: {axis: -1, keepdims: false}
        nodes:
          total: {op: Sum, inputs: [v], axis: $axis, keepdims: $keepdims}
        outputs: [total]
      outer:
        inputs: [v]
        attrs: {axis: 0}
        nodes:
          inner: {op: scaled_sum, inputs: [v], axis: $axis, keepdims: true}
        outputs: [inner]
    nodes:
"""


@pytest.mark.parametrize(("call", "expected"), [
    ("{op: scaled_sum, inputs: [x]}", [6.0, 15.0]),
    ("{op: scaled_sum, inputs: [x], axis: 0}", [5.0, 7.0, 9.0]),
    ("{op: scaled_sum, inputs: [x], axis: null, keepdims: true}", [[21.0]]),
    ("{op: outer, inputs: [x]}", [[5.0, 7.0, 9.0]]),
    ("{op: outer, inputs: [x], axis: 1}", [[6.0], [15.0]]),
])
def test_attribute_defaults_overrides_and_passing_down(build, call: str,
                                                       expected: list) -> None:
    graph = build(ATTRS + f"      s: {call}\n    outputs: [s]\n")
    out = engine.Executor(graph).forward({"x": np.arange(1.0, 7.0).reshape(2, 3)})
    np.testing.assert_array_equal(out["s"], expected)


def test_nested_functions_and_several_outputs(build) -> None:
    graph = build("""\
        name: t
        inputs:
          x: {shape: [4]}
        functions:
          square:
            inputs: [v]
            nodes:
              sq: {op: Mul, inputs: [v, v]}
            outputs: [sq]
          moments:
            inputs: [v]
            nodes:
              mean: {op: Mean, inputs: [v], axis: null}
              centered: {op: Sub, inputs: [v, mean]}
              squares: {op: square, inputs: [centered]}
              variance: {op: Mean, inputs: [squares], axis: null}
            outputs: [mean, variance]
          spread:
            inputs: [v]
            nodes:
              m: {op: moments, inputs: [v]}
              ratio: {op: Div, inputs: [m.variance, m.mean]}
            outputs: [ratio]
        nodes:
          m: {op: moments, inputs: [x]}
          s: {op: spread, inputs: [x]}
          total: {op: Add, inputs: [m.mean, m.variance]}
        outputs: [m.mean, m.variance, total, s]
        loss: total
    """)
    assert "m.mean" in graph.nodes and "m/squares" in graph.nodes
    assert "s/m.variance" in graph.nodes and "s/m/squares" in graph.nodes
    x = np.array([1.0, 2.0, 4.0, 9.0])
    ex = engine.Executor(graph)
    out = ex.forward({"x": x})
    assert out["m.mean"] == pytest.approx(4.0)
    assert out["m.variance"] == pytest.approx(np.var(x))
    assert out["s"] == pytest.approx(np.var(x) / 4.0)
    assert set(out) == {"m.mean", "m.variance", "total", "s"}


def test_a_number_passed_to_a_function_becomes_an_inline_constant(build) -> None:
    graph = build("""\
        name: t
        inputs:
          x: {shape: [3]}
        functions:
          scale:
            inputs: [v, factor]
            nodes:
              out: {op: Mul, inputs: [v, factor]}
            outputs: [out]
        nodes:
          y: {op: scale, inputs: [x, 2.5]}
        outputs: [y]
    """)
    out = engine.Executor(graph).forward({"x": np.array([1.0, 2.0, 4.0])})
    np.testing.assert_array_equal(out["y"], [2.5, 5.0, 10.0])


def test_where_names_the_function_file_and_the_call_site() -> None:
    graph = engine.load(GRAPHS / "mlp_functions.yaml")
    where = graph.where("h1/linear/product")
    nn = str(GRAPHS / "lib" / "nn.yaml")
    assert where.startswith(f"{nn}:")
    assert "'nn.dense' called by node 'h1/linear'" in where
    assert f"'layer' called by node 'h1' at {GRAPHS / 'mlp_functions.yaml'}:" in where
    assert graph.where("w1").startswith(f"{GRAPHS / 'mlp_functions.yaml'}:")


def test_example_with_functions_equals_the_fused_example() -> None:
    """graphs/mlp_functions.yaml is graphs/dense.yaml written with the library."""
    runs = []
    for name in ("mlp_functions.yaml", "dense.yaml"):
        ex = engine.Executor(engine.load(GRAPHS / name))
        out = ex.forward()
        runs.append((out["probs"], ex.loss, ex.backward()))
    (p1, l1, g1), (p2, l2, g2) = runs
    np.testing.assert_allclose(p1, p2, rtol=1e-13)
    assert l1 == pytest.approx(l2, rel=1e-13)
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-10, atol=1e-14)


def test_json_schema_still_generates_and_keeps_op_nodes_apart() -> None:
    from engine.spec.models import OpSpec

    schema = OpSpec.model_json_schema()
    call = schema["$defs"]["CallNode"]["properties"]["op"]
    # an op node never also matches the call model: calls are lower_case, ops CamelCase
    assert all(re.match(call["pattern"], op) is None for op in engine.REGISTRY)
    assert re.match(call["pattern"], "nn.softmax") and re.match(call["pattern"], "layer")
    assert "functions" in schema["properties"] and "imports" in schema["properties"]


def test_attribute_inside_a_list(build) -> None:
    graph = build("""\
        name: t
        inputs:
          x: {shape: [2, 3]}
        functions:
          rows:
            inputs: [v]
            attrs: {count: 1}
            nodes:
              r: {op: Reshape, inputs: [v], shape: [$count, -1]}
            outputs: [r]
        nodes:
          a: {op: rows, inputs: [x]}
          b: {op: rows, inputs: [x], count: 3}
        outputs: [a, b]
    """)
    out = engine.Executor(graph).forward({"x": np.arange(6.0).reshape(2, 3)})
    assert out["a"].shape == (1, 6) and out["b"].shape == (3, 2)
    assert graph.spec.functions["rows"].nodes["r"].model_extra == {"shape": ["$count", -1]}


def test_readme_example_runs_and_its_calls_equal_the_softmax_op() -> None:
    readme = (GRAPHS.parent / "README.md").read_text(encoding="utf-8")
    text = next(block for block in readme.split("```yaml\n")[1:]
                if block.startswith("name: classifier")).split("```")[0]
    graph = engine.loads(text, file="classifier.yaml", base_dir=GRAPHS)
    ex = engine.Executor(graph)
    out = ex.forward()
    x = np.asarray(ex.value("x"))
    np.testing.assert_allclose(out["probs"], np.exp(x) / np.exp(x).sum(-1, keepdims=True))
    np.testing.assert_allclose(ex.value("cols"), np.exp(x) / np.exp(x).sum(0, keepdims=True))
    np.testing.assert_allclose(out["probs/summed"], np.exp(x).sum(-1, keepdims=True))
    y = np.asarray(ex.value("y"))
    assert ex.loss == pytest.approx(-np.sum(y * np.log(out["probs"])), rel=1e-12)


def test_explain_puts_names_from_calls_in_parentheses(build) -> None:
    from engine.graph.explain import as_text, derivative_chains

    graph = build("""\
        name: t
        inputs:
          x: {shape: [3], requires_grad: true}
        functions:
          square:
            inputs: [v]
            nodes:
              copy: {op: Neg, inputs: [v]}
              sq: {op: Mul, inputs: [copy, copy]}
            outputs: [sq]
        nodes:
          s: {op: square, inputs: [x]}
    """)
    text = as_text(derivative_chains(graph, "x", "s"))
    assert "(∂s/∂(s/copy) as a) · ∂(s/copy)/∂x" in text and "path 1: x -> s/copy -> s" in text


def test_training_the_example_with_functions_equals_training_the_plain_one() -> None:
    """graphs/mlp_functions.yaml trains as graphs/mlp.yaml does: the same math, other nodes."""
    from engine.train.data import load_dataset
    from engine.train.loop import NoProgress, Trainer

    histories = []
    for name in ("mlp_functions.yaml", "mlp.yaml"):
        graph = engine.load(GRAPHS / name)
        config = graph.spec.train.model_copy(update={"epochs": 3})
        dataset = load_dataset(graph, config, graph.base_dir / config.data,
                               seed=graph.spec.seed)
        histories.append(Trainer(graph, config, dataset, seed=graph.spec.seed)
                         .run(NoProgress()).history)
    functions, plain = histories
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        np.testing.assert_allclose(functions[key], plain[key], rtol=1e-10, err_msg=key)


def test_an_attribute_stands_for_a_number_among_the_inputs(build) -> None:
    graph = build("""
        name: t
        functions:
          affine:
            inputs: [v]
            attrs: {scale: 2.0, shift: 1}
            nodes:
              scaled: {op: Mul, inputs: [v, $scale]}
              moved:  {op: Add, inputs: [scaled, $shift]}
            outputs: [moved]
        inputs:
          x: {shape: [3], init: {value: [1.0, 2.0, 3.0]}}
        nodes:
          default: {op: affine, inputs: [x]}
          given:   {op: affine, inputs: [x], scale: -1, shift: 0.5}
        outputs: [default, given]
    """)
    out = engine.Executor(graph).forward()
    np.testing.assert_array_equal(out["default"], [3.0, 5.0, 7.0])
    np.testing.assert_array_equal(out["given"], [-0.5, -1.5, -2.5])


def attention_reference(x, wq, wk, wv, wo, heads: int, causal: bool = False) -> np.ndarray:
    """Multi-head self-attention written directly in NumPy, head by head."""
    length = x.shape[1]
    width = wq.shape[1] // heads
    outputs = []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        q, k, v = x @ wq[:, part], x @ wk[:, part], x @ wv[:, part]
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(width)
        if causal:
            scores = np.where(np.triu(np.ones((length, length)), 1) > 0, -1e9, scores)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        outputs.append(weights @ v)
    return np.concatenate(outputs, axis=-1) @ wo


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_equals_numpy_forward_and_by_finite_differences(heads: int, rng) -> None:
    from engine.testing.gradcheck import numeric_vjp

    graph = library_graph(f"att: {{op: nn.attention, inputs: [x, wq, wk, wv, wo], "
                          f"heads: {heads}, head_dim: {4 // heads}}}\n",
                          x=[2, 3, 4], wq=[4, 4], wk=[4, 4], wv=[4, 4], wo=[4, 4])
    feeds = {name: rng.normal(size=(2, 3, 4) if name == "x" else (4, 4))
             for name in ("x", "wq", "wk", "wv", "wo")}
    ex = engine.Executor(graph)
    got = ex.forward(feeds)["att"]
    np.testing.assert_allclose(got, attention_reference(**feeds, heads=heads), rtol=1e-12)
    upstream = rng.normal(size=got.shape)
    grads = ex.backward({"att": upstream})
    names = list(feeds)
    for index, name in enumerate(names):
        numeric = numeric_vjp(lambda *a: attention_reference(*a, heads=heads),
                              [feeds[n] for n in names], index, upstream)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_attention_refuses_head_sizes_that_do_not_fit(build) -> None:
    with pytest.raises(engine.SpecError, match="cannot reshape"):
        library_graph("att: {op: nn.attention, inputs: [x, w, w, w, w], heads: 2, "
                      "head_dim: 3}\n", x=[2, 3, 4], w=[4, 4])


@pytest.mark.parametrize("heads", [1, 2])
def test_causal_attention_masks_later_positions(heads: int, rng) -> None:
    from engine.testing.gradcheck import numeric_vjp

    graph = library_graph(f"att: {{op: nn.causal_attention, inputs: [x, wq, wk, wv, wo, pos], "
                          f"heads: {heads}, head_dim: {4 // heads}}}\n",
                          inputs="  pos: {shape: [3], dtype: int64}\n",
                          x=[2, 3, 4], wq=[4, 4], wk=[4, 4], wv=[4, 4], wo=[4, 4])
    feeds = {name: rng.normal(size=(2, 3, 4) if name == "x" else (4, 4))
             for name in ("x", "wq", "wk", "wv", "wo")}
    ex = engine.Executor(graph)
    got = ex.forward({**feeds, "pos": np.arange(3)})["att"]
    want = attention_reference(**feeds, heads=heads, causal=True)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the first position sees only itself: changing later tokens leaves its output alone
    later = {**feeds, "x": feeds["x"].copy()}
    later["x"][:, 1:] += 1.0
    np.testing.assert_allclose(ex.forward({**later, "pos": np.arange(3)})["att"][:, 0],
                               got[:, 0], rtol=1e-13)
    ex.forward({**feeds, "pos": np.arange(3)})
    upstream = rng.normal(size=got.shape)
    grads = ex.backward({"att": upstream})
    names = list(feeds)
    for index, name in enumerate(names):
        numeric = numeric_vjp(lambda *a: attention_reference(*a, heads=heads, causal=True),
                              [feeds[n] for n in names], index, upstream)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
