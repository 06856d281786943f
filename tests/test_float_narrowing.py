"""float64 data fed to a float32 (or float16) input is rounded, as training in float32 wants,
but a finite value beyond the narrower float's range would become inf: that is an error naming
the element, on every call, never a quietly different number.  Expected values are NumPy's own
rounding of the data (``astype``), and finfo's largest values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import engine

SPEC = ("name: n\ninputs: {x: {shape: [3], dtype: DTYPE}}\nnodes:\n"
        "  y: {op: Neg, inputs: [x]}\noutputs: [y]\n")


def executor(dtype: str) -> engine.Executor:
    return engine.Executor(engine.loads(SPEC.replace("DTYPE", dtype), file="n.yaml"))


def test_finite_data_is_rounded_to_the_declared_float() -> None:
    data = np.array([0.1, -1e30, 3e38])
    out = executor("float32").forward({"x": data})["y"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, -data.astype(np.float32))


def test_inf_and_nan_in_the_data_pass_as_they_are() -> None:
    out = executor("float32").forward({"x": np.array([np.inf, -np.inf, np.nan])})["y"]
    np.testing.assert_array_equal(out, np.array([-np.inf, np.inf, np.nan], np.float32))


@pytest.mark.parametrize(("dtype", "value"), [("float32", 1e300), ("float32", -4e38),
                                              ("float16", 70000.0)])
def test_a_finite_value_beyond_the_range_is_refused_by_index(dtype: str, value: float) -> None:
    largest = float(np.finfo(dtype).max)
    with np.errstate(over="ignore"):  # what NumPy's cast would make of it
        assert abs(value) > largest and np.isinf(np.array(value).astype(dtype))
    shown = re.escape(str(np.float64(value)))
    with pytest.raises(engine.DataError, match=rf"n.yaml:2:10\): declared dtype {dtype}, fed "
                                               rf"float64, whose value {shown} \(index \[1\]\) "
                                               rf"is beyond {dtype}'s largest"):
        executor(dtype).forward({"x": np.array([1.0, value, 2.0])})


def test_the_check_runs_again_when_the_same_shape_is_fed_again() -> None:
    ex = executor("float32")
    ex.forward({"x": np.array([1.0, 2.0, 3.0])})  # passes, with float64 data of this shape
    with pytest.raises(engine.DataError, match="would become inf"):
        ex.forward({"x": np.array([1.0, 2.0, 1e39])})


def test_an_init_file_beyond_the_range_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.array([1.0, 2.0, 1e300]))
    spec = ("name: f\ninputs:\n  w: {shape: [3], dtype: float32, init: {file: w.npy}}\n"
            "nodes:\n  y: {op: Neg, inputs: [w]}\noutputs: [y]\n")
    ex = engine.Executor(engine.loads(spec, base_dir=tmp_path))
    with pytest.raises(engine.DataError, match=r"1e\+300 \(index \[2\]\) is beyond float32"):
        ex.forward()
