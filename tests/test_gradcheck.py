"""``engine gradcheck``: passes on every example graph, fails on a broken vjp, compares each
element with its own tolerance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.cli.main import main
from engine.ops import REGISTRY
from engine.testing.check import check_gradients
from engine.testing.gradcheck import compare

EXAMPLES = sorted(p for p in GRAPHS.glob("*.yaml") if engine.load(p).loss is not None)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_gradcheck_passes_on_every_example_graph(path: Path, order: int, capsys) -> None:
    from test_grad import skip_without_graph_derivative

    skip_without_graph_derivative(engine.load(path))
    assert main(["gradcheck", str(path), "--order", str(order), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] and document["tensors"]
    for tensor in document["tensors"]:
        assert tensor["ok"] and tensor["max_abs_error"] < 1e-6, tensor


def _broken_sigmoid(monkeypatch) -> None:
    """Sigmoid's vjp off by 1% — the kind of slip a formula edit makes."""
    sigmoid = REGISTRY["Sigmoid"]
    broken = dataclasses.replace(
        sigmoid, vjp=lambda xp, attrs, g, out, inputs, needs: (1.01 * g * out * (1 - out),))
    monkeypatch.setitem(REGISTRY, "Sigmoid", broken)


SIGMOID_SPEC = """\
name: logistic
inputs:
  x: {shape: [4, 3], init: {normal: {std: 1.0}}}
  y: {shape: [4, 2], init: one_hot}
parameters:
  w: {shape: [3, 2], init: {normal: {std: 0.5}}}
nodes:
  z: {op: MatMul, inputs: [x, w]}
  p: {op: Sigmoid, inputs: [z]}
  loss: {op: NLL, inputs: [p, y]}
loss: loss
"""


def test_gradcheck_fails_on_a_broken_vjp(monkeypatch, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "logistic.yaml"
    spec.write_text(SIGMOID_SPEC)
    assert main(["gradcheck", str(spec)]) == 0
    capsys.readouterr()
    _broken_sigmoid(monkeypatch)
    assert main(["gradcheck", str(spec)]) == 1
    captured = capsys.readouterr()
    assert "FAIL w" in captured.out and "worst element [" in captured.out
    assert "FAILED" in captured.err
    assert main(["gradcheck", str(spec), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    (report,) = document["tensors"]
    assert report["tensor"] == "w" and len(report["worst_index"]) == 2
    assert report["max_rel_error"] == pytest.approx(0.01, rel=0.05)  # the 1% slip, measured


def test_second_order_gradcheck_fails_on_a_broken_vjp(monkeypatch, tmp_path: Path) -> None:
    """The second derivative is traced from the same rule, so a wrong rule shows in it too."""
    spec = tmp_path / "logistic.yaml"
    spec.write_text(SIGMOID_SPEC)
    _broken_sigmoid(monkeypatch)
    reports = check_gradients(engine.load(spec), order=2)
    assert not all(r.ok for r in reports)


def test_each_element_has_its_own_tolerance() -> None:
    """A 10% error in a small component is caught although the largest gradient is 1000:
    a tolerance scaled by the largest value (1000 * 1e-3) would hide it."""
    report = compare("t", np.array([1000.0, 1.1e-3]), np.array([1000.0, 1e-3]), atol=1e-5,
                     rtol=1e-3)
    assert not report.ok and report.worst == (1,)
    assert report.max_rel == pytest.approx(0.1)
    assert compare("t", np.array([1000.5, 1e-3]), np.array([1000.0, 1e-3])).ok


@pytest.mark.parametrize(("argv", "message"), [
    (["--eps", "inf"], "expected a positive finite number"),
    (["--eps", "0"], "expected a positive finite number"),
    (["--order", "3"], "invalid choice"),
])
def test_gradcheck_refuses_bad_options(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", str(GRAPHS / "softmax.yaml"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_gradcheck_wrt_errors_are_located(capsys) -> None:
    assert main(["gradcheck", str(GRAPHS / "mlp.yaml"), "--wrt", "w_1"]) == 2
    err = capsys.readouterr().err
    assert "--wrt w_1: names nothing" in err and "did you mean" in err


def test_gradcheck_at_fed_values(tmp_path: Path, capsys) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(5, 3)))
    assert main(["gradcheck", str(GRAPHS / "softmax.yaml"), "--feed", f"x={x}"]) == 0
    assert "ok" in capsys.readouterr().out
