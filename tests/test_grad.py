"""``engine.grad``: the backward pass as an ordinary graph, against the executor's backward.

The executor's loop and the gradient graph come from the same vjp rules, so the
executor is an independent check of the transformation (tracing, naming, the
explicit seed, sums and reductions), not of the rules; the rules themselves are
checked against finite differences in test_ops.py.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GRAPHS, SQUARE_SPEC
from test_optimized_path import random_spec

import engine
from engine.cli.main import main
from engine.errors import EngineError, UsageError
from engine.ops import REGISTRY
from engine.transform.grad import grad, grad_spec

EXAMPLES = sorted(p for p in GRAPHS.glob("*.yaml"))


def assert_grad_graph_matches_backward(graph: engine.Graph,
                                       feeds: dict[str, np.ndarray] | None = None) -> None:
    ex = engine.Executor(graph)
    ex.forward(feeds)
    want = ex.backward()
    gradient = grad(graph)
    got = engine.Executor(gradient).forward(feeds)
    assert list(got)[-len(gradient.gradients):] == list(gradient.gradients.values())
    assert set(gradient.gradients) <= set(want)
    for tensor, array in want.items():
        if tensor not in gradient.gradients:  # the loss does not reach it: zero
            assert not np.any(array), tensor
            continue
        np.testing.assert_allclose(got[gradient.gradients[tensor]], array, rtol=1e-12,
                                   atol=1e-12, err_msg=tensor)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], ex.forward(feeds)[name], rtol=1e-12, atol=1e-12)


def skip_without_graph_derivative(graph: engine.Graph) -> None:
    """Graphs holding an op whose derivative is not a graph yet (test_ops lists them)."""
    from test_ops import NO_GRAPH_DERIVATIVE

    missing = sorted({n.op.name for n in graph.nodes.values() if not n.op.stochastic}
                     & set(NO_GRAPH_DERIVATIVE))
    if missing:
        pytest.skip(f"{', '.join(missing)}: no derivative as a graph yet")


@pytest.mark.filterwarnings("ignore::engine.errors.DataWarning")  # random soft targets: meant
@pytest.mark.parametrize("path", [p for p in EXAMPLES if engine.load(p).loss is not None],
                         ids=lambda p: p.name)
def test_every_example_graph_gives_the_executors_gradients(path: Path) -> None:
    graph = engine.load(path)
    skip_without_graph_derivative(graph)
    assert_grad_graph_matches_backward(graph)
    defaults = engine.Executor(graph)
    defaults.forward()
    rng = np.random.default_rng(5)
    feeds = {name: rng.uniform(0.1, 1.0, size=defaults.value(name).shape)
             for name, value in graph.values.items()
             if value.kind == "input" and value.dtype != "int64"}
    assert_grad_graph_matches_backward(graph, feeds)


@pytest.mark.parametrize("seed", range(100))
def test_random_graph_gives_the_executors_gradients(seed: int) -> None:
    assert_grad_graph_matches_backward(engine.loads(random_spec(seed), file=f"r{seed}.yaml"))


def test_a_named_batch_stays_named_and_any_batch_runs() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    gradient = grad(graph)
    assert gradient.values["d_w1"].shape == (13, 10)
    assert "batch" in gradient.values["d_probs"].shape  # not bound to the default 10
    assert any(node.op.name == "Count" for node in gradient.nodes.values())  # mean over batch
    rng = np.random.default_rng(0)
    for rows in (1, 7):
        feeds = {"x": rng.normal(size=(rows, 13)), "y": np.eye(3)[rng.integers(0, 3, rows)]}
        assert_grad_graph_matches_backward(graph, feeds)


def test_the_lessons_backward_is_visible_node_for_node() -> None:
    """softmax.yaml's gradient graph holds the lesson's steps (backprop_lesson.md)."""
    spec = grad_spec(engine.load(GRAPHS / "softmax.yaml")).spec
    nodes = spec["nodes"]
    assert spec["constants"]["d_loss"] == {"value": 1.0, "dtype": "float64"}  # the seed
    # loss_grad = -y / softmax (the lesson's nll_grad), times the seed; softmax read only
    # where y is not 0 (1 elsewhere: NLL's 0 log 0 = 0, whose gradient is 0, not 0/0)
    d_softmax = nodes["d_softmax"]
    assert d_softmax["op"] == "Mul"
    div, neg = (nodes[name] for name in d_softmax["inputs"])
    assert div["op"] == "Div" and div["inputs"][0] == "y"
    read = nodes[div["inputs"][1]]
    assert read["op"] == "Where" and read["inputs"][2] == "softmax"
    zero, one = (nodes[name] for name in read["inputs"][:2])
    assert zero == {"op": "Equal", "inputs": ["y", 0.0]}
    assert one == {"op": "BroadcastTo", "inputs": [1.0, "softmax"]}
    assert (neg["op"], neg["inputs"]) == ("Neg", ["d_loss"])
    # pow_grad = sum(loss_grad * raised, axis=-1).reshape(-1, 1): a Sum with kept axes
    d_inverted = nodes["d_inverted"]
    assert d_inverted["op"] == "Sum" and d_inverted["keepdims"] is True
    assert nodes[d_inverted["inputs"][0]] == {"op": "Mul", "inputs": ["d_softmax", "raised"]}
    # summed_grad = (-1 * summed ** -2) * pow_grad, spread over raised's shape
    d_summed = nodes["d_summed"]
    assert "inverted_grad1" in d_summed["inputs"] and nodes["inverted_grad1"]["inputs"] == \
        ["d_inverted", "minus_one"]
    # raised's two gradients meet in an Add; x_grad = raised_grad * exp(x)
    d_raised = nodes["d_raised"]
    assert d_raised["op"] == "Add"
    assert {nodes[i]["op"] for i in d_raised["inputs"]} == {"Mul", "BroadcastTo"}
    assert nodes["d_x"] == {"op": "Mul", "inputs": ["d_raised", "raised"]}
    assert spec["outputs"] == ["softmax", "loss", "d_x"]
    assert "loss" not in spec


def test_cli_grad_writes_a_spec_that_runs_alone(tmp_path: Path, capsys) -> None:
    out = tmp_path / "g.yaml"
    assert main(["grad", str(GRAPHS / "softmax.yaml"), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=" + str(
        Path(os.path.relpath(GRAPHS.parent / "schemas" / "graph.schema.json", tmp_path)))
    assert text.splitlines()[1].startswith("# Written by engine grad")
    assert "softmax.yaml" in text.splitlines()[2]
    assert "loss:" not in [line.split(" ")[0] for line in text.splitlines()]
    capsys.readouterr()
    assert main(["run", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert main(["run", str(GRAPHS / "softmax.yaml"), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(written["outputs"]["d_x"], original["grads"]["x"], rtol=1e-12,
                               atol=1e-12)
    assert main(["check", str(out)]) == 0
    assert main(["graph", str(out), "-o", str(tmp_path / "g.dot")]) == 0


def test_functions_are_inlined_and_init_files_still_found(tmp_path: Path) -> None:
    out_dir = tmp_path / "elsewhere"
    out_dir.mkdir()
    np.save(tmp_path / "w.npy", np.arange(6.0).reshape(2, 3) / 10)
    spec = tmp_path / "f.yaml"
    spec.write_text(textwrap.dedent("""
        name: f
        functions:
          act:
            inputs: [a]
            nodes: {t: {op: Tanh, inputs: [a]}}
            outputs: [t]
        inputs: {x: {shape: [4, 2], init: ones}}
        parameters: {w: {shape: [2, 3], init: {file: w.npy}}}
        nodes:
          z: {op: MatMul, inputs: [x, w]}
          h: {op: act, inputs: [z]}
          loss: {op: Sum, inputs: [h]}
        loss: loss
    """))
    assert main(["grad", str(spec), "-o", str(out_dir / "g.yaml")]) == 0
    text = (out_dir / "g.yaml").read_text()
    assert f"run it with --import-path {tmp_path}" in text  # w.npy is not below elsewhere/
    written = engine.load(out_dir / "g.yaml", import_paths=[tmp_path])
    assert not written.spec.functions and not written.spec.imports
    got = engine.Executor(written).forward()["d_w"]
    ex = engine.Executor(engine.load(spec))
    ex.forward()
    np.testing.assert_allclose(got, ex.backward()["w"], rtol=1e-12)


def test_gradients_of_gradients_are_hessian_vector_products() -> None:
    """HVPs of the lesson's MLP with Tanh: the gradient graph differentiated again against
    central differences of the executor's gradients along v."""
    from engine.transform.hvp import hvp_spec

    graph = _tanh_mlp()
    made = hvp_spec(graph)
    dot = engine.loads(made.text, file="hvp.yaml", base_dir=GRAPHS)
    twice = grad(dot, list(made.vectors))
    ex_dot = engine.Executor(twice)
    out = ex_dot.forward()
    vectors = {t: np.asarray(ex_dot.value(v)) for t, v in made.vectors.items()}
    ex = engine.Executor(graph)
    base = {k: np.array(v) for k, v in ex.parameters.items()}
    eps = 1e-5

    def gradient(sign: float) -> dict[str, np.ndarray]:
        ex.parameters.update({k: base[k] + sign * eps * vectors[k] for k in base})
        ex.forward()
        return ex.backward()

    plus, minus = gradient(1.0), gradient(-1.0)
    for tensor in made.vectors:
        numeric = (plus[tensor] - minus[tensor]) / (2 * eps)
        assert np.max(np.abs(numeric)) > 1e-3  # not trivially zero (Tanh, not Relu)
        np.testing.assert_allclose(out[twice.gradients[tensor]], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, about torch.jit
def test_hessian_vector_products_match_torch_func() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed: peer check skipped")
    from torch.func import grad as tgrad
    from torch.func import jvp

    from engine.transform.hvp import hvp_spec

    graph = _tanh_mlp()
    made = hvp_spec(graph)
    twice = grad(engine.loads(made.text, file="hvp.yaml", base_dir=GRAPHS), list(made.vectors))
    ex = engine.Executor(twice)
    out = ex.forward()
    names = list(made.vectors)
    params = {n: torch.tensor(np.asarray(ex.value(n))) for n in names}
    vectors = {n: torch.tensor(np.asarray(ex.value(made.vectors[n]))) for n in names}
    x, y = (torch.tensor(np.asarray(ex.value(n))) for n in ("x", "y"))

    def loss(p: dict) -> torch.Tensor:
        h = torch.tanh(x @ p["w1"] + p["b1"])
        probs = torch.softmax(h @ p["w2"] + p["b2"], dim=-1)
        return -(y * torch.log(probs)).sum() / x.shape[0]

    _, hv = jvp(tgrad(loss), (params,), (vectors,))
    for name in names:
        np.testing.assert_allclose(out[twice.gradients[name]], hv[name].numpy(), rtol=1e-8,
                                   atol=1e-10, err_msg=name)


def _tanh_mlp() -> engine.Graph:
    text = (GRAPHS / "mlp.yaml").read_text().replace("op: Relu", "op: Tanh")
    return engine.loads(text, file="mlp_tanh.yaml", base_dir=GRAPHS)


def test_shipped_hvp_example_is_what_engine_grad_writes(tmp_path: Path) -> None:
    out = tmp_path / "hvp.yaml"
    assert main(["grad", str(GRAPHS / "softmax.yaml"), "--hvp", "-o", str(out)]) == 0
    strip = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    shipped = [line for line in (GRAPHS / "hvp.yaml").read_text().splitlines()
               if not line.startswith("#")]
    assert strip == shipped, "graphs/hvp.yaml is stale: regenerate it (see its header)"


# -- names ---------------------------------------------------------------------------------

def test_a_taken_gradient_name_gets_a_unique_variant(build) -> None:
    graph = build("""
        name: taken
        inputs: {x: {shape: [3], requires_grad: true, init: ones}}
        nodes:
          d_x: {op: Exp, inputs: [x]}
          loss: {op: Sum, inputs: [d_x]}
        outputs: [d_x]
        loss: loss
    """)
    gradient = grad(graph)
    assert gradient.gradients == {"x": "d_x_2"}
    assert gradient.outputs == ["d_x", "d_x_2"]
    np.testing.assert_allclose(engine.Executor(gradient).forward()["d_x_2"], np.exp(np.ones(3)))


def test_gradient_outputs_come_last_in_wrt_order(build) -> None:
    graph = build("""
        name: order
        inputs: {x: {shape: [3], requires_grad: true, init: ones}}
        parameters: {w: {shape: [3], init: ones}}
        nodes:
          s: {op: Add, inputs: [x, w]}
          loss: {op: Sum, inputs: [s]}
        outputs: [s]
        loss: loss
    """)
    gradient = grad(graph, ["w", "x"])
    assert gradient.outputs == ["s", "d_w", "d_x"]
    # Add hands the same gradient to both: one of them is an Identity of the other
    assert {gradient.nodes["d_w"].op.name, gradient.nodes["d_x"].op.name} >= {"Identity"}


def test_a_value_used_twice_by_one_node_sums_in_an_add(build) -> None:
    gradient = grad(build(SQUARE_SPEC))
    assert gradient.nodes["d_x"].op.name == "Add"
    np.testing.assert_allclose(engine.Executor(gradient).forward()["d_x"], 2 * np.ones(3))


# -- errors --------------------------------------------------------------------------------

def test_wrt_naming_no_input_or_parameter_says_what_it_is() -> None:
    graph = engine.load(GRAPHS / "softmax.yaml")
    with pytest.raises(UsageError, match=r"--wrt xx: names nothing.*did you mean 'x'"):
        grad(graph, ["xx"])
    with pytest.raises(UsageError, match=r"--wrt raised: is a node \(\S*softmax.yaml:\d+:\d+\)"):
        grad(graph, ["raised"])


def test_wrt_a_tensor_the_gradient_does_not_reach_is_refused() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    with pytest.raises(UsageError, match=r"--wrt y: the gradient of 'loss' does not reach input "
                                         r"'y' \(\S*mlp.yaml:\d+:\d+\)"):
        grad(graph, ["y"])


def test_no_loss_and_no_of_is_refused_and_of_names_a_node(build) -> None:
    graph = build("""
        name: noloss
        inputs: {x: {shape: [3], requires_grad: true, init: ones}}
        nodes:
          e: {op: Exp, inputs: [x]}
        outputs: [e]
    """)
    with pytest.raises(UsageError, match=r"declares no loss.*--of NODE \(its nodes: e\)"):
        grad(graph)
    with pytest.raises(UsageError, match=r"--of ee: names nothing.*did you mean 'e'"):
        grad(graph, of="ee")
    gradient = grad(graph, of="e")  # not a scalar: the sum of its elements
    np.testing.assert_allclose(engine.Executor(gradient).forward()["d_x"], np.exp(np.ones(3)))


def test_an_op_whose_derivative_is_no_graph_is_named_with_its_location(monkeypatch) -> None:
    """An op's vjp that calls NumPy directly cannot be traced, so neither a gradient graph
    nor a second derivative exists: the error names the node, the op and where it is."""
    import dataclasses

    tanh = REGISTRY["Tanh"]
    numpy_only = dataclasses.replace(
        tanh, vjp=lambda xp, attrs, g, out, inputs, needs: (g * (1 - np.square(out)),))
    monkeypatch.setitem(REGISTRY, "Tanh", numpy_only)
    graph = _tanh_mlp()
    with pytest.raises(EngineError, match=r"node 'a1' \(Tanh, mlp_tanh.yaml:\d+:\d+\): its "
                                          r"derivative cannot be written as a graph.*second "
                                          r"derivative.*NumPy function"):
        grad(graph)


@pytest.mark.parametrize(("argv", "message"), [
    (["--wrt", "wx"], "--wrt wx: names nothing"),
    (["--wrt", "y"], "does not reach input 'y'"),
    (["--of", "prob"], "did you mean 'probs'"),
])
def test_cli_grad_errors_are_messages_not_tracebacks(argv, message, capsys) -> None:
    assert main(["grad", str(GRAPHS / "mlp.yaml"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_written_yaml_is_plain_data(tmp_path: Path) -> None:
    text = grad_spec(engine.load(GRAPHS / "mlp_functions.yaml")).text
    data = yaml.safe_load(text)
    assert "/" not in " ".join(data["nodes"])  # call names became spec names
    assert "imports" not in data and "functions" not in data and "loss" not in data


def test_names_yaml_reads_as_booleans_or_null_survive_the_written_spec(tmp_path: Path) -> None:
    """A tensor or node named on, no, null or off is legal when quoted; the written spec
    must quote it too, or it reads back as true, false or null."""
    spec = tmp_path / "words.yaml"
    spec.write_text(textwrap.dedent("""
        name: words
        inputs: {'on': {shape: [3], requires_grad: true}}
        constants: {'yes': 2.0}
        nodes:
          'no': {op: Mul, inputs: ['on', 'yes']}
          'null': {op: Exp, inputs: ['no']}
          'off': {op: Sum, inputs: ['null']}
        outputs: ['null']
        loss: 'off'
    """))
    x = np.array([0.1, -0.2, 0.3])
    want = 2 * np.exp(2 * x)  # d/dx sum(exp(2x)), by hand
    made = grad(engine.load(spec))
    assert {"on", "no", "null", "off"} <= set(made.values)
    out = made.gradients["on"]
    np.testing.assert_allclose(engine.Executor(made).forward({"on": x})[out], want, rtol=1e-12)
    for verb in ("grad", "optimize"):
        written = tmp_path / f"{verb}.yaml"
        assert main([verb, str(spec), "-o", str(written)]) == 0
        again = engine.load(written)
        assert {"on", "null"} <= set(again.values), verb
        result = engine.Executor(again).forward({"on": x})
        np.testing.assert_allclose(result[out], want, rtol=1e-12)
