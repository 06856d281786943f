"""engine import: ONNX models as specs, checked against onnxruntime (an independent runtime).

Models are built here with onnx.helper (names the spec cannot hold, a YAML 1.1
boolean, ops that become several engine nodes) or exported by torch.onnx (a small MLP
and an attention block); every imported spec is run by the engine and compared with
onnxruntime on the same inputs.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.cli.main import main
from engine.io.atomic import write_together

_MISSING = 'the onnx extra is not installed: pip install -e ".[onnx]"'
onnx = pytest.importorskip("onnx", reason=_MISSING)
ort = pytest.importorskip("onnxruntime", reason=_MISSING)
from onnx import TensorProto  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402


def _model(nodes, inputs, outputs, initializers=(), opset=17, name="model"):
    graph = oh.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _mlp(rng: np.random.Generator):
    """Names a spec cannot hold (dots, a leading digit), a collision (a.b and a_b), a name
    YAML 1.1 reads as true (on), Gemm with transB and alpha, a Constant, a static Reshape."""
    f32 = np.float32
    inits = [nh.from_array(rng.normal(size=(4, 5)).astype(f32), "layer1.weight"),
             nh.from_array(rng.normal(size=(5,)).astype(f32), "layer1.bias"),
             nh.from_array(rng.normal(size=(3, 5)).astype(f32), "layer2.weight"),
             nh.from_array(rng.normal(size=(3,)).astype(f32), "on"),
             nh.from_array(np.array([-1, 3], np.int64), "0shape")]
    nodes = [oh.make_node("Gemm", ["x", "layer1.weight", "layer1.bias"], ["h.1"], name="fc1"),
             oh.make_node("Relu", ["h.1"], ["h_1"], name="relu"),
             oh.make_node("Gemm", ["h_1", "layer2.weight", "on"], ["logits"], transB=1,
                          alpha=0.5, name="fc2"),
             oh.make_node("Constant", [], ["2x"], value=nh.from_array(np.array(2.0, f32))),
             oh.make_node("Mul", ["logits", "2x"], ["scaled"]),
             oh.make_node("Reshape", ["scaled", "0shape"], ["flat"]),
             oh.make_node("LogSoftmax", ["flat"], ["log.probs"], axis=-1)]
    return _model(nodes, [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                  [oh.make_tensor_value_info("log.probs", TensorProto.FLOAT, ["batch", 3])],
                  inits, name="mlp")


def _import(tmp_path: Path, model, capsys) -> Path:
    onnx.save(model, tmp_path / "model.onnx")
    code = main(["import", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "model.yaml")])
    assert code == 0, capsys.readouterr().err
    return tmp_path / "model.yaml"


def _compare(spec: Path, model, feeds: dict[str, np.ndarray], rtol: float = 1e-5) -> None:
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    graph = engine.load(spec)
    got = engine.Executor(graph).forward(feeds)
    outputs = list(got)
    assert len(outputs) == len(want)
    for name, expected in zip(outputs, want, strict=True):
        assert got[name].dtype == expected.dtype
        np.testing.assert_allclose(got[name], expected, rtol=rtol, atol=1e-6)


def test_import_keeps_legal_names_renames_the_others_and_matches_onnxruntime(
        tmp_path: Path, capsys) -> None:
    model = _mlp(np.random.default_rng(0))
    spec = _import(tmp_path, model, capsys)
    text = spec.read_text()
    assert "wrote" in capsys.readouterr().err
    header = text.split("\n\n", 1)[0]
    for onnx_name, name in [("layer1.weight", "layer1_weight"), ("h.1", "h_1_2"),
                            ("log.probs", "log_probs"), ("2x", "v_2x")]:
        assert f"'{onnx_name}' -> {name}" in header
    assert "  h_1: {op: Relu, inputs: [h_1_2]}" in text  # the legal name kept its name
    assert "  v_2x: {value: 2.0, dtype: float32}" in text
    assert "shape: [-1, 3]" in text  # the Reshape's shape, an initializer, is its attribute
    assert "  'on': {shape: [3], dtype: float32, init: {file: model.npz}}" in text
    with np.load(tmp_path / "model.npz") as stored:
        assert sorted(stored) == ["layer1_bias", "layer1_weight", "layer2_weight", "on"]
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    _compare(spec, model, {"x": x})


def test_an_unsupported_op_names_the_node_the_op_and_the_opset(tmp_path: Path, capsys) -> None:
    model = _model([oh.make_node("Relu", ["x"], ["r"]),
                    oh.make_node("Hardmax", ["r"], ["y"], name="pick")],
                   [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [oh.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], opset=19)
    onnx.save(model, tmp_path / "m.onnx")
    code = main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.yaml")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{tmp_path / 'm.onnx'}: node 1 'pick' (Hardmax, opset 19): op 'Hardmax' is not " \
           "supported" in err
    assert "Traceback" not in err
    assert not (tmp_path / "m.yaml").exists()


def test_an_attribute_fed_at_run_time_is_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    model = _model([oh.make_node("Reshape", ["x", "shape"], ["y"], name="r")],
                   [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                    oh.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                   [oh.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.yaml")]) == 1
    err = capsys.readouterr().err
    assert "node 0 'r' (Reshape, opset 17): its shape (input 1, 'shape') must be a constant" in err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_or_truncated_file_is_named(tmp_path: Path, capsys, damage: str) -> None:
    whole = _mlp(np.random.default_rng(0)).SerializeToString()
    data = {"truncated": whole[: len(whole) // 2], "garbage": b"\x00\xff" * 50,
            "empty": b""}[damage]
    (tmp_path / "bad.onnx").write_bytes(data)
    code = main(["import", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "bad.yaml")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {tmp_path / 'bad.onnx'}: not a readable ONNX model" in err
    assert "Traceback" not in err
    assert not (tmp_path / "bad.yaml").exists()


def test_import_without_onnx_says_how_to_install_it(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    (tmp_path / "m.onnx").write_bytes(b"")
    code = main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.yaml")])
    assert code == 2
    assert 'engine import needs onnx, which is not installed: pip install -e ".[onnx]"' in \
        capsys.readouterr().err


def test_several_ops_for_one_node_and_extra_outputs(tmp_path: Path, capsys) -> None:
    """LayerNormalization's Mean and InvStdDev, NLL with weights and ignore_index, Gemm
    with transA, Flatten, Max of three inputs: against onnxruntime."""
    f32, rng = np.float32, np.random.default_rng(2)
    inits = [nh.from_array(rng.uniform(0.5, 2, size=(4,)).astype(f32), "w"),
             nh.from_array(rng.normal(size=(6,)).astype(f32), "scale"),
             nh.from_array(rng.normal(size=(3, 6)).astype(f32), "a")]
    nodes = [oh.make_node("LayerNormalization", ["x", "scale"], ["ln", "mean", "inv"], axis=-1),
             oh.make_node("Gemm", ["a", "ln"], ["g"], transA=1, beta=0.0),
             oh.make_node("Flatten", ["x"], ["flat"], axis=1),
             oh.make_node("Max", ["x", "ln", "x"], ["top"]),
             oh.make_node("NegativeLogLikelihoodLoss", ["logp", "t", "w"], ["loss"],
                          reduction="mean", ignore_index=2)]
    float_info = oh.make_tensor_value_info
    model = _model(nodes, [float_info("x", TensorProto.FLOAT, [3, 6]),
                           float_info("logp", TensorProto.FLOAT, [5, 4, 2]),
                           float_info("t", TensorProto.INT64, [5, 2])],
                   [float_info(n, TensorProto.FLOAT, shape) for n, shape in
                    [("ln", [3, 6]), ("mean", [3, 1]), ("inv", [3, 1]), ("flat", [3, 6]),
                     ("top", [3, 6]), ("g", [6, 6]), ("loss", [])]], inits)
    spec = _import(tmp_path, model, capsys)
    feeds = {"x": rng.normal(size=(3, 6)).astype(f32),
             "logp": rng.normal(size=(5, 4, 2)).astype(f32),
             "t": np.array([[0, 1], [2, 3], [1, 2], [3, 0], [2, 2]], np.int64)}
    _compare(spec, model, feeds)


def _torch_models():
    torch = pytest.importorskip("torch", reason='torch is not installed: pip install -e ".[torch]"')

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer1, self.layer2 = torch.nn.Linear(13, 10), torch.nn.Linear(10, 3)

        def forward(self, x):
            return torch.log_softmax(self.layer2(torch.relu(self.layer1(x))), dim=-1)

    class Attention(torch.nn.Module):
        def __init__(self, d: int = 8, heads: int = 2) -> None:
            super().__init__()
            self.heads, self.head_dim = heads, d // heads
            self.q, self.k = torch.nn.Linear(d, d), torch.nn.Linear(d, d)
            self.v, self.o = torch.nn.Linear(d, d), torch.nn.Linear(d, d)
            self.norm = torch.nn.LayerNorm(d)

        def forward(self, x):
            b, t, d = x.shape

            def split(z):
                return z.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            scores = q @ k.transpose(-1, -2) / self.head_dim ** 0.5
            heads = torch.softmax(scores, dim=-1) @ v
            return self.norm(x + self.o(heads.transpose(1, 2).reshape(b, t, d)))

    return torch, {"mlp": (MLP, (4, 13)), "attention": (Attention, (2, 5, 8))}


@pytest.mark.parametrize("which", ["mlp", "attention"])
def test_models_exported_by_torch_import_and_equal_onnxruntime(tmp_path: Path, capsys,
                                                               which: str) -> None:
    torch, models = _torch_models()
    make, shape = models[which]
    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that this exporter is the legacy one
        torch.onnx.export(make().eval(), (torch.randn(*shape),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17)
    model = onnx.load(str(path))
    spec = _import(tmp_path, model, capsys)
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    _compare(spec, model, {"x": x})


def test_an_npz_init_file_gives_each_tensor_its_own_array(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", w=np.full((2, 3), 2.0), b=np.arange(3.0))
    spec = ("name: s\ninputs: {x: {shape: [2, 3]}}\n"
            "parameters:\n  w: {shape: [2, 3], init: {file: p.npz}}\n"
            "  b: {shape: [3], init: {file: p.npz}}\n"
            "nodes:\n  y: {op: Mul, inputs: [x, w]}\n  z: {op: Add, inputs: [y, b]}\n"
            "outputs: [z]\n")
    graph = engine.loads(spec, base_dir=tmp_path)
    out = engine.Executor(graph).forward({"x": np.ones((2, 3))})["z"]
    np.testing.assert_array_equal(out, [[2, 3, 4], [2, 3, 4]])
    missing = spec.replace("outputs: [z]", "  u: {op: Add, inputs: [z, c]}\noutputs: [u]") \
        .replace("nodes:", "  c: {shape: [3], init: {file: p.npz}}\nnodes:")
    graph = engine.loads(missing, base_dir=tmp_path)
    with pytest.raises(engine.DataError, match=r"p\.npz: holds arrays w, b; none is named 'c'"):
        engine.Executor(graph).forward({"x": np.ones((2, 3))})


def test_files_written_together_appear_together_or_not_at_all(tmp_path: Path) -> None:
    def broken(handle) -> None:
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    (tmp_path / "a.yaml").write_text("old")
    with pytest.raises(engine.DataError, match="No space left"):
        write_together({tmp_path / "a.yaml": lambda h: h.write(b"new"),
                        tmp_path / "a.npz": broken})
    assert (tmp_path / "a.yaml").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml"]


_GRAPHS = sorted(Path(__file__).resolve().parent.parent.glob("graphs/*.yaml"))


@pytest.mark.parametrize("spec", _GRAPHS, ids=[p.stem for p in _GRAPHS])
def test_spec_to_onnx_to_spec_gives_the_same_results(tmp_path: Path, capsys, spec: Path) -> None:
    """engine export, then engine import: the imported spec's outputs equal the original's
    (the same feeds: the original's input defaults) to 1e-12."""
    assert main(["export", str(spec), "-o", str(tmp_path / "m.onnx")]) == 0, \
        capsys.readouterr().err
    code = main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "back.yaml")])
    assert code == 0, capsys.readouterr().err
    original = engine.Executor(engine.load(spec))
    expected = original.forward()
    feeds = {name: np.asarray(original.value(name)) for name, value in original.graph.values
             .items() if value.kind == "input"}
    got = engine.Executor(engine.load(tmp_path / "back.yaml")).forward(feeds)
    for name, value in expected.items():
        back = name.replace("/", "_")  # function-call names become spec names
        assert got[back].dtype == value.dtype
        np.testing.assert_allclose(got[back], value, rtol=1e-12, atol=1e-300)


_WITH_GRADIENTS = [p for p in _GRAPHS if p.stem != "attention"]  # see the next test


@pytest.mark.parametrize("spec", _WITH_GRADIENTS, ids=[p.stem for p in _WITH_GRADIENTS])
def test_an_exported_gradient_graph_imports_with_the_executors_gradients(
        tmp_path: Path, capsys, spec: Path) -> None:
    assert main(["export", str(spec), "--with-gradients", "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "g.yaml")]) == 0, \
        capsys.readouterr().err
    original = engine.Executor(engine.load(spec))
    original.forward()
    expected = original.backward()
    feeds = {name: np.asarray(original.value(name)) for name, value in original.graph.values
             .items() if value.kind == "input"}
    got = engine.Executor(engine.load(tmp_path / "g.yaml")).forward(feeds)
    assert expected
    names = engine.grad(original.graph).gradients  # d_x, or d_x_2 where d_x is taken
    for tensor, gradient in expected.items():
        np.testing.assert_allclose(got[names[tensor]], gradient, rtol=1e-10, atol=1e-14)


def test_scatter_add_as_engine_export_writes_it_is_refused_with_the_node(
        tmp_path: Path, capsys) -> None:
    """attention.yaml's gradient holds a ScatterAdd (Gather's derivative), which engine export
    writes with Mod and ScatterND: not mapped back yet, and said so."""
    spec = _GRAPHS[0].parent / "attention.yaml"
    assert main(["export", str(spec), "--with-gradients", "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "g.yaml")]) == 1
    assert "(Mod, opset 28): op 'Mod' is not supported by engine import" in \
        capsys.readouterr().err


def test_integer_clip_imports_and_a_bound_a_float_cannot_hold_is_refused(tmp_path: Path,
                                                                         capsys) -> None:
    """Clip of int64 with int64 bounds runs as onnxruntime does; a bound of 2^60 + 1, which
    the engine's float64 attribute would round to 2^60, is refused, naming the node."""
    def model(low: int):
        return _model([oh.make_node("Clip", ["x", "low", "high"], ["y"], name="c")],
                      [oh.make_tensor_value_info("x", TensorProto.INT64, [4])],
                      [oh.make_tensor_value_info("y", TensorProto.INT64, [4])],
                      [nh.from_array(np.array(low, np.int64), "low"),
                       nh.from_array(np.array(5, np.int64), "high")])
    fine = model(-3)
    spec = _import(tmp_path, fine, capsys)
    _compare(spec, fine, {"x": np.array([-9, 0, 4, 2**40], np.int64)})
    onnx.save(model(2**60 + 1), tmp_path / "big.onnx")
    assert main(["import", str(tmp_path / "big.onnx"), "-o", str(tmp_path / "big.yaml")]) == 1
    err = capsys.readouterr().err
    assert "node 0 'c' (Clip, opset 17): its min 1152921504606846977 is an integer that a " \
           "float64 cannot hold exactly" in err
    assert "Traceback" not in err and not (tmp_path / "big.yaml").exists()
