"""The default path (``Executor(graph)``: the graph after the optimization passes) against
the plain path (``optimize=False``: the graph as written), on every example graph and on
200 random graphs that together use every registered op, broadcasting, fan-out, float32,
and the patterns the passes rewrite (staged softmax, NLL of Softmax, MatMul + bias + Relu,
repeated and constant subexpressions, multiplications by 1).

Outputs, the loss and the gradients agree to 1e-12 relative in float64 and 1e-5 in
float32; the fusions change rounding only (the overflow cases, where they change more,
are tested in test_fuse.py against stable NumPy formulas).  The plain path is the
reference: the ops' plain rules on the graph as written, every value checked against
what the graph inferred.  The random graphs are built once, at module level, from small
shapes, so that the 200 add seconds, not minutes.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.ops import REGISTRY

TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-2}
OPS = sorted(REGISTRY)
COUNT = 200


def _flow(value: Any) -> str:
    """One YAML flow line: JSON is YAML, and much faster to write than yaml.safe_dump."""
    return json.dumps(value)


class RandomGraph:
    """A random spec text and its feeds: three registry ops, each on one of its own samples
    (so every input is in the op's domain), one fusion pattern, fan-out into the loss."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.dtype = "float32" if seed % 3 == 0 else "float64"
        self.inputs: dict[str, str] = {}
        self.nodes: dict[str, str] = {}
        self.feeds: dict[str, np.ndarray] = {}
        self.terms: list[str] = []
        self.outputs: list[str] = []
        self.ops = [OPS[(3 * seed + k) % len(OPS)] for k in range(3)]
        for k, op in enumerate(self.ops):
            self.segment(k, op)
        [self.staged_cross_entropy, self.dense_relu, self.staged_softmax,
         self.constants][seed % 4](seed)
        self.text = self.write(seed)

    def input(self, array: np.ndarray, grad: bool) -> str:
        name = f"in{len(self.inputs)}"
        if array.dtype == bool:  # a bool tensor is made by a comparison of a fed float
            flag = self.input((~array).astype(np.float64), False)
            self.nodes[f"{name}_b"] = _flow({"op": "Less", "inputs": [flag, 0.5]})
            return f"{name}_b"
        integral = array.dtype.kind in "iu"  # a sample's integer dtype is part of its case
        dtype = array.dtype.name if integral else self.dtype
        self.feeds[name] = array.astype(dtype)
        self.inputs[name] = _flow({"shape": list(array.shape), "dtype": dtype,
                                   "requires_grad": grad and not integral})
        return name

    def segment(self, k: int, op_name: str) -> None:
        op = REGISTRY[op_name]
        samples = op.samples(np.random.default_rng(int(self.rng.integers(1 << 30))))
        sample = samples[int(self.rng.integers(len(samples)))]
        refs = [self.input(np.asarray(a), op.is_differentiable(i))
                for i, a in enumerate(sample.inputs)]
        name = f"o{k}"
        self.nodes[name] = _flow({"op": op_name, "inputs": refs, **sample.attrs})
        self.outputs.append(name)
        if self.rng.uniform() < 0.3:  # a second node computing the same: cse merges it
            self.nodes[f"{name}_again"] = self.nodes[name]
            self.outputs.append(f"{name}_again")
        arrays = [np.asarray(a) for a in sample.inputs]
        arrays = [a.astype(self.dtype) if a.dtype.kind == "f" else a for a in arrays]
        result = np.asarray(op.forward(np, op.attrs(**sample.attrs), *arrays))
        if result.dtype.kind == "f":
            self.term(name)

    def term(self, name: str) -> None:
        """``name`` read twice (fan-out) into a scalar term of the loss."""
        self.nodes[f"{name}_t"] = _flow({"op": "Tanh", "inputs": [name]})
        self.nodes[f"{name}_m"] = _flow({"op": "Mul", "inputs": [name, f"{name}_t"]})
        self.nodes[f"{name}_s"] = _flow({"op": "Sum", "inputs": [f"{name}_m"]})
        self.terms.append(f"{name}_s")

    # -- patterns the passes rewrite ---------------------------------------------------------

    def staged(self, x: str, divide: bool) -> str:
        self.nodes["raised"] = _flow({"op": "Exp", "inputs": [x]})
        self.nodes["summed"] = _flow({"op": "Sum", "inputs": ["raised"], "axis": -1,
                                      "keepdims": True})
        if divide:
            self.nodes["softmax"] = _flow({"op": "Div", "inputs": ["raised", "summed"]})
        else:
            self.nodes["inverted"] = _flow({"op": "Pow", "inputs": ["summed", -1]})
            self.nodes["softmax"] = _flow({"op": "Mul", "inputs": ["inverted", "raised"]})
        return "softmax"

    def staged_cross_entropy(self, seed: int) -> None:
        rows, classes = int(self.rng.integers(2, 6)), int(self.rng.integers(2, 5))
        x = self.input(self.rng.uniform(-3, 3, size=(rows, classes)), True)
        labels = self.rng.integers(0, classes, size=rows)
        target = self.input(labels if seed % 8 == 0 else np.eye(classes)[labels], False)
        probs = self.staged(x, divide=bool(self.rng.integers(2)))
        reduction = ["sum", "mean"][int(self.rng.integers(2))]
        self.nodes["nll"] = _flow({"op": "NLL", "inputs": [probs, target],
                                   "reduction": reduction})
        self.terms.append("nll")
        if self.rng.uniform() < 0.5:
            self.outputs.append(probs)  # kept: computed beside the fused loss

    def dense_relu(self, _seed: int) -> None:
        rows, inner, width = (int(n) for n in self.rng.integers(2, 5, size=3))
        x = self.input(self.rng.normal(size=(rows, inner)), True)
        w = self.input(self.rng.normal(size=(inner, width)), True)
        b = self.input(self.rng.normal(size=(width,)), True)
        self.nodes["product"] = _flow({"op": "MatMul", "inputs": [x, w]})
        self.nodes["biased"] = _flow({"op": "Add", "inputs": ["product", b]})
        self.nodes["hidden"] = _flow({"op": "Relu", "inputs": ["biased"]})
        self.nodes["same"] = _flow({"op": "Mul", "inputs": ["hidden", 1]})
        self.term("same")

    def staged_softmax(self, _seed: int) -> None:
        x = self.input(self.rng.uniform(-3, 3, size=(3, 4)), True)
        self.term(self.staged(x, divide=False))

    def constants(self, _seed: int) -> None:
        self.nodes["folded"] = _flow({"op": "Exp", "inputs": [0.5]})
        x = self.input(self.rng.uniform(-1, 1, size=(2, 3)), True)
        self.nodes["scaled"] = _flow({"op": "Mul", "inputs": [x, "folded"]})
        self.nodes["twice"] = _flow({"op": "Neg", "inputs": ["scaled"]})
        self.nodes["back"] = _flow({"op": "Neg", "inputs": ["twice"]})
        self.term("back")

    def write(self, seed: int) -> str:
        total = self.terms[0]
        for k, term in enumerate(self.terms[1:]):
            self.nodes[f"total{k}"] = _flow({"op": "Add", "inputs": [total, term]})
            total = f"total{k}"
        lines = [f"name: random{seed}", f"seed: {seed}", "inputs:"]
        lines += [f"  {name}: {decl}" for name, decl in self.inputs.items()]
        lines += ["nodes:"] + [f"  {name}: {entry}" for name, entry in self.nodes.items()]
        lines += [f"outputs: {_flow([*self.outputs, total])}", f"loss: {total}"]
        return "\n".join(lines) + "\n"


def _build() -> list[tuple[RandomGraph, engine.Graph]]:
    built = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random graph may well do what lint warns about
        for seed in range(COUNT):
            random = RandomGraph(seed)
            built.append((random, engine.loads(random.text, file=f"random{seed}.yaml")))
    return built


GRAPHS_BUILT = _build()


def assert_close(got: Any, want: Any, name: str, dtype: str = "") -> None:
    """Equal to the tolerance of ``dtype`` (default: the arrays' own)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, name
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=name)
        return
    tol = TOLERANCE[dtype or str(want.dtype)]
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 1e-3 * max(scale, 1.0),
                               err_msg=name)


def assert_paths_agree(graph: engine.Graph, feeds: dict[str, np.ndarray] | None) -> None:
    fast, plain = engine.Executor(graph), engine.Executor(graph, optimize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", engine.DataWarning)  # soft targets: meant
        got, want = fast.forward(feeds), plain.forward(feeds)
    assert list(got) == list(want)
    for name in want:
        assert_close(got[name], want[name], name)
    if graph.loss is None:
        return
    assert_close(fast.loss, plain.loss, "loss", graph.values[graph.loss].dtype)  # floats
    got, want = fast.backward(), plain.backward()
    assert list(got) == list(want)
    for name in want:
        assert_close(got[name], want[name], f"d {name}")


@pytest.mark.parametrize("index", range(COUNT), ids=lambda i: f"random{i}")
def test_random_graphs_give_the_plain_paths_numbers(index: int) -> None:
    random, graph = GRAPHS_BUILT[index]
    assert_paths_agree(graph, random.feeds)


def test_the_random_graphs_use_every_op_float32_and_each_rewrite() -> None:
    used = {op for random, _ in GRAPHS_BUILT for op in random.ops}
    assert used == set(REGISTRY)
    assert any(random.dtype == "float32" for random, _ in GRAPHS_BUILT)
    compiled = [engine.Executor(graph).compiled for _, graph in GRAPHS_BUILT[:8]]
    ops = {node.op.name for g in compiled for node in g.nodes.values()}
    assert {"Softmax", "CrossEntropy", "Dense"} <= ops
    assert any(node.op.name == "Dense" and node.attrs.activation == "relu"
               for g in compiled for node in g.nodes.values())


@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_graph_gives_the_plain_paths_numbers(path) -> None:
    assert_paths_agree(engine.load(path), None)


@pytest.mark.parametrize("index", range(0, COUNT, 7), ids=lambda i: f"random{i}")
def test_what_runs_is_what_check_inferred(index: int) -> None:
    """Every value of the rewritten graph is a value of the written one, with its dtype and
    shape; and running it on the plain path, which checks every value against the graph's
    inference, passes."""
    random, graph = GRAPHS_BUILT[index]
    compiled = engine.Executor(graph).compiled
    for name, value in compiled.values.items():
        if value.kind == "node":
            assert name in graph.values
            assert value.dtype == graph.values[name].dtype
            assert graph.dims.shape(graph.values[name].shape) == \
                compiled.dims.shape(value.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", engine.DataWarning)
        engine.Executor(compiled, optimize=False).forward(random.feeds)


# -- what a user can ask for on the default path -----------------------------------------------

def test_a_fused_intermediate_is_refused_by_value_and_kept_as_an_output() -> None:
    graph = engine.load(GRAPHS / "softmax.yaml")
    ex = engine.Executor(graph)
    ex.forward()
    with pytest.raises(engine.EngineError, match="'raised' is not computed on the optimized"):
        ex.value("raised")
    text = (GRAPHS / "softmax.yaml").read_text().replace("outputs: [softmax, loss]",
                                                         "outputs: [softmax, loss, raised]")
    kept = engine.loads(text, file="kept.yaml", base_dir=GRAPHS)
    fast, plain = engine.Executor(kept), engine.Executor(kept, optimize=False)
    got, want = fast.forward(), plain.forward()
    np.testing.assert_array_equal(got["raised"], want["raised"])  # computed as written
    assert fast.compiled.nodes["softmax"].op.name == "Softmax"  # and still fused


def test_gradients_of_intermediates_are_the_plain_paths() -> None:
    """keep= asks for gradients of nodes the fused graph does not have (raised) or reaches
    otherwise (softmax: the fused loss reads x, not softmax): the plain path answers, on the
    same feeds and parameters, bit for bit."""
    graph = engine.load(GRAPHS / "mlp.yaml")
    fast, plain = engine.Executor(graph), engine.Executor(graph, optimize=False)
    rng = np.random.default_rng(2)
    feeds = {"x": rng.normal(size=(6, 13)), "y": np.eye(3)[rng.integers(0, 3, 6)]}
    fast.parameters["w1"] = plain.parameters["w1"] = rng.normal(size=(13, 10))
    fast.forward(feeds), plain.forward(feeds)
    keep = ["z1", "a1", "probs"]
    got, want = fast.backward(keep=keep), plain.backward(keep=keep)
    assert got.keys() == want.keys() >= set(keep)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    start = {"z1": rng.normal(size=(6, 10))}  # z1 is fused into Dense a1
    got, want = fast.backward(start), plain.backward(start)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    start = {"probs": rng.normal(size=(6, 3))}  # computed by both: the fused plan answers
    got, want = fast.backward(start), plain.backward(start)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-15)
    assert fast.loss == pytest.approx(plain.loss, rel=1e-12)  # the fused forward's loss


def test_engine_run_reports_the_same_names_and_numbers(capsys) -> None:
    from engine.cli.main import main
    assert main(["run", str(GRAPHS / "mlp.yaml"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    ex = engine.Executor(engine.load(GRAPHS / "mlp.yaml"), optimize=False)
    want = ex.forward()
    grads = ex.backward()
    assert list(got["outputs"]) == list(want)
    for name in want:
        np.testing.assert_allclose(np.asarray(got["outputs"][name]), want[name], rtol=1e-12)
    for name in grads:
        np.testing.assert_allclose(np.asarray(got["grads"][name]), grads[name],
                                   rtol=1e-12, atol=1e-15)


def test_training_on_the_default_path_follows_the_plain_path() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    runs = [engine.Executor(graph), engine.Executor(graph, optimize=False)]
    rng = np.random.default_rng(4)
    feeds = {"x": rng.normal(size=(8, 13)), "y": np.eye(3)[rng.integers(0, 3, 8)]}
    for _ in range(20):  # plain SGD, written here
        for ex in runs:
            ex.forward(feeds)
            for name, g in ex.backward().items():
                if name in ex.parameters:
                    ex.parameters[name] = ex.parameters[name] - 0.1 * np.asarray(g)
    for name in runs[1].parameters:
        np.testing.assert_allclose(runs[0].parameters[name], runs[1].parameters[name],
                                   rtol=1e-9, atol=1e-12)
