"""The train: section's regularisation, schedules, early stopping, extra data files and
metrics, run through ``engine train`` on the Wine example and small generated files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.cli.main import main
from engine.spec.loader import load
from engine.train.checkpoint import load_checkpoint
from engine.train.data import load_dataset
from engine.train.loop import NoProgress, Trainer
from engine.train.schedule import learning_rate

MLP = str(GRAPHS / "mlp.yaml")
WINE = GRAPHS / "data" / "wine.csv"


def train_json(capsys: pytest.CaptureFixture[str], spec: str, *args: str) -> dict:
    code = main(["train", spec, "--json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def split_wine(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Wine's rows in three files (train 118, val 30, test 30), each with the header."""
    lines = WINE.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    order = np.random.default_rng(5).permutation(len(rows))
    parts = {"train": order[:118], "val": order[118:148], "test": order[148:]}
    paths = []
    for name, index in parts.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join([header, *(rows[i] for i in index)]) + "\n")
        paths.append(path)
    return paths[0], paths[1], paths[2]


def test_val_and_test_files_replace_the_split_and_report_test_metrics(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, val, test = split_wine(tmp_path)
    doc = train_json(capsys, MLP, "--data", str(train), "--val-data", str(val),
                     "--test-data", str(test), "--val-split", "0")
    assert (doc["train_rows"], doc["val_rows"], doc["test_rows"]) == (118, 30, 30)
    assert doc["test_accuracy"] >= 0.9 and doc["test_loss"] < 0.5
    # the test numbers are those of the trained parameters on the test rows, recomputed
    # here from the predicted probabilities with NumPy
    params = tmp_path / "p.npz"
    train_json(capsys, MLP, "--data", str(train), "--val-data", str(val), "--val-split", "0",
               "--save", str(params))
    assert main(["predict", MLP, "--params", str(params), "--data", str(test),
                 "-o", str(tmp_path / "probs.npy")]) == 0
    probs = np.load(tmp_path / "probs.npy")
    labels = np.loadtxt(test, delimiter=",", skiprows=1)[:, -1].astype(int)
    assert doc["test_accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
    nll = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
    assert doc["test_loss"] == pytest.approx(nll, rel=1e-10)


def test_val_data_and_an_explicit_split_are_refused_together(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, val, _ = split_wine(tmp_path)
    assert main(["train", MLP, "--val-data", str(val)]) == 2  # mlp.yaml sets val_split: 0.2
    assert "give val_data or val_split, not both" in capsys.readouterr().err


def test_the_schedule_sets_the_rate_of_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    graph = load(MLP)
    config = graph.spec.train.model_copy(update={
        "epochs": 3, "batch_size": 50,
        "schedule": graph.spec.train.schedule.model_validate(
            {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.001})})
    dataset = load_dataset(graph, config, WINE, seed=0)
    trainer = Trainer(graph, config, dataset, seed=0)
    seen: list[float] = []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda grads: (seen.append(trainer.optimizer.lr), step(grads))[1]
    trainer.run(NoProgress())
    # 142 rows in batches of 50: 3 steps an epoch; warmup over epoch 1 (0.01 * k/3), then
    # half a cosine over the remaining 2 epochs from 0.01 to 0.001, at t = 0, 1/3, 2/3, ...
    warm = [0.01 * k / 3 for k in (1, 2, 3)]
    cosine = [0.001 + 0.009 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    assert seen == pytest.approx(warm + cosine, rel=1e-12)
    assert learning_rate(config.schedule, 0.01, 3, 2, 2, 3) == pytest.approx(cosine[-1])


def test_early_stopping_keeps_the_best_epoch_beside_the_last(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save = tmp_path / "p.npz"
    # Adam at a high rate: the validation loss is lowest at epoch 4 and then wanders
    args = ("--optimizer", "adam", "--lr", "0.05", "--epochs", "40", "--patience", "3")
    doc = train_json(capsys, MLP, *args, "--save", str(save))
    history = doc["history"]["val_loss"]
    best = doc["best_epoch"]
    assert doc["stopped_early"] and doc["epochs"] == best + 3 < 40
    assert best == 1 + int(np.nanargmin(history))
    assert all(h >= history[best - 1] for h in history[best:])  # 3 epochs without improving
    last, kept = load_checkpoint(save), load_checkpoint(tmp_path / "p.best.npz")
    assert (last.epoch, kept.epoch) == (best + 3, best)
    # the kept parameters are those of a run that simply stops at the best epoch
    short = tmp_path / "short.npz"
    train_json(capsys, MLP, *args[:4], "--epochs", str(best), "--save", str(short))
    for name, array in load_checkpoint(short).params.items():
        np.testing.assert_array_equal(kept.params[name], array)


def test_a_resumed_early_stopping_run_equals_an_uninterrupted_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--optimizer", "adam", "--lr", "0.05", "--patience", "3")
    whole = train_json(capsys, MLP, *args, "--epochs", "40")
    save = tmp_path / "p.npz"
    train_json(capsys, MLP, *args, "--epochs", str(whole["best_epoch"] + 1), "--save", str(save))
    resumed = train_json(capsys, MLP, *args, "--epochs", "40", "--resume", str(save),
                         "--save", str(save))
    for doc in (whole, resumed):
        doc.pop("seconds"), doc.pop("saved")
    assert resumed == whole


def test_early_stopping_needs_validation_rows_and_a_measured_metric(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", MLP, "--patience", "2", "--val-split", "0"]) == 2
    assert "no validation rows" in capsys.readouterr().err
    assert main(["train", MLP, "--patience", "2", "--stop-metric", "val_mae"]) == 1
    err = capsys.readouterr().err
    assert "train.early_stopping.metric: 'val_mae' is not measured" in err


REGRESSION = """\
name: linear
inputs:
  x: {shape: [batch, 2]}
  y: {shape: [batch, 1]}
parameters:
  w: {shape: [2, 1], init: zeros}
  b: {shape: [1], init: zeros}
nodes:
  pred:  {op: Dense, inputs: [x, w, b]}
  err:   {op: Sub, inputs: [pred, y]}
  sq:    {op: Mul, inputs: [err, err]}
  mse:   {op: Mean, inputs: [sq]}
  wsq:   {op: Mul, inputs: [w, w]}
  l2:    {op: Sum, inputs: [wsq]}
  scale: {op: Mul, inputs: [l2, c]}
  loss:  {op: Add, inputs: [mse, scale]}
constants:
  c: {value: 0.5}
loss: loss
train:
  data: data.csv
  inputs:
    x: {columns: [a, b]}
    y: {columns: [t]}
  metrics: {prediction: pred, target: y, report: [mse, mae]}
  optimizer: adam
  lr: 0.05
  epochs: 5
  val_split: 0.25
"""


def test_metrics_measure_the_named_prediction_whatever_the_loss_adds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    t = x @ [2.0, -1.0] + 0.5
    np.savetxt(tmp_path / "data.csv", np.column_stack([x, t]), delimiter=",",
               header="a,b,t", comments="", fmt="%.17g")
    spec = tmp_path / "spec.yaml"
    spec.write_text(REGRESSION)
    save = tmp_path / "p.npz"
    doc = train_json(capsys, str(spec), "--save", str(save))
    assert set(doc) >= {"train_mse", "val_mse", "train_mae", "val_mae"}
    assert doc["train_accuracy"] is None
    # recomputed from the saved parameters on the validation rows, which the seeded split
    # chose: the loss adds 0.5 |w|^2, the reported MSE does not
    graph = load(spec)
    dataset = load_dataset(graph, graph.spec.train, tmp_path / "data.csv", seed=0)
    params = load_checkpoint(save).params
    pred = dataset.val["x"] @ params["w"] + params["b"]
    err = pred - dataset.val["y"]
    assert doc["val_mse"] == pytest.approx(np.mean(err ** 2), rel=1e-12)
    assert doc["val_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
    l2 = 0.5 * np.sum(params["w"] ** 2)
    assert doc["val_loss"] == pytest.approx(np.mean(err ** 2) + l2, rel=1e-12)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("prediction: pred", "prediction: prd",
     "train.metrics.prediction: 'prd' names no node of the graph (did you mean 'pred'?)"),
    ("target: y", "target: w", "train.metrics.target: 'w' is not an input of the graph"),
    ("report: [mse, mae]", "report: [accuracy]",
     "train.metrics.report: accuracy compares 'pred' [batch, 1] with 'y' [batch, 1]"),
])
def test_metrics_mistakes_are_located(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      old: str, new: str, expected: str) -> None:
    (tmp_path / "data.csv").write_text("a,b,t\n1,2,3\n4,5,6\n7,8,9\n1,1,1\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(REGRESSION.replace(old, new))
    assert main(["train", str(spec)]) == 1
    assert expected in capsys.readouterr().err


def test_training_steps_drop_and_measurements_do_not(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    spec = tmp_path / "mlp_dropout.yaml"
    text = Path(MLP).read_text().replace("data: data/wine.csv", "data: wine.csv")
    spec.write_text(text.replace(
        "  z2:     {op: MatMul, inputs: [a1, w2]}",
        "  d1:     {op: Dropout, inputs: [a1], rate: 0.5}\n"
        "  z2:     {op: MatMul, inputs: [d1, w2]}"))
    (tmp_path / "wine.csv").write_text(WINE.read_text())
    graph = load(spec)
    config = graph.spec.train.model_copy(update={"epochs": 2})
    dataset = load_dataset(graph, config, tmp_path / "wine.csv", seed=0)
    trainer = Trainer(graph, config, dataset, seed=0)
    modes: list[tuple[bool, int]] = []
    forward = trainer.executor.forward

    def spy(feeds: dict) -> dict:
        modes.append((trainer.executor.training, trainer.executor.step))
        return forward(feeds)

    trainer.executor.forward = spy
    outcome = trainer.run(NoProgress())
    steps = -(-142 // 16)
    # each epoch: its steps in training mode, numbered on from the last epoch's, then the
    # train and validation measurements in evaluation mode
    expected = [(True, s) for s in range(steps)] + [(False, steps - 1)] * 2 + \
        [(True, s) for s in range(steps, 2 * steps)] + [(False, 2 * steps - 1)] * 2
    assert modes == expected
    # the measured loss is the deterministic evaluation of the trained parameters
    plain = engine.Executor(graph)
    plain.parameters.update({k: np.array(v) for k, v in trainer.params.items()})
    plain.forward(dataset.val)
    assert outcome.last("val_loss") == plain.loss
