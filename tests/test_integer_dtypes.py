"""Integer and bool tensors in specs: declared, checked, fed and run without a silent change.

What ``engine check`` infers is what runs (NumPy's promotion, or a located refusal that
says to add a Cast); gradients never flow into integers; literals and fed data that an
integer dtype cannot hold are errors naming the element.  Expected values come from NumPy
applied by hand, not from the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_dtypes import assert_runs_as_inferred

import engine
from engine.io.arrays import load_array

INTS = """\
name: ints
inputs:
  a: {shape: [2, 3], dtype: int8, init: {value: [[1, -2, 3], [100, 27, -128]]}}
  b: {shape: [3], dtype: int8, init: {value: [5, 6, -7]}}
  u: {shape: [3], dtype: uint8, init: {value: [0, 200, 255]}}
  w: {shape: [2, 3], dtype: int16, init: ones}
  m: {shape: [3], dtype: bool, init: {value: [1, 0, 1]}}
  f: {shape: [3], dtype: float32, init: {value: [1.5, -2.0, 0.25]}}
  e: {shape: [3], dtype: int64, init: {value: [3, 2, -1]}}
nodes:
  fe: {op: Pow, inputs: [f, e]}
  fe2: {op: Mul, inputs: [fe, fe]}
  s: {op: Add, inputs: [a, b]}
  d: {op: Sub, inputs: [a, 1]}
  p: {op: Mul, inputs: [u, w]}
  total: {op: Sum, inputs: [s], axis: -1}
  top: {op: Max, inputs: [p], axis: 0}
  sq: {op: Pow, inputs: [b, 2]}
  bigger: {op: Greater, inputs: [a, b]}
  same: {op: Equal, inputs: [m, m]}
  flat: {op: Reshape, inputs: [u], shape: [3, 1]}
  turned: {op: Transpose, inputs: [a]}
  wide: {op: Cast, inputs: [u], to: int32}
  hi: {op: Maximum, inputs: [a, b]}
  lo: {op: Minimum, inputs: [u, w]}
  clipped: {op: Clip, inputs: [a], min: -2, max: 30}
  uclipped: {op: Clip, inputs: [u], min: -7, max: 199}
outputs: [fe2, s, d, p, total, top, sq, bigger, same, flat, turned, wide, hi, lo, clipped,
  uclipped]
"""


def test_integer_ops_infer_numpys_dtypes_and_values() -> None:
    graph = engine.loads(INTS)
    a = np.array([[1, -2, 3], [100, 27, -128]], np.int8)
    b, u = np.array([5, 6, -7], np.int8), np.array([0, 200, 255], np.uint8)
    w = np.ones((2, 3), np.int16)
    with np.errstate(over="ignore"):
        want = {"s": a + b, "d": a - np.int8(1), "p": u * w, "total": np.sum(a + b, axis=-1,
                                                                             dtype=np.int8),
                "top": np.max(u * w, axis=0), "sq": b ** np.int8(2), "bigger": a > b,
                "same": np.ones(3, bool), "flat": u.reshape(3, 1), "turned": a.T,
                "wide": u.astype(np.int32), "hi": np.maximum(a, b),
                "lo": np.array([[0, 1, 1], [0, 1, 1]], np.int16),
                "clipped": np.array([[1, -2, 3], [30, 27, -2]], np.int8),
                "uclipped": np.array([0, 199, 199], np.uint8)}  # -7 is below every uint8
    fe = np.array([1.5**3, (-2.0) ** 2, 1 / 0.25], np.float32)  # the base's dtype, as ONNX
    want["fe2"] = fe * fe
    assert_runs_as(graph, want)


def assert_runs_as(graph: engine.Graph, want: dict[str, np.ndarray]) -> None:
    """Each named value is ``want``'s, dtype included, as inferred and as run on the plain and
    the optimized path (the memory plan's ufunc calls too)."""
    for optimize in (False, True):
        out = engine.Executor(graph, optimize=optimize).forward()
        for name, value in want.items():
            assert graph.values[name].dtype == str(value.dtype), name
            np.testing.assert_array_equal(out[name], value, err_msg=name)
            assert out[name].dtype == value.dtype, name
    assert_runs_as_inferred(graph)


@pytest.mark.parametrize(("node", "message"), [
    ("{op: Add, inputs: [a, f]}", r"node 'n' \(Add\): mixes integers and floats, which NumPy "
                                  r"and PyTorch promote differently; Cast the integer input"),
    ("{op: Mul, inputs: [a, 1.5]}", r"mixes integers and floats"),
    ("{op: Div, inputs: [a, a]}", r"node 'n' \(Div\): divides floats only, got int8: "
                                  r"NumPy's true division of integers gives float64"),
    ("{op: Add, inputs: [m, m]}", r"needs numbers, got bool; Cast it"),
    ("{op: Greater, inputs: [a, f]}", r"compares float with integer values \(int8, float32\)"),
    ("{op: Pow, inputs: [a, f]}", r"raises an integer base \(int8\) to a float exponent"),
    ("{op: Exp, inputs: [a]}", r"needs floating-point inputs, got int8 .*or Cast it to one"),
    ("{op: Mean, inputs: [a]}", r"needs floating-point inputs, got int8"),
    ("{op: Sum, inputs: [m]}", r"reduces numbers, got bool; Cast it first"),
    ("{op: Maximum, inputs: [a, f]}", r"node 'n' \(Maximum\): mixes integers and floats"),
    ("{op: Minimum, inputs: [m, m]}", r"needs numbers, got bool"),
    ("{op: Clip, inputs: [a], min: 2.5}", r"node 'n' \(Clip\): min 2\.5 is not an integer, "
                                          r"and x is int8: write a whole number, or Cast x"),
    ("{op: Clip, inputs: [a], min: 200}", r"bounds min 200\.0, max None leave no int8 value "
                                          r"\(its range is -128 to 127\)"),
    ("{op: Clip, inputs: [m], max: 1}", r"node 'n' \(Clip\): needs numbers, got bool"),
])

def test_mixed_or_unsupported_dtypes_are_located_errors(node: str, message: str) -> None:
    spec = f"""\
name: mixed
inputs:
  a: {{shape: [3], dtype: int8, init: zeros}}
  f: {{shape: [3], dtype: float32, init: zeros}}
  m: {{shape: [3], dtype: bool, init: zeros}}
nodes:
  n: {node}
outputs: [n]
"""
    with pytest.raises(engine.SpecError, match=r"mixed.yaml:7:3: nodes.n: .*" + message):
        engine.loads(spec, file="mixed.yaml")


@pytest.mark.parametrize(("decl", "where", "message"), [
    ("{shape: [3], dtype: int8, init: {value: [1, 300, 2]}}", "3:50",
     r"300 does not fit int8 \(from -128 to 127\)"),
    ("{shape: [2], dtype: uint8, init: {value: [1, -1]}}", "3:51", r"-1 does not fit uint8"),
    ("{shape: [2], dtype: int16, init: {value: [1, 2.5]}}", "3:51",
     r"2\.5 is not an integer, but the tensor is int16"),
    ("{shape: [2], dtype: bool, init: {value: [1, 2]}}", "3:50",
     r"2\.0 is not a bool: a bool tensor holds 0 and 1"),
    ("{shape: [2], dtype: int32, init: {uniform: {low: 0, high: 5}}}", "3:33",
     r"uniform draws floating-point numbers, but the tensor is int32"),
    ("{shape: [2], dtype: int8, init: {labels: {classes: 200}}}", "3:48",
     r"labels up to 199 do not fit int8"),
    ("{shape: [2], dtype: int32, init: zeros, requires_grad: true}", "3:46",
     r"only floating-point tensors can require grad, this one is int32"),
])
def test_literals_and_inits_an_integer_cannot_hold_are_located(decl: str, where: str,
                                                                message: str) -> None:
    spec = f"name: lit\ninputs:\n  x: {decl}\nnodes:\n  y: {{op: Reshape, inputs: [x], " \
           "shape: [-1]}\noutputs: [y]\n"
    with pytest.raises(engine.SpecError, match=rf"lit.yaml:{where}: .*{message}"):
        engine.loads(spec, file="lit.yaml")


def test_an_integer_parameter_is_refused_where_its_dtype_is() -> None:
    spec = "name: p\nparameters:\n  k: {shape: [2], dtype: int64, init: zeros}\nnodes:\n" \
           "  y: {op: Sum, inputs: [k]}\noutputs: [y]\n"
    with pytest.raises(engine.SpecError, match=r"p.yaml:3:\d+: .*a parameter gets a gradient, "
                                               r"so it is floating point, but this one is int64"):
        engine.loads(spec, file="p.yaml")


def test_a_bare_integer_takes_the_integer_dtype_and_a_bare_float_refuses() -> None:
    spec = """\
name: bare
inputs:
  a: {shape: [2], dtype: int16, init: {value: [3, 4]}}
constants:
  two: 2
nodes:
  p: {op: Mul, inputs: [a, two]}
  q: {op: Add, inputs: [a, 7]}
outputs: [p, q]
"""
    graph = engine.loads(spec)
    assert graph.values["p"].dtype == graph.values["q"].dtype == "int16"
    out = engine.Executor(graph).forward()
    np.testing.assert_array_equal(out["p"], np.array([6, 8], np.int16))
    assert out["q"].dtype == np.int16
    with pytest.raises(engine.SpecError, match=r"mixes integers and floats"):
        engine.loads(spec.replace("two: 2", "two: 2.0"))


def test_gradients_never_flow_into_integers() -> None:
    """loss = sum(x * 2) + sum(Cast(Cast(x, int32), float64)): the cast path is cut, so
    d loss / dx = 2 exactly; the int32 node does not require grad."""
    spec = """\
name: cut
inputs:
  x: {shape: [3], init: {value: [0.5, 1.5, -2.5]}, requires_grad: true}
nodes:
  doubled: {op: Mul, inputs: [x, 2]}
  whole: {op: Cast, inputs: [x], to: int32}
  back: {op: Cast, inputs: [whole], to: float64}
  both: {op: Add, inputs: [doubled, back]}
  loss: {op: Sum, inputs: [both]}
loss: loss
"""
    graph = engine.loads(spec)
    assert not graph.values["whole"].requires_grad and graph.values["back"].requires_grad is False
    ex = engine.Executor(graph)
    ex.forward()
    np.testing.assert_array_equal(ex.backward()["x"], [2.0, 2.0, 2.0])
    assert ex.loss == pytest.approx(2 * (0.5 + 1.5 - 2.5) + (0 + 1 - 2))


FED = """\
name: fed
inputs:
  k: {shape: [n], dtype: int8}
  m: {shape: [n], dtype: bool}
nodes:
  y: {op: Add, inputs: [k, k]}
  z: {op: Equal, inputs: [m, m]}
outputs: [y, z]
"""


def test_fed_integers_convert_only_when_every_value_fits(tmp_path) -> None:
    ex = engine.Executor(engine.loads(FED))
    out = ex.forward({"k": np.array([1, -3, 100], np.int64), "m": np.array([0, 1, 1])})
    assert out["y"].dtype == np.int8 and out["z"].dtype == bool
    np.testing.assert_array_equal(out["y"], np.array([2, -6, -56], np.int8))  # int8 wraps
    with pytest.raises(engine.DataError, match=r"input 'k' .*declared dtype int8, fed int64, "
                                               r"whose value 300 \(index \[1\]\) int8 cannot "
                                               r"hold \(-128\.\.127\)"):
        ex.forward({"k": np.array([1, 300, 2]), "m": np.zeros(3, bool)})
    with pytest.raises(engine.DataError, match=r"input 'm' .*whose value 2 \(index \[2\]\) bool "
                                               r"cannot hold \(0 and 1 only\)"):
        ex.forward({"k": np.zeros(3, np.int8), "m": np.array([0, 1, 2])})
    with pytest.raises(engine.DataError, match=r"declared dtype int8, fed float64, which does "
                                               r"not convert safely to int8"):
        ex.forward({"k": np.array([1.0, 2.0, 3.0]), "m": np.zeros(3, bool)})
    csv = tmp_path / "k.csv"
    csv.write_text("4\n-5\n6\n")  # a CSV of whole numbers reads as int64 and fits int8
    out = ex.forward({"k": load_array(csv)[:, 0], "m": np.zeros(3, bool)})
    np.testing.assert_array_equal(out["y"], np.array([8, -10, 12], np.int8))


def test_an_init_file_of_integers_loads_without_change(tmp_path) -> None:
    np.save(tmp_path / "k.npy", np.array([7, -8, 9], np.int16))
    np.save(tmp_path / "bad.npy", np.array([7, 1000, 9], np.int16))
    spec = "name: f\ninputs:\n  k: {shape: [3], dtype: int8, init: {file: FILE}}\nnodes:\n" \
           "  y: {op: Sum, inputs: [k]}\noutputs: [y]\n"
    out = engine.Executor(engine.loads(spec.replace("FILE", "k.npy"),
                                       base_dir=tmp_path)).forward()
    assert out["y"] == 8 and out["y"].dtype == np.int8
    ex = engine.Executor(engine.loads(spec.replace("FILE", "bad.npy"), base_dir=tmp_path))
    with pytest.raises(engine.DataError, match=r"holds int16, whose value 1000 \(index \[1\]\) "
                                               r"int8 cannot hold"):
        ex.forward()


def test_a_negative_integer_power_of_an_integer_is_a_located_error() -> None:
    spec = """\
name: neg
inputs:
  a: {shape: [2], dtype: int64, init: {value: [2, 3]}}
  e: {shape: [2], dtype: int64, init: {value: [1, -1]}}
nodes:
  p: {op: Pow, inputs: [a, e]}
outputs: [p]
"""
    ex = engine.Executor(engine.loads(spec, file="neg.yaml"))
    with pytest.raises(engine.DataError, match=r"node 'p' \(Pow, neg.yaml:6:3\) failed in forward"
                                               r".*Integers to negative integer powers"):
        ex.forward()
    out = ex.forward({"e": np.array([3, 0])})
    np.testing.assert_array_equal(out["p"], [8, 1])


def test_max_over_an_empty_axis_is_minus_infinity_and_mean_is_refused() -> None:
    spec = """\
name: empty
inputs:
  x: {shape: [2, 0], init: zeros}
  k: {shape: [2, 0], dtype: int32, init: zeros}
nodes:
  top: {op: Max, inputs: [x], axis: 1}
  itop: {op: Max, inputs: [k], axis: -1}
outputs: [top, itop]
"""
    out = engine.Executor(engine.loads(spec)).forward()
    np.testing.assert_array_equal(out["top"], [-np.inf, -np.inf])
    np.testing.assert_array_equal(out["itop"], np.full(2, np.iinfo(np.int32).min, np.int32))
    mean = spec.replace("op: Max, inputs: [x], axis: 1", "op: Mean, inputs: [x], axis: 1")
    with pytest.raises(engine.SpecError, match=r"empty.yaml:6:3: nodes.top: node 'top' "
                                               r"\(Mean\): reduces axis 1 of \[2, 0\], which has "
                                               r"size 0: the mean of no elements is 0/0"):
        engine.loads(mean, file="empty.yaml")


def test_a_clip_bound_a_float64_cannot_hold_is_refused_where_it_is_written() -> None:
    """2^53 + 1 would become 2^53 as the float64 attribute: off by one on an int64 x."""
    spec = ("name: c\ninputs:\n  x: {shape: [2], dtype: int64, init: zeros}\nnodes:\n"
            "  y: {op: Clip, inputs: [x], min: 9007199254740993}\noutputs: [y]\n")
    with pytest.raises(engine.SpecError, match=r"c.yaml:5:30: nodes.y.min: 9007199254740993 is "
                                               r"an integer that a float64 bound cannot hold"):
        engine.loads(spec, file="c.yaml")
    assert engine.loads(spec.replace("740993", "740992"), file="c.yaml")  # 2^53 is exact
