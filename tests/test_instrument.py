"""Tracing (`run --trace`) and NaN/Inf detection (`--check-finite`, `check_finite=True`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import GRAPHS, ROOT

import engine
from engine.ops import REGISTRY

F16_EXP = textwrap.dedent("""\
    name: overflow
    inputs:
      x: {shape: [2, 3], dtype: float16, requires_grad: true,
          init: {value: [[1, 2, 3], [4, 12, 5]]}}
    nodes:
      raised: {op: Exp, inputs: [x]}
      loss: {op: Sum, inputs: [raised]}
    loss: loss
    """)


def engine_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def line_col(text: str, key: str) -> str:
    """``line:col`` of ``key:`` in spec text, found by hand, not by the engine."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(key + ":"):
            return f"{number}:{len(line) - len(line.lstrip()) + 1}"
    raise AssertionError(key)


def test_float16_exp_overflow_is_caught_and_named() -> None:
    graph = engine.loads(F16_EXP, file="overflow.yaml")
    ex = engine.Executor(graph, check_finite=True)
    with pytest.raises(engine.NonFiniteError) as caught:
        ex.forward()
    message = str(caught.value)
    assert caught.value.node == "raised" and caught.value.phase == "forward"
    assert f"node 'raised' (Exp, overflow.yaml:{line_col(F16_EXP, 'raised')})" in message
    # e^12 = 162754.79 > 65504, the largest float16: the lesson's overflow.
    assert "overflow: float16 holds at most 65504" in message
    assert f"reached {np.exp(12.0):.6g}" in message
    assert "x  [2, 3] float16  min 1, max 12, mean 4.5" in message  # its input's statistics


def test_off_by_default_and_the_plan_is_untouched() -> None:
    graph = engine.loads(F16_EXP, file="overflow.yaml")
    ex = engine.Executor(graph)
    with np.errstate(over="ignore"):
        ex.forward()
    assert np.isinf(ex.value("raised")).sum() == 1  # no check: the inf goes through
    assert all((step.forward, step.vjp) == REGISTRY[step.op.name].lowered(True)
               for step in ex.plan.steps)
    assert ex.trace is None
    checked = engine.Executor(graph, check_finite=True)
    assert all(step.forward not in (step.op.forward, step.op.fast_forward)
               for step in checked.plan.steps)


def test_nan_from_finite_inputs_is_an_invalid_operation(build) -> None:
    graph = build("""
        name: nan
        inputs: {x: {shape: [3], init: {value: [1.0, -1.0, 2.0]}}}
        nodes:
          e: {op: Exp, inputs: [x]}
          l: {op: Log, inputs: [x]}
          out: {op: Add, inputs: [e, l]}
        outputs: [out]
    """)
    with pytest.raises(engine.NonFiniteError) as caught:
        engine.Executor(graph, check_finite=True).forward()
    assert caught.value.node == "l"  # the first node, not the Add that inherits its NaN
    assert "(1 NaN, 0 inf of 3 elements)" in str(caught.value)
    assert "invalid operation" in str(caught.value)


def test_non_finite_fed_data_is_blamed_on_the_input(build) -> None:
    graph = build("""
        name: fed
        inputs: {x: {shape: [2]}}
        nodes: {e: {op: Exp, inputs: [x]}}
        outputs: [e]
    """)
    with pytest.raises(engine.NonFiniteError, match="input 'x' already holds NaN or inf"):
        engine.Executor(graph, check_finite=True).forward({"x": np.array([0.0, np.nan])})


def test_gradient_pole_in_backward_is_caught_and_not_called_overflow(build) -> None:
    graph = build("""
        name: pole
        inputs: {x: {shape: [2], dtype: float16, init: {value: [0.0, 1.0]}, requires_grad: true}}
        nodes:
          r: {op: Pow, inputs: [x, 0.5]}
          loss: {op: Sum, inputs: [r]}
        loss: loss
    """)
    ex = engine.Executor(graph, check_finite=True)
    ex.forward()  # sqrt(0) = 0 is finite
    with pytest.raises(engine.NonFiniteError) as caught:
        ex.backward()  # 0.5 * 0^-0.5 = inf is a pole, also in float64
    message = str(caught.value)
    assert caught.value.phase == "backward" and caught.value.node == "r"
    assert "gradient d(x)" in message and "division by zero or pole" in message
    assert "overflow: float16" not in message


def test_trace_rows_match_values_and_gradients() -> None:
    graph = engine.load(GRAPHS / "softmax.yaml")
    ex = engine.Executor(graph, trace=True, optimize=False)  # every node as written
    ex.forward()
    grads = ex.backward(keep=list(graph.order))
    assert list(ex.trace.rows) == graph.order
    for name, row in ex.trace.rows.items():
        value, grad = np.asarray(ex.value(name)), np.asarray(grads[name])
        assert (row.value.min, row.value.max) == (value.min(), value.max())
        assert row.value.mean == pytest.approx(value.mean(), rel=1e-12)
        assert (row.grad.min, row.grad.max) == (grad.min(), grad.max())
        assert row.forward_s >= 0 and row.backward_s >= 0
        assert row.shape == str(list(value.shape)).replace("'", "")
    assert ex.trace.rows["loss"].grad.min == 1.0  # backward starts with 1


def test_the_default_trace_has_a_row_per_step_that_runs() -> None:
    """The optimized path traces what it runs: the fused steps, under the names of the values
    they compute."""
    ex = engine.Executor(engine.load(GRAPHS / "softmax.yaml"), trace=True)
    ex.forward()
    grads = ex.backward()
    assert [(name, row.op) for name, row in ex.trace.rows.items()] == \
        [("softmax", "Softmax"), ("loss", "CrossEntropy")]
    p = np.asarray(ex.value("softmax"))
    assert ex.trace.rows["softmax"].value.max == p.max()
    assert ex.trace.rows["loss"].grad.min == 1.0
    assert np.asarray(grads["x"]).shape == p.shape


def test_cli_trace_and_check_finite(tmp_path) -> None:
    result = engine_cli("run", str(GRAPHS / "mlp.yaml"), "--trace")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("trace (one row per node, times in milliseconds)\n")[1]
    header, *rows = table.strip().splitlines()
    assert header.split()[:4] == ["node", "op", "shape", "dtype"]
    assert [r.split()[:2] for r in rows] == [["a1", "Dense"], ["logits", "Dense"],  # fused
                                             ["probs", "Softmax"], ["loss", "CrossEntropy"]]
    spec = tmp_path / "overflow.yaml"
    spec.write_text(F16_EXP)
    result = engine_cli("run", str(spec), "--check-finite")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "RuntimeWarning" not in result.stderr
    assert f"error: node 'raised' (Exp, {spec}:{line_col(F16_EXP, 'raised')})" in result.stderr
    assert "overflow" in result.stderr


def test_trace_and_check_finite_on_another_array_namespace() -> None:
    import array_api_strict  # installed by the test extra
    graph = engine.load(GRAPHS / "softmax.yaml")
    ex = engine.Executor(graph, xp=array_api_strict, trace=True, check_finite=True)
    ex.forward()
    ex.backward()
    reference = engine.Executor(graph, optimize=False)
    reference.forward()
    assert ex.trace.rows["raised"].value.max == pytest.approx(reference.value("raised").max())
