"""No silent defaults in Python: ``defaulted``, ``strict_feeds`` and ``load_params``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.cli.main import main
from engine.errors import DataError

MLP = GRAPHS / "mlp.yaml"
WINE = GRAPHS / "data" / "wine.csv"


def test_defaulted_names_the_inputs_that_took_their_init() -> None:
    ex = engine.Executor(engine.load(MLP))
    ex.forward()
    assert ex.defaulted == ("x", "y")
    ex.forward({"x": np.ones((4, 13))})
    assert ex.defaulted == ("y",)
    ex.forward({"x": np.ones((4, 13)), "y": np.eye(3)[[0, 1, 2, 0]]})
    assert ex.defaulted == ()


def test_strict_feeds_refuses_any_unfed_input() -> None:
    ex = engine.Executor(engine.load(MLP), strict_feeds=True)
    with pytest.raises(DataError, match=r"inputs 'x', 'y' of graph 'mlp' were not fed"):
        ex.forward()
    with pytest.raises(DataError, match=r"input 'y' of graph 'mlp' was not fed"):
        ex.forward({"x": np.ones((4, 13))})
    ex.forward({"x": np.ones((4, 13)), "y": np.eye(3)[[0, 1, 2, 0]]})
    assert ex.loss is not None


def test_load_params_applies_the_checkpoint_and_its_standardisation(tmp_path: Path) -> None:
    save = tmp_path / "p.npz"
    assert main(["train", str(MLP), "--epochs", "3", "--save", str(save)]) == 0
    table = np.loadtxt(WINE, delimiter=",", skiprows=1)
    x, labels = table[:, :-1], table[:, -1].astype(int)
    ex = engine.Executor(engine.load(MLP))
    ex.load_params(save)
    probs = ex.forward({"x": x, "y": np.eye(3)[labels]})["probs"]
    # by hand, from the arrays in the file: standardise, two dense layers, softmax
    with np.load(save) as stored:
        p = {k.removeprefix("params/"): stored[k] for k in stored.files
             if k.startswith("params/")}
        z = (x - stored["scale/x/mean"]) / stored["scale/x/std"]
    logits = np.maximum(z @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    assert ex.loss == pytest.approx(-np.mean(np.log(expected[np.arange(178), labels])))


def test_load_params_refuses_a_checkpoint_of_another_graph(tmp_path: Path) -> None:
    save = tmp_path / "p.npz"
    assert main(["train", str(MLP), "--epochs", "1", "--save", str(save)]) == 0
    ex = engine.Executor(engine.load(GRAPHS / "regression.yaml"))
    with pytest.raises(DataError, match=r"parameter 'w1' has shape \[13, 10\], but .* "
                                        r"declares \[3, 32\]"):
        ex.load_params(save)
