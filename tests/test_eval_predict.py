"""``engine eval`` and ``engine predict``: a trained checkpoint on a data file, checked against
NumPy on the saved parameters; and their refusals (a missing feed, wrong columns, a checkpoint
of another graph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

from engine.cli.main import main
from engine.train.checkpoint import load_checkpoint

MLP = str(GRAPHS / "mlp.yaml")
WINE = GRAPHS / "data" / "wine.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "p.npz"
    assert main(["train", MLP, "--epochs", "5", "--save", str(path)]) == 0
    return path


def numpy_probs(params: Path, rows: np.ndarray) -> np.ndarray:
    """The lesson's MLP by hand, on features standardised with the checkpoint's statistics."""
    checkpoint = load_checkpoint(params)
    p = checkpoint.params
    mean, std = checkpoint.scaling["x"]
    x = (rows - mean) / std
    logits = np.maximum(x @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_eval_reports_loss_and_accuracy_of_the_checkpoint(
        trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["eval", MLP, "--params", str(trained), "--data", str(WINE), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    table = np.loadtxt(WINE, delimiter=",", skiprows=1)
    labels = table[:, -1].astype(int)
    probs = numpy_probs(trained, table[:, :-1])
    assert doc["rows"] == 178
    assert doc["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(178), labels])),
                                        rel=1e-10)
    assert doc["accuracy"] == np.mean(probs.argmax(axis=1) == labels)
    assert main(["eval", MLP, "--params", str(trained), "--data", str(WINE)]) == 0
    out = capsys.readouterr().out
    assert f"{round(doc['accuracy'] * 178)}/178" in out and "loss" in out


def test_predict_needs_no_labels_and_writes_csv_npy_npz(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = np.loadtxt(WINE, delimiter=",", skiprows=1)
    header = WINE.read_text().splitlines()[0].rsplit(",", 1)[0]  # without the class column
    features = tmp_path / "features.csv"
    np.savetxt(features, table[:, :-1], delimiter=",", header=header, comments="", fmt="%.17g")
    expected = numpy_probs(trained, table[:, :-1])
    capsys.readouterr()
    assert main(["predict", MLP, "--params", str(trained), "--data", str(features)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(f"probs_{i}" for i in range(3)) and len(lines) == 179
    np.testing.assert_allclose(np.loadtxt(lines[1:], delimiter=","), expected, rtol=1e-12)
    for suffix in (".csv", ".npy", ".npz"):
        out = tmp_path / f"out{suffix}"
        assert main(["predict", MLP, "--params", str(trained), "--data", str(features),
                     "--output", "logits", "--output", "probs", "-o", str(out)]
                    if suffix != ".npy" else
                    ["predict", MLP, "--params", str(trained), "--data", str(features),
                     "-o", str(out)]) == 0
        assert not list(tmp_path.glob(".out*"))  # no temporary file left behind
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-12)
    with np.load(tmp_path / "out.npz") as archive:
        assert sorted(archive.files) == ["logits", "probs"]
        np.testing.assert_allclose(archive["probs"], expected, rtol=1e-12)
    written = np.loadtxt(tmp_path / "out.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(written[:, 3:], expected, rtol=1e-12)


def test_eval_refuses_a_missing_feed_and_wrong_columns(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = np.loadtxt(WINE, delimiter=",", skiprows=1)
    header = WINE.read_text().splitlines()[0]
    no_labels = tmp_path / "no_labels.csv"
    np.savetxt(no_labels, table[:, :-1], delimiter=",", header=header.rsplit(",", 1)[0],
               comments="")
    capsys.readouterr()
    assert main(["eval", MLP, "--params", str(trained), "--data", str(no_labels)]) == 1
    err = capsys.readouterr().err
    assert "train.inputs.y.label" in err and "has no column 'class'" in err
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(WINE.read_text().replace("class", "cultivar", 1))
    assert main(["eval", MLP, "--params", str(trained), "--data", str(renamed)]) == 1
    assert "no column 'class'" in capsys.readouterr().err
    narrow = tmp_path / "narrow.csv"
    np.savetxt(narrow, table[:, 5:], delimiter=",", comments="",
               header=",".join(header.split(",")[5:]))
    assert main(["eval", MLP, "--params", str(trained), "--data", str(narrow)]) == 1
    assert "input 'x' is declared [batch, 13], so it takes 13 columns; found 8" in \
        capsys.readouterr().err


def test_predict_refuses_an_input_the_data_does_not_give(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "mlp.yaml"
    text = Path(MLP).read_text().replace("data: data/wine.csv", f"data: {WINE}")
    spec.write_text("\n".join(line for line in text.splitlines()
                              if not line.startswith("    x: {columns")) + "\n")
    npz = tmp_path / "rows.npz"
    np.savez(npz, x=np.zeros((2, 13)))
    capsys.readouterr()
    assert main(["predict", str(spec), "--params", str(trained), "--data", str(WINE)]) == 1
    err = capsys.readouterr().err
    assert "predict needs input 'x' ('probs' depends on it), but train.inputs maps no data " \
           "to it; nothing is defaulted here" in err
    no_train = tmp_path / "bare.yaml"
    no_train.write_text(text.split("\ntrain:")[0] + "\n")
    assert main(["predict", str(no_train), "--params", str(trained), "--data", str(npz)]) == 0
    np.savez(npz, z=np.zeros((2, 13)))
    assert main(["eval", str(no_train), "--params", str(trained), "--data", str(npz)]) == 1
    assert "eval needs inputs 'x', 'y'" in capsys.readouterr().err


def test_a_checkpoint_of_another_graph_is_refused(
        trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regression = str(GRAPHS / "regression.yaml")
    data = str(GRAPHS / "data" / "regression_test.csv")
    for verb in ("eval", "predict"):
        capsys.readouterr()
        assert main([verb, regression, "--params", str(trained), "--data", data]) == 1
        err = capsys.readouterr().err
        assert f"{trained}: parameter 'w1' has shape [13, 10], but" in err
        assert "declares [3, 32]" in err


def test_predict_usage_errors(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["predict", MLP, "--params", str(trained), "--data", str(WINE)]
    assert main([*args, "--output", "prob"]) == 2
    assert "--output prob: not a node" in capsys.readouterr().err
    assert main([*args, "--output", "probs", "--output", "logits", "-o", "x.npy"]) == 2
    assert "a .npy file holds one array" in capsys.readouterr().err
    assert main([*args, "-o", "x.txt"]) == 2
