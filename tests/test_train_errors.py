"""Bad training data and bad train: sections: located messages, exit 1, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from engine.cli.main import main

SPEC = """\
name: tiny
inputs:
  x: {shape: [batch, 2]}
  y: {shape: [batch, 2]}
parameters:
  w: {shape: [2, 2], init: zeros}
nodes:
  logits: {op: MatMul, inputs: [x, w]}
  probs:  {op: Softmax, inputs: [logits]}
  loss:   {op: NLL, inputs: [probs, y], reduction: mean}
loss: loss
train:
  data: data.csv
  inputs:
    x: {columns: [a, b]}
    y: {label: label}
  epochs: 1
"""

GOOD_ROWS = "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(10))


def write(tmp_path: Path, csv: str, spec: str = SPEC) -> Path:
    (tmp_path / "data.csv").write_text(csv)
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    return path


def errors_of(capsys: pytest.CaptureFixture[str], spec: Path, *args: str) -> str:
    assert main(["train", str(spec), *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_good_data_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(write(tmp_path, GOOD_ROWS))]) == 0
    assert "8 training rows, 2 validation rows" in capsys.readouterr().out


@pytest.mark.parametrize(("csv", "expected"), [
    (GOOD_ROWS + "1,2\n", "data.csv:12: row has 2 columns, expected 3"),
    ("a,b,label\n1,2,0\n\n3,x,1\n", "data.csv:4: column 2 ('b'): 'x' is not a number"),
    ("a,b,label\n1,2,0\n3,4,2\n", "data.csv:3: column 3 ('label'): label 2 is not a class "
                                  "index 0..1"),
    ("a,b,label\n1,2,0\n3,4,0.5\n", "data.csv:3: column 3 ('label'): label 0.5 is not a class"),
    ("a,b,label\n1,2,0\n", "data.csv: 1 data row, too few for a validation split of 0.2"),
    ("a,b,label\n", "data.csv: the file holds a header but no data rows"),
    ("a,b,label\n1,2,0\n3,nan,1\n", "data.csv:3: column 2 ('b'): nan is not a finite number"),
    ("a,b,label\n1,2,0\n3,4,nan\n", "data.csv:3: column 3 ('label'): label nan is not a class"),
])
def test_data_errors_name_file_row_and_column(tmp_path: Path, csv: str, expected: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    err = errors_of(capsys, write(tmp_path, csv))
    assert expected in err
    assert str(tmp_path) in err


def test_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD_ROWS)
    err = errors_of(capsys, spec, "--data", str(tmp_path / "nothere.csv"))
    assert f"--data {tmp_path / 'nothere.csv'}: no such file" in err
    (tmp_path / "data.csv").unlink()
    err = errors_of(capsys, spec)
    assert (f"spec.yaml:13:3: train.data: train data: no such file 'data.csv' (looked for "
            f"'{tmp_path / 'data.csv'}')") in err


def test_unknown_column_is_located_in_the_spec_with_did_you_mean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD_ROWS, SPEC.replace("columns: [a, b]", "columns: [a, bb]"))
    err = errors_of(capsys, spec)
    assert "spec.yaml:15:" in err
    assert "train.inputs.x.columns[1]" in err
    assert "has no column 'bb' (did you mean 'b'?)" in err


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  epochs: 1", "  epoch: 1", "spec.yaml:17:3: train.epoch: unknown key 'epoch' (did you "
                                  "mean 'epochs'?)"),
    ("  epochs: 1", "  optimizer: {name: adam, betta1: 0.8}",
     "train.optimizer.betta1: unknown key 'betta1' (did you mean 'beta1'"),
    ("  epochs: 1", "  optimizer: nadam", "train.optimizer: expected 'sgd', 'momentum', "
                                          "'adam' or 'adamw', found 'nadam'"),
    ("  epochs: 1", "  optimizer: {name: sgd, momentum: 0.9}",
     "momentum is not a coefficient of sgd"),
    ("y: {label: label}", "y: {label: label, standardise: true}",
     "unknown key 'standardise' (did you mean 'standardize'?)"),
    ("y: {label: label}", "y: {columns: [label], label: label}",
     "give exactly one of columns (CSV or .npy feature columns), array (an .npz or .zarr "
     "array) or label (class indices); found columns, label"),
    ("y: {label: label}", "yy: {label: label}",
     "train.inputs.yy: 'yy' is not an input of the graph (did you mean 'y'?)"),
    ("    y: {label: label}\n", "", "input 'y' has the batch axis 'batch' but no data"),
    ("columns: [a, b]", "columns: 5",
     "train.inputs.x.columns: expected a list of columns (names or 0-based indices) or 'rest', "
     "found 5"),
    ("  epochs: 1", "  batch_size: 0", "train.batch_size: expected a number greater than 0, "
                                       "found 0"),
    ("columns: [a, b]", "columns: [a]",
     "input 'x' is declared [batch, 2], so it takes 2 columns; found 1"),
])
def test_train_section_errors_are_located(tmp_path: Path, old: str, new: str, expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert old in SPEC
    err = errors_of(capsys, write(tmp_path, GOOD_ROWS, SPEC.replace(old, new)))
    assert expected in err, err


def test_a_spec_without_train_section(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD_ROWS, SPEC.split("train:")[0])
    assert "no data to train on: set train.data in the spec or pass --data FILE" in \
        errors_of(capsys, spec)


def test_no_traceback_from_the_real_command(tmp_path: Path) -> None:
    spec = write(tmp_path, "a,b,label\n" + "1,2,0\n3,4,7\n" * 2)
    result = subprocess.run([sys.executable, "-m", "engine", "train", str(spec)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "data.csv:3: column 3 ('label'): label 7 is not a class index 0..1" in result.stderr


def test_integer_labels_feed_an_int64_target(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPEC.replace("y: {shape: [batch, 2]}", "y: {shape: [batch], dtype: int64}")
    assert main(["train", str(write(tmp_path, GOOD_ROWS, spec)), "--json"]) == 0
    assert '"val_accuracy"' in capsys.readouterr().out


def test_no_validation_split_gives_null_validation_metrics(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(write(tmp_path, GOOD_ROWS)), "--val-split", "0", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["train_rows"] == 10 and document["val_rows"] == 0
    assert document["val_loss"] is None and document["val_accuracy"] is None
    assert document["train_accuracy"] is not None


def test_a_graph_that_is_not_a_classifier_has_no_accuracy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPEC.replace("op: NLL, inputs: [probs, y], reduction: mean",
                        "op: Mean, inputs: [sq]").replace(
        "  probs:  {op: Softmax, inputs: [logits]}",
        "  diff:   {op: Sub, inputs: [logits, y]}\n  sq:     {op: Mul, inputs: [diff, diff]}")
    spec = spec.replace("y: {label: label}", "y: {columns: [a, label]}")
    assert main(["train", str(write(tmp_path, GOOD_ROWS, spec)), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["val_accuracy"] is None and document["train_accuracy"] is None
    assert document["val_loss"] is not None


NPZ_SPEC = SPEC.replace("data: data.csv", "data: data.npz").replace(
    "x: {columns: [a, b]}", "x: {array: features, standardize: true}").replace(
    "y: {label: label}", "y: {label: labels}")


def write_npz(tmp_path: Path, spec: str = NPZ_SPEC, **arrays: np.ndarray) -> Path:
    np.savez(tmp_path / "data.npz", **arrays)
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    return path


def test_npz_arrays_feed_inputs_whole(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 2)) * 50 + 100
    labels = (features[:, 0] > 100).astype(np.int64)
    spec = write_npz(tmp_path, features=features, labels=labels)
    assert main(["train", str(spec), "--json", "--epochs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["train_rows"] == 16
    from engine.spec.loader import load
    from engine.train.data import load_dataset

    graph = load(spec)
    dataset = load_dataset(graph, graph.spec.train, tmp_path / "data.npz", seed=0)
    np.testing.assert_allclose(dataset.train["x"].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_array_equal(
        np.sort(np.argmax(np.concatenate([dataset.train["y"], dataset.val["y"]]), axis=1)),
        np.sort(labels))


@pytest.mark.parametrize(("spec", "arrays", "expected"), [
    (NPZ_SPEC, {"feature": np.zeros((4, 2)), "labels": np.zeros(4)},
     "train.inputs.x.array: "),
    (NPZ_SPEC, {"feature": np.zeros((4, 2)), "labels": np.zeros(4)},
     "has no array 'features' (did you mean 'feature'?)"),
    (NPZ_SPEC, {"features": np.zeros((4, 2)), "labels": np.zeros(5)},
     "the arrays that feed the inputs have different numbers of rows (features: 4, labels: 5)"),
    (NPZ_SPEC, {"features": np.zeros((4, 3)), "labels": np.zeros(4)},
     "input 'x' is declared [batch, 2], but array 'features' of"),
    (NPZ_SPEC, {"features": np.zeros((4, 2)), "labels": np.array([0, 1, 2, 0])},
     "array 'labels', row 2 (0-based): label 2 is not a class index 0..1"),
    (NPZ_SPEC, {"features": np.array([[0, 1], [2, np.inf]]), "labels": np.zeros(2)},
     "array 'features', row 1 (0-based), at index [1, 1]: inf is not a finite number"),
    (NPZ_SPEC.replace("{array: features, standardize: true}", "{columns: [0, 1]}"),
     {"features": np.zeros((4, 2)), "labels": np.zeros(4)},
     "is an .npz file, whose inputs take whole arrays: write x: {array: NAME}"),
])
def test_npz_errors(tmp_path: Path, spec: str, arrays: dict, expected: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    err = errors_of(capsys, write_npz(tmp_path, spec, **arrays))
    assert expected in err, err


def test_array_needs_npz_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPEC.replace("x: {columns: [a, b]}", "x: {array: features}")
    assert "is a CSV file, whose inputs take columns" in \
        errors_of(capsys, write(tmp_path, GOOD_ROWS, spec))
