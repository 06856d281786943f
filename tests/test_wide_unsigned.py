"""uint16, uint32 and uint64 tensors: declared, inferred and run as NumPy runs them.

Expected values are NumPy's arithmetic applied by hand (or Python's exact integers taken
modulo 2^64), never the engine's output.  Two rules are specific to these dtypes: a mix
whose NumPy promotion is a float (uint64 with a signed integer) is a located error, and
the torch backend, which lacks most ops on them, refuses them by name before running.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_integer_dtypes import assert_runs_as

import engine
from engine.cli.main import main
from engine.errors import EngineError, SpecError
from engine.runtime.backends import installed

TOP = 2**64 - 1

WIDE = f"""\
name: wide
inputs:
  a: {{shape: [3], dtype: uint16, init: {{value: [1, 60000, 65535]}}}}
  b: {{shape: [3], dtype: uint32, init: {{value: [4294967295, 7, 70000]}}}}
  c: {{shape: [2], dtype: uint64, init: {{value: [{TOP}, 9007199254740993]}}}}
  d: {{shape: [2], dtype: uint64, init: {{value: [2, 9007199254740992]}}}}
  s: {{shape: [3], dtype: int16, init: {{value: [-1, 2, -3]}}}}
nodes:
  ab: {{op: Add, inputs: [a, b]}}
  as: {{op: Mul, inputs: [a, s]}}
  cd: {{op: Add, inputs: [c, d]}}
  c1: {{op: Sub, inputs: [c, 1]}}
  big: {{op: Greater, inputs: [c, d]}}
  top: {{op: Max, inputs: [c], axis: 0}}
  total: {{op: Sum, inputs: [c]}}
  hi: {{op: Maximum, inputs: [a, b]}}
  clipped: {{op: Clip, inputs: [c], min: 0, max: 9007199254740992}}
  flat: {{op: Reshape, inputs: [c], shape: [2, 1]}}
  turned: {{op: Transpose, inputs: [flat]}}
  narrow: {{op: Cast, inputs: [b], to: uint16}}
outputs: [ab, as, cd, c1, big, top, total, hi, clipped, flat, turned, narrow]
"""


def test_wide_unsigned_ops_infer_numpys_dtypes_and_exact_values() -> None:
    graph = engine.loads(WIDE)
    c = [TOP, 2**53 + 1]
    u64 = np.uint64
    want = {
        "ab": np.array([(1 + 4294967295) % 2**32, 60007, 135535], np.uint32),  # wraps
        "as": np.array([-1, 120000, -196605], np.int32),  # uint16 * int16: int32 in NumPy
        "cd": np.array([(TOP + 2) % 2**64, 2**54 + 1], u64),
        "c1": np.array([TOP - 1, 2**53], u64),
        "big": np.array([True, True]),  # 2^53 + 1 > 2^53, which float64 would call equal
        "top": np.array(TOP, u64),
        "total": np.array((TOP + 2**53 + 1) % 2**64, u64),
        "hi": np.array([4294967295, 60000, 70000], np.uint32),
        "clipped": np.array([2**53, 2**53], u64),
        "flat": np.array(c, u64).reshape(2, 1),
        "turned": np.array([c], u64),
        "narrow": np.array([65535, 7, 70000 - 65536], np.uint16),
    }
    assert_runs_as(graph, want)


@pytest.mark.parametrize("backend", ["jax", "dask"])
def test_jax_and_dask_run_them_as_numpy_does(backend: str) -> None:
    if not installed(backend):
        pytest.fail(f"{backend} is a test dependency")
    graph = engine.loads(WIDE)
    want = engine.Executor(graph).forward()
    got = engine.Executor(graph, backend=backend)
    got = got.compute(got.forward())[0]
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
        assert got[name].dtype == value.dtype, name


def test_torch_refuses_them_naming_the_value_and_what_to_do() -> None:
    graph = engine.loads(WIDE, file="wide.yaml")
    with pytest.raises(EngineError) as caught:
        engine.Executor(graph, backend="torch")
    message = str(caught.value)
    assert message.startswith("'a' (wide.yaml:3:3) is uint16, which the torch backend cannot "
                              "compute with"), message
    assert "Cast it to a dtype torch has" in message and "numpy, jax, dask" in message


@pytest.mark.parametrize(("node", "message"), [
    ("{op: Add, inputs: [c, e]}", r"wide.yaml:11:3: nodes.n: node 'n' \(Add\): mixes uint64 "
                                  r"with int64: no integer dtype holds both \(NumPy would make "
                                  r"float64"),
    ("{op: Maximum, inputs: [e, c]}", r"node 'n' \(Maximum\): mixes uint64 with int64"),
    ("{op: Greater, inputs: [c, t]}", r"node 'n' \(Greater\): mixes uint64 with int8"),
    ("{op: Concat, inputs: [c, e], axis: 0}", r"node 'n' \(Concat\): mixes uint64 with int64"),
    ("{op: Pow, inputs: [c, e]}", r"node 'n' \(Pow\): raises an unsigned base \(uint64\) to a "
                                  r"signed exponent \(int64\).*Cast the exponent to uint64"),
])
def test_mixes_numpy_makes_floats_are_located_errors(node: str, message: str) -> None:
    spec = WIDE.replace("nodes:\n", "  e: {shape: [2], dtype: int64, init: zeros}\n"
                        "  t: {shape: [2], dtype: int8, init: zeros}\nnodes:\n"
                        f"  n: {node}\n").replace("outputs: [", "outputs: [n, ")
    with pytest.raises(SpecError, match=message):
        engine.loads(spec, file="wide.yaml")


@pytest.mark.parametrize(("value", "dtype"), [(-1, "uint16"), (65536, "uint16"),
                                              (2**32, "uint32"), (2**64, "uint64")])
def test_literals_must_fit(value: int, dtype: str) -> None:
    spec = f"name: t\ninputs:\n  x: {{shape: [1], dtype: {dtype}, init: {{value: [{value}]}}}}\n" \
           "nodes:\n  y: {op: Reshape, inputs: [x], shape: [1]}\noutputs: [y]\n"
    with pytest.raises(SpecError, match=str(value)):
        engine.loads(spec)


def test_a_fed_array_converts_only_when_every_value_fits() -> None:
    spec = "name: t\ninputs:\n  x: {shape: [2], dtype: uint32}\nnodes:\n" \
           "  y: {op: Add, inputs: [x, 1]}\noutputs: [y]\n"
    ex = engine.Executor(engine.loads(spec))
    np.testing.assert_array_equal(ex.forward({"x": np.array([5, 2**32 - 2])})["y"],
                                  np.array([6, 2**32 - 1], np.uint32))
    with pytest.raises(EngineError, match="-1"):
        ex.forward({"x": np.array([3, -1])})


def test_export_refuses_a_uint64_pow_at_its_node(tmp_path, capsys) -> None:
    """onnxruntime has no uint64 Pow and no wider integer holds one: refused, located."""
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\ninputs:\n  x: {shape: [2], dtype: uint64, init: ones}\nnodes:\n"
                    "  y: {op: Pow, inputs: [x, 3]}\noutputs: [y]\n")
    out = tmp_path / "p.onnx"
    assert main(["export", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:5:3: nodes.y: node 'y' (Pow) cannot be exported to ONNX: Pow of uint64 " \
           "has no onnxruntime kernel" in err and "Cast the base to int64" in err, err
    assert "Traceback" not in err and not out.exists()
