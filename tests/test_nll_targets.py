"""NLL's targets are checked wherever they come from: a label outside 0..K-1 is an error
(NumPy would silently give a loss and gradient of 0 where PyTorch raises), and one-hot rows
that are not one-hot get a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import engine

SPEC = """\
name: t
inputs:
  x: {{shape: [batch, k], init: ones, requires_grad: true}}
  y: {{shape: {target}, {init}}}
nodes:
  p: {{op: Softmax, inputs: [x]}}
  l: {{op: NLL, inputs: [p, y]}}
loss: l
"""
INDICES = SPEC.format(target="[batch]", init="dtype: int64, init: {labels: {classes: 2}}")
ONE_HOT = SPEC.format(target="[batch, k]", init="init: one_hot")
X = np.array([[0.1, 0.5, -0.3], [1.0, 0.2, 0.0], [0.3, 0.3, 0.9]])


@pytest.mark.parametrize("labels", [[0, 3, 1], [0, -1, 2], [0, 1, 7]])
def test_a_fed_label_outside_the_classes_is_an_error_every_time(labels: list[int]) -> None:
    ex = engine.Executor(engine.loads(INDICES))
    good = np.array([0, 2, 1])
    ex.forward({"x": X, "y": good})  # the shapes are now checked and remembered
    p = np.exp(X) / np.exp(X).sum(axis=1, keepdims=True)
    assert ex.loss == pytest.approx(-np.log(p[[0, 1, 2], good]).sum())
    bad = np.array(labels)
    row = next(i for i, label in enumerate(labels) if not 0 <= label < 3)
    for _ in range(2):  # the second time, the remembered shapes skip the other checks
        with pytest.raises(engine.DataError, match=rf"input 'y' .* as fed: row {row} holds "
                                                   rf"label {labels[row]}, but NLL node 'l' .* "
                                                   r"takes class indices 0\.\.2, the 3 classes "
                                                   r"of 'p' \[3, 3\]; labels count from 0"):
            ex.forward({"x": X, "y": bad})


def test_a_batched_class_index_target_names_the_index() -> None:
    spec = SPEC.format(target="[2, 2]", init="dtype: int64, init: {labels: {classes: 3}}")
    spec = spec.replace("[batch, k]", "[2, 2, 3]", 1)
    with pytest.raises(engine.DataError, match=r"index \[1, 0\] holds label 3"):
        engine.Executor(engine.loads(spec)).forward({"y": np.array([[0, 1], [3, 2]])})


def test_a_default_label_past_a_fed_class_count_is_an_error() -> None:
    """labels: {classes: 2} is fine for 3 classes, but not for the 1 class a feed binds."""
    ex = engine.Executor(engine.loads(INDICES.replace("classes: 2", "classes: 3")))
    with pytest.raises(engine.DataError, match=r"input 'y' .*: its init: row \d holds label "
                                               r"[12], but .* 0\.\.0"):
        ex.forward({"x": np.ones((40, 1))})


def test_one_hot_rows_that_are_not_one_hot_warn() -> None:
    ex = engine.Executor(engine.loads(ONE_HOT))
    soft = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    with pytest.warns(engine.DataWarning, match=r"row 1 is \[0\. 0\. 0\.\], not one-hot"):
        ex.forward({"x": X, "y": soft})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex.forward({"x": X, "y": np.eye(3)})  # one-hot rows: no warning


def test_nll_of_any_op_that_never_makes_probabilities_warns() -> None:
    """The lint asks each op (``OpDef.not_probabilities``), so every such op is covered:
    here Count, whose value is a number of elements (seen through a Reshape), and not
    Softmax."""
    spec = """
name: counted
inputs: {x: {shape: [2, 3]}, y: {shape: [2, 3], init: one_hot}, z: {shape: [1, 1], init: one_hot}}
nodes:
  c: {op: Count, inputs: [x]}
  r: {op: Reshape, inputs: [c], shape: [1, 1]}
  p: {op: Softmax, inputs: [x], axis: -1}
  bad: {op: NLL, inputs: [r, z]}
  good: {op: NLL, inputs: [p, y]}
outputs: [bad, good]
"""
    warned = [w.message for w in engine.loads(spec).warnings if "takes probabilities" in w.message]
    assert len(warned) == 1
    assert "node 'bad' (NLL) takes probabilities, but its input 'r' comes from Count (node 'c')" \
        in warned[0]
    flagged = {name for name, op in engine.REGISTRY.items() if op.not_probabilities}
    assert {"Exp", "Log", "LogSoftmax", "MatMul", "Add", "Sum", "Count"} <= flagged
    assert not {"Softmax", "Sigmoid", "Mul", "Div", "Clip"} & flagged
