"""``engine export``: ONNX models that onnxruntime runs to the engine's numbers.

onnxruntime is the independent side: a different implementation of every op, fed
the same arrays.  Agreement is measured as max |onnxruntime - engine| / max |engine|
per output: at most 1e-12 in float64 and 1e-5 in float32.  Every exported model also
passes onnx's checker with ``full_check`` (shape inference in strict mode).
"""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GRAPHS
from test_ops import CASES, _op_spec
from test_optimized_path import random_spec

import engine
from engine.cli.main import main
from engine.errors import SpecError
from engine.ops import OpDef, Sample
from engine.testing.gradcheck import analytic_vjp, sample_needs

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

from engine.onnx.common import MIN_OPSET, NEWEST_RUN_OPSET  # noqa: E402
from engine.onnx.export import export  # noqa: E402

EXAMPLES = sorted(GRAPHS.glob("*.yaml"))
#: float16 has 11 significant bits: a few units of its 2^-10 is all one can ask there.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-2}


def relative(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (0 when both are zero)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    error = float(np.max(np.abs(got - want))) if want.size else 0.0
    return error / scale if scale else error


def run_onnx(model: object, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs by name, computed by onnxruntime on the CPU."""
    session = ort.InferenceSession(model.SerializeToString(),  # type: ignore[attr-defined]
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(None, {k: v for k, v in feeds.items() if k in wanted}),
                    strict=True))


def engine_results(graph: engine.Graph, feeds: dict[str, np.ndarray] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(outputs and loss, gradients of every tensor that requires grad, the inputs fed)."""
    ex = engine.Executor(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", engine.DataWarning)  # random soft targets: meant
        outputs = dict(ex.forward(feeds))
        grads = ex.backward() if graph.loss is not None else {}
    if graph.loss is not None:
        outputs[graph.loss] = np.asarray(ex.loss, dtype=graph.values[graph.loss].dtype)
    inputs = {n: np.asarray(ex.value(n)) for n, v in graph.values.items() if v.kind == "input"}
    return outputs, dict(grads), inputs


def assert_onnx_matches(graph: engine.Graph, feeds: dict[str, np.ndarray] | None = None,
                        opset: int | None = None) -> None:
    """Forward outputs, loss and (where there is a loss) gradients agree within TOLERANCE."""
    outputs, grads, inputs = engine_results(graph, feeds)
    made = export(graph, opset=opset)
    got = run_onnx(made.model, inputs)
    assert list(got) == made.outputs == list(dict.fromkeys([*outputs]))
    for name, want in outputs.items():
        tol = TOLERANCE.get(str(np.asarray(want).dtype), 0)
        assert relative(got[name], want) <= tol, (name, relative(got[name], want))
    if graph.loss is None:
        return
    made = export(graph, opset=opset, with_gradients=True)
    got = run_onnx(made.model, inputs)
    assert made.gradients, "no gradient exported"
    for tensor, output in made.gradients.items():
        tol = TOLERANCE[str(grads[tensor].dtype)]
        assert relative(got[output], grads[tensor]) <= tol, (tensor, relative(got[output],
                                                                            grads[tensor]))
    for tensor, array in grads.items():  # the rest: the loss does not reach them
        if tensor not in made.gradients:
            assert not np.any(array), tensor


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_graph_runs_in_onnxruntime_with_the_engines_numbers(path: Path) -> None:
    assert_onnx_matches(engine.load(path))


@pytest.mark.parametrize("opset", sorted({MIN_OPSET, NEWEST_RUN_OPSET}))
def test_the_oldest_and_newest_opsets_run(opset: int) -> None:
    graph = engine.load(GRAPHS / "attention.yaml")
    assert_onnx_matches(graph, opset=opset)
    assert export(graph, opset=opset).model.opset_import[0].version == opset


def with_dtype(path: Path, dtype: str) -> engine.Graph:
    """The spec with every float64 tensor declared ``dtype``."""
    spec = yaml.safe_load(path.read_text())
    for section in ("inputs", "parameters"):
        for decl in spec.get(section, {}).values():
            if decl.get("dtype", "float64") == "float64":
                decl["dtype"] = dtype
    return engine.loads(yaml.safe_dump(spec), file=f"{path.stem}_{dtype}.yaml",
                        base_dir=path.parent)


@pytest.mark.parametrize(("name", "dtype"), [
    *((name, "float32") for name in ["mlp", "softmax", "digits", "regression"]),
    ("mlp", "float16"), ("softmax", "float16")])
def test_float32_and_float16_graphs_agree(name: str, dtype: str) -> None:
    graph = with_dtype(GRAPHS / f"{name}.yaml", dtype)
    assert graph.values[graph.loss].dtype == dtype
    assert_onnx_matches(graph)


@pytest.mark.parametrize("seed", range(20))
def test_random_graphs_agree(seed: int) -> None:
    assert_onnx_matches(engine.loads(random_spec(seed), file=f"r{seed}.yaml"))


def test_a_named_batch_is_a_symbolic_dimension_and_any_batch_runs() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    model = export(graph, with_gradients=True).model
    x = next(v for v in model.graph.input if v.name == "x")
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["batch", 13]
    assert {i.name for i in model.graph.initializer} >= {"w1", "b1", "w2", "b2"}
    rng = np.random.default_rng(0)
    for rows in (1, 7):
        feeds = {"x": rng.normal(size=(rows, 13)), "y": np.eye(3)[rng.integers(0, 3, rows)]}
        assert_onnx_matches(graph, feeds)


# -- every op of the registry ----------------------------------------------------------------

@pytest.mark.parametrize(("op", "sample"), CASES)
def test_every_op_exports_with_its_gradient_or_is_refused_with_its_location(
        op: OpDef, sample: Sample) -> None:
    """``s = Sum(op(inputs) * u)``: onnxruntime's op(inputs) against the op's NumPy forward,
    and its gradients against the op's vjp applied to u (test_ops checks that vjp against
    finite differences)."""
    check_op(op, sample)


#: Ops whose ONNX form changed between opset 17 and the default (axes as an input).
OPSET_SENSITIVE = {"Sum", "Mean", "Max", "Count", "SumTo", "LayerNorm", "NLL", "Softmax"}


@pytest.mark.parametrize(("op", "sample"), [c for c in CASES
                                            if c.values[0].name in OPSET_SENSITIVE])
def test_reductions_at_the_oldest_opset(op: OpDef, sample: Sample) -> None:
    """Opset 17 takes ReduceMean's and ReduceMax's axes as an attribute, later ones as an
    input."""
    check_op(op, sample, opset=MIN_OPSET)


def check_op(op: OpDef, sample: Sample, opset: int | None = None) -> None:
    attrs = op.attrs(**sample.attrs)
    out = np.asarray(op.forward(np, attrs, *sample.inputs))
    if out.size == 0 or any(np.size(x) == 0 for x in sample.inputs):
        return  # a spec cannot write an init without elements (test_ops returns here too)
    upstream = np.random.default_rng(3).normal(size=out.shape)
    text = _op_spec(op, sample, upstream).replace("outputs: [s]", "outputs: [out, s]")
    if out.dtype.kind != "f":  # no loss: the output alone
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(("  prod:", "  s:", "loss:")))
        text = text.replace("outputs: [out, s]", "outputs: [out]")
    graph = engine.loads(text, file="op.yaml")
    needs = sample_needs(op, sample) if out.dtype.kind == "f" else ()
    wrt = [f"a{i}" for i, need in enumerate(needs) if need]
    try:
        made = export(graph, opset=opset, with_gradients=bool(wrt), wrt=wrt or None)
    except SpecError as exc:
        # refused: located at the node, naming it and its op (Dropout in training, say)
        message = str(exc)
        assert message.startswith("op.yaml:") and f"node 'out' ({op.name})" in message, message
        assert op.name in REFUSED, message
        return
    assert op.name not in REFUSED or not _refused(op, sample)
    feeds = {f"a{i}": np.asarray(x).astype(graph.values[f"a{i}"].dtype)  # bool as declared
             for i, x in enumerate(sample.inputs)}
    feeds["u"] = upstream
    got = run_onnx(made.model, feeds)
    if out.dtype.kind == "f":
        assert relative(got["out"], out) <= 1e-12
    else:
        assert got["out"].dtype == out.dtype and np.array_equal(got["out"], out)
    if not made.gradients:
        return
    want = analytic_vjp(op, sample, upstream)
    for tensor, output in made.gradients.items():
        part = want[int(tensor[1:])]
        assert part is not None
        assert relative(got[output], part) <= 1e-12, (tensor, relative(got[output], part))


#: Ops refused for some attributes, and why.
REFUSED = {"Dropout": "training: true draws a random mask each step"}


def _refused(op: OpDef, sample: Sample) -> bool:
    return op.name == "Dropout" and bool(sample.attrs.get("training"))


def test_a_refused_op_is_located_and_every_one_is_listed(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "drop.yaml"
    spec.write_text(textwrap.dedent("""\
        name: drop
        inputs: {x: {shape: [2, 3], init: ones}}
        nodes:
          a: {op: Dropout, inputs: [x], training: true}
          b: {op: Dropout, inputs: [a], rate: 0.1, training: true}
        outputs: [b]
    """))
    out = tmp_path / "m.onnx"
    assert main(["export", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:4:3: nodes.a: node 'a' (Dropout) cannot be exported to ONNX: training: " \
           "true" in err
    assert f"{spec}:5:3: nodes.b: node 'b' (Dropout)" in err
    assert "Traceback" not in err and "2 errors found" in err
    assert not out.exists()


# -- the command line ------------------------------------------------------------------------

def test_cli_writes_a_model_that_passes_the_full_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mlp.onnx"
    assert main(["export", str(GRAPHS / "mlp.yaml"), "-o", str(out), "--with-gradients"]) == 0
    assert "opset" in capsys.readouterr().err
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["probs", "loss", "d_w1", "d_b1", "d_w2",
                                                    "d_b2"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["-o", "{tmp}/none/m.onnx"], 1, "folder '{tmp}/none' does not exist"),
    (["-o", "{tmp}/m.txt"], 2, "the file name must end in .onnx"),
    (["-o", "{tmp}/m.onnx", "--opset", "12"], 2, "--opset 12: engine export writes opsets 17"),
    (["-o", "{tmp}/m.onnx", "--opset", "99"], 2, "--opset 99: engine export writes opsets 17"),
    (["-o", "{tmp}/m.onnx", "--wrt", "w1"], 2, "--wrt says which gradients --with-gradients"),
    (["-o", "{tmp}/m.onnx", "--of", "z1"], 2, "--of says which gradients --with-gradients"),
    (["-o", "{tmp}/m.onnx", "--with-gradients", "--of", "q"], 2, "--of q: names nothing"),
    (["-o", "{tmp}/m.onnx", "--with-gradients", "--wrt", "w3"], 2, "--wrt w3: names nothing"),
])
def test_cli_errors_are_one_line_without_a_traceback(argv: list[str], code: int, message: str,
                                                    tmp_path: Path, capsys) -> None:
    args = ["export", str(GRAPHS / "mlp.yaml"), *(a.format(tmp=tmp_path) for a in argv)]
    assert main(args) == code
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_an_unwritable_folder_is_refused_before_any_work(capsys) -> None:
    """/proc refuses new files even to root (who may write into a chmod 500 folder), so the
    refusal is tested wherever the suite runs, CI's root included."""
    assert main(["export", str(GRAPHS / "mlp.yaml"), "-o", "/proc/m.onnx"]) == 1
    err = capsys.readouterr().err
    assert "cannot write in folder '/proc'" in err and "Traceback" not in err, err


def test_a_failed_export_keeps_the_old_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    spec = tmp_path / "drop.yaml"
    spec.write_text("name: d\ninputs: {x: {shape: [2], init: ones}}\n"
                    "nodes:\n  a: {op: Dropout, inputs: [x], training: true}\noutputs: [a]\n")
    assert main(["export", str(spec), "-o", str(out)]) == 1
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop.yaml", "m.onnx"]


def test_params_and_their_standardisation_go_into_the_model(tmp_path: Path, capsys) -> None:
    """A checkpoint's parameters become the initializers, and its input standardisation the
    model's first nodes: the model takes raw inputs, as engine run --params does."""
    graph = engine.load(GRAPHS / "mlp.yaml")
    rng = np.random.default_rng(1)
    params = {"w1": rng.normal(size=(13, 10)), "b1": rng.normal(size=(1, 10)),
              "w2": rng.normal(size=(10, 3)), "b2": rng.normal(size=(3,))}
    mean, std = rng.normal(size=13), rng.uniform(0.5, 2.0, size=13)
    checkpoint = tmp_path / "p.npz"
    np.savez(checkpoint, **{f"params/{k}": v for k, v in params.items()},
             **{"scale/x/mean": mean, "scale/x/std": std})
    out = tmp_path / "m.onnx"
    assert main(["export", str(GRAPHS / "mlp.yaml"), "--params", str(checkpoint),
                 "-o", str(out)]) == 0
    raw = {"x": rng.normal(size=(5, 13)) * 3 + 1, "y": np.eye(3)[rng.integers(0, 3, 5)]}
    got = run_onnx(onnx.load(str(out)), raw)
    ex = engine.Executor(graph)
    ex.parameters.update(params)
    want = ex.forward({"x": (raw["x"] - mean) / std, "y": raw["y"]})
    assert relative(got["probs"], want["probs"]) <= 1e-12
    assert relative(got["loss"], np.asarray(ex.loss)) <= 1e-12


def test_without_the_extra_the_verb_says_how_to_install_it(monkeypatch, tmp_path: Path,
                                                           capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    assert main(["export", str(GRAPHS / "mlp.yaml"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert 'engine export needs onnx, which is not installed: pip install -e ".[onnx]"' in err
    assert "Traceback" not in err
    assert main(["check", str(GRAPHS / "mlp.yaml")]) == 0  # the rest of the engine works


def test_gradients_of_a_node_and_the_order_of_outputs(tmp_path: Path) -> None:
    """--of differentiates a node (the sum of its elements) where the spec has no loss; the
    outputs come first, then the loss, then the gradients."""
    graph = engine.loads(textwrap.dedent("""\
        name: two
        inputs: {x: {shape: [batch, 3], init: ones}}
        parameters: {w: {shape: [3], init: {normal: {std: 1.0}}}}
        nodes:
          h: {op: Mul, inputs: [x, w]}
          t: {op: Tanh, inputs: [h]}
          s: {op: Sum, inputs: [t]}
        outputs: [t]
        loss: s
    """), file="two.yaml")
    made = export(graph, with_gradients=True)
    assert made.outputs == ["t", "s", "d_w"]
    x = np.random.default_rng(2).normal(size=(4, 3))
    got = run_onnx(made.model, {"x": x})
    w = engine.Executor(graph).parameters["w"]
    assert relative(got["d_w"], np.sum(x * (1 - np.tanh(x * w) ** 2), axis=0)) <= 1e-12
    of = export(graph, with_gradients=True, of="h", wrt=["x"])
    assert of.outputs == ["t", "s", "d_x"]
    assert relative(run_onnx(of.model, {"x": x})["d_x"], np.broadcast_to(w, x.shape)) <= 1e-12


def test_an_op_without_a_lowering_whose_forward_cannot_be_traced_is_located(
        monkeypatch, tmp_path: Path, capsys) -> None:
    """The fallback for ops without an ONNX counterpart traces their forward rule; a rule
    the symbolic namespace cannot follow is a located refusal naming the op and the node."""
    import dataclasses

    from engine.onnx import lowering
    from engine.ops import REGISTRY

    exp = REGISTRY["Exp"]
    monkeypatch.setitem(REGISTRY, "Exp", dataclasses.replace(
        exp, forward=lambda xp, attrs, x: xp.sort(x)))
    monkeypatch.delitem(lowering.LOWERINGS, "Exp")
    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\ninputs: {x: {shape: [3], init: ones}}\n"
                    "nodes:\n  y: {op: Exp, inputs: [x]}\noutputs: [y]\n")
    assert main(["export", str(spec), "-o", str(tmp_path / "e.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec}:4:3: nodes.y: node 'y' (Exp) cannot be exported to "
                          "ONNX: op Exp has no ONNX counterpart, and its forward rule cannot be "
                          "written as other ops: the array function xp.sort has no graph op"), err
    assert "Traceback" not in err and not (tmp_path / "e.onnx").exists()
