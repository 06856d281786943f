"""The training examples reach their targets: digits >= 0.97 test accuracy, the regression
near its known noise floor; the reported numbers are recomputed from ``predict``'s output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

from engine.cli.main import main

DATA = GRAPHS / "data"


def train(capsys: pytest.CaptureFixture[str], spec: Path, save: Path) -> dict:
    capsys.readouterr()
    assert main(["train", str(spec), "--json", "--save", str(save)]) == 0
    return json.loads(capsys.readouterr().out)


def predict(spec: Path, params: Path, data: Path, out: Path) -> np.ndarray:
    assert main(["predict", str(spec), "--params", str(params), "--data", str(data),
                 "-o", str(out)]) == 0
    return np.load(out)


def test_digits_reaches_97_percent_test_accuracy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, save = GRAPHS / "digits.yaml", tmp_path / "digits.npz"
    doc = train(capsys, spec, save)
    assert doc["test_rows"] == 360 and doc["train_rows"] + doc["val_rows"] == 1437
    assert doc["test_accuracy"] >= 0.97
    # the parameters the test was measured with: the best epoch's, kept beside the last
    best = tmp_path / "digits.best.npz"
    assert best.is_file() or doc["best_epoch"] == doc["epochs"]
    params = best if best.is_file() else save
    test = np.loadtxt(DATA / "digits_test.csv", delimiter=",", skiprows=1)
    probs = predict(spec, params, DATA / "digits_test.csv", tmp_path / "probs.npy")
    labels = test[:, -1].astype(int)
    assert probs.shape == (360, 10)
    assert doc["test_accuracy"] == np.mean(probs.argmax(axis=1) == labels)
    assert doc["test_loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(360), labels])),
                                             rel=1e-9)


def test_regression_gets_near_its_noise_floor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, save = GRAPHS / "regression.yaml", tmp_path / "regression.npz"
    doc = train(capsys, spec, save)
    noise = 0.1  # graphs/data/make_regression.py
    test = np.loadtxt(DATA / "regression_test.csv", delimiter=",", skiprows=1)
    variance = float(np.var(test[:, -1]))  # the MSE of always predicting the mean
    assert doc["test_mse"] < 2 * noise ** 2 < variance / 40
    assert doc["test_mae"] < 1.4 * noise * math.sqrt(2 / math.pi)
    pred = predict(spec, save, DATA / "regression_test.csv", tmp_path / "pred.npy")
    assert pred.shape == (200, 1)
    error = pred[:, 0] - test[:, -1]
    assert doc["test_mse"] == pytest.approx(np.mean(error ** 2), rel=1e-9)
    assert doc["test_mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-9)
    assert doc["test_loss"] == pytest.approx(doc["test_mse"], rel=1e-12)  # the loss is the MSE
