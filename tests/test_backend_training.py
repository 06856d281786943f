"""Training, evaluation and prediction on every installed array library, against NumPy.

``engine train --backend X`` keeps the parameters and the optimizer's state as
NumPy arrays and runs each step's forward and backward on X; after a few epochs
from the same seed it must hold NumPy's parameters (to 1e-9 relative), and eval
and predict must print NumPy's numbers.  On Dask each step is one task graph,
computed once.  A library that is not installed skips its tests, with the pip
command as the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

from engine.cli.main import main
from engine.runtime.backends import get_backend, install_hint, installed
from engine.spec.loader import load
from engine.train.checkpoint import load_checkpoint
from engine.train.data import load_dataset
from engine.train.loop import NoProgress, Trainer

OTHERS = ("torch", "jax", "dask")


def _needs(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not installed(name), reason=f"backend {name} is not installed: "
                                                          f"{install_hint(name)}")


needs_dask = _needs("dask")

#: The command-line options that choose each backend: Dask also with small chunks, so that
#: a batch really is split and its gradients are summed across the chunks.
CHOICES = [*(pytest.param(("--backend", name), id=name, marks=_needs(name)) for name in OTHERS),
           pytest.param(("--backend", "dask", "--chunk-rows", "5"), id="dask-chunked",
                        marks=needs_dask)]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _train(capsys: pytest.CaptureFixture[str], save: Path, *options: str) -> dict:
    """Three epochs of graphs/mlp.yaml (mini-batches of 16 unless ``options`` say else)."""
    out = _cli(capsys, "train", str(GRAPHS / "mlp.yaml"), "--epochs", "3", "--save", str(save),
               "--json", *options)
    return json.loads(out)


def _same_parameters(got: Path, want: Path) -> None:
    got_params, want_params = load_checkpoint(got).params, load_checkpoint(want).params
    assert got_params.keys() == want_params.keys()
    for name, array in want_params.items():
        np.testing.assert_allclose(got_params[name], array, rtol=1e-9, atol=1e-12,
                                   err_msg=name)


FULL = ("--batch-size", "1000")  # more than the 142 training rows: one step an epoch


@pytest.fixture(scope="module")
def on_numpy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """NumPy's parameters and summary after three epochs, mini-batch and full-batch."""
    folder = tmp_path_factory.mktemp("numpy")
    saved = {}
    for kind, options in (("mini", ()), ("full", FULL)):
        path = folder / f"{kind}.npz"
        saved[kind] = (path, _train_quietly(path, *options))
    return saved


def _train_quietly(save: Path, *options: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(GRAPHS / "mlp.yaml"), "--epochs", "3", "--save", str(save),
                     "--json", *options])
    assert code == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize("batches", ["mini", "full"])
def test_train_reaches_numpys_parameters(tmp_path: Path, capsys, on_numpy: dict,
                                         batches: str, choice: tuple[str, ...]) -> None:
    got = _train(capsys, tmp_path / "p.npz", *choice, *(FULL if batches == "full" else ()))
    want_params, want = on_numpy[batches]
    _same_parameters(tmp_path / "p.npz", want_params)
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key


@_needs("jax")
def test_jax_training_with_dropout_reaches_numpys_parameters(tmp_path: Path, capsys) -> None:
    """mlp.yaml with Dropout after the hidden layer: each compiled step drops the elements
    NumPy's step drops (masks drawn per step on the host), so three epochs end at NumPy's
    parameters, and the compiled step was traced once per batch shape, not per step."""
    text = (GRAPHS / "mlp.yaml").read_text()
    text = text.replace("  z2:     {op: MatMul, inputs: [a1, w2]}",
                        "  dropped: {op: Dropout, inputs: [a1], rate: 0.3}\n"
                        "  z2:     {op: MatMul, inputs: [dropped, w2]}")
    text = text.replace("data: data/wine.csv", f"data: {GRAPHS / 'data' / 'wine.csv'}")
    assert "Dropout" in text
    spec = tmp_path / "mlp_dropout.yaml"
    spec.write_text(text)
    graph = load(spec)
    config = graph.spec.train.model_copy(update={"epochs": 3})
    dataset = load_dataset(graph, config, GRAPHS / "data" / "wine.csv", seed=0)
    on_numpy = Trainer(graph, config, dataset, seed=0)
    on_jax = Trainer(graph, config, dataset, seed=0, backend=get_backend("jax"))
    want, got = on_numpy.run(NoProgress()), on_jax.run(NoProgress())
    for name, array in on_numpy.params.items():
        np.testing.assert_allclose(on_jax.params[name], array, rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    assert got.history["train_loss"] == pytest.approx(want.history["train_loss"], rel=1e-9)
    compiled = on_jax.executor._jit
    assert compiled is not None
    # 142 training rows in batches of 16: a full and a last batch; then the measures of the
    # training and validation splits (forward alone): four traces in all
    assert compiled.traces == 4


@pytest.mark.parametrize("choice", CHOICES)
def test_eval_and_predict_print_numpys_numbers(tmp_path: Path, capsys,
                                               on_numpy: dict,
                                               choice: tuple[str, ...]) -> None:
    params, data = str(on_numpy["mini"][0]), str(GRAPHS / "data" / "wine.csv")
    spec = str(GRAPHS / "mlp.yaml")
    options = choice
    want = json.loads(_cli(capsys, "eval", spec, "--params", params, "--data", data, "--json"))
    got = json.loads(_cli(capsys, "eval", spec, "--params", params, "--data", data, "--json",
                          *options))
    assert got["rows"] == want["rows"] == 178
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-10)
    assert got["accuracy"] == want["accuracy"]
    _cli(capsys, "predict", spec, "--params", params, "--data", data, "-o",
         str(tmp_path / "want.npy"))
    _cli(capsys, "predict", spec, "--params", params, "--data", data, "-o",
         str(tmp_path / "got.npy"), *options)
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), np.load(tmp_path / "want.npy"),
                               rtol=1e-10, atol=1e-14)


@needs_dask
def test_each_dask_step_is_one_graph_computed_once() -> None:
    """A step's loss and gradients come back from one Dask compute, and so does each
    measurement (loss, predictions and labels of a split): no value is computed twice."""
    from dask.callbacks import Callback

    graph = load(GRAPHS / "mlp.yaml")
    config = graph.spec.train.model_copy(update={"epochs": 1, "batch_size": 50})
    dataset = load_dataset(graph, config, GRAPHS / "data" / "wine.csv", seed=0)
    trainer = Trainer(graph, config, dataset, seed=0, backend=get_backend("dask", chunk_rows=7))
    computes: list[int] = []
    with Callback(start=lambda dsk: computes.append(len(dsk))):
        trainer.run(NoProgress())
    steps = -(-dataset.n_train // 50)
    assert len(computes) == steps + 2  # the steps, then the train and validation measures
    assert all(isinstance(p, np.ndarray) for p in trainer.params.values())
