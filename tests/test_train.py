"""``engine train``: batches, determinism, resume, checkpoints, interrupts, the Wine example."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS, ROOT

from engine.cli.main import main
from engine.runtime.feeds import tensor_rng
from engine.spec.loader import load
from engine.train.checkpoint import load_checkpoint
from engine.train.data import load_dataset
from engine.train.loop import NoProgress, Trainer, batches

MLP = str(GRAPHS / "mlp.yaml")


def train_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code = main(["train", MLP, "--json", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_batches_cover_every_row_once_per_epoch() -> None:
    order = np.random.default_rng(1).permutation(10)
    parts = list(batches(10, 3, order))
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(10))


def test_the_loop_feeds_every_training_row_once_per_epoch() -> None:
    graph = load(MLP)
    config = graph.spec.train.model_copy(update={"batch_size": 16})
    dataset = load_dataset(graph, config, graph.base_dir / "data" / "wine.csv", seed=0)
    trainer = Trainer(graph, config, dataset, seed=0)
    fed: list[np.ndarray] = []
    forward = trainer.executor.forward
    trainer.executor.forward = lambda feeds: (fed.append(feeds["x"]), forward(feeds))[1]
    for _ in range(2):
        fed.clear()
        assert trainer.train_epoch(NoProgress(), lambda: False)
        rows = np.concatenate(fed)
        assert [len(f) for f in fed] == [16] * 8 + [142 - 128]
        # the same rows as the training split, each once, in a shuffled order
        as_set = np.sort(rows.view([("", rows.dtype)] * rows.shape[1]), axis=0)
        expected = np.sort(dataset.train["x"].view([("", rows.dtype)] * rows.shape[1]), axis=0)
        np.testing.assert_array_equal(as_set, expected)
        assert not np.array_equal(rows, dataset.train["x"])


def test_wine_reaches_95_percent_validation_accuracy_deterministically(
        capsys: pytest.CaptureFixture[str]) -> None:
    first = train_json(capsys)
    second = train_json(capsys)
    assert first["val_accuracy"] >= 0.95
    assert first["epochs"] == 30 and first["val_rows"] == 36 and first["train_rows"] == 142
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    other_seed = train_json(capsys, "--seed", "1")
    assert other_seed["history"] != first["history"]


def test_standardisation_uses_training_rows_only() -> None:
    graph = load(MLP)
    dataset = load_dataset(graph, graph.spec.train, GRAPHS / "data" / "wine.csv", seed=0)
    np.testing.assert_allclose(dataset.train["x"].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(dataset.train["x"].std(axis=0), 1, atol=1e-12)
    assert np.abs(dataset.val["x"].mean(axis=0)).max() > 0.01  # not refitted on validation
    raw = np.loadtxt(GRAPHS / "data" / "wine.csv", delimiter=",", skiprows=1)
    mean, std = dataset.stats["x"]
    restored = dataset.val["x"] * std + mean
    assert all(any(np.allclose(r, row) for row in raw[:, :13]) for r in restored)
    labels = np.argmax(np.concatenate([dataset.train["y"], dataset.val["y"]]), axis=1)
    np.testing.assert_array_equal(np.bincount(labels), [59, 71, 48])


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, half = tmp_path / "whole.npz", tmp_path / "half.npz"
    straight = train_json(capsys, "--epochs", "4", "--save", str(whole))
    train_json(capsys, "--epochs", "2", "--save", str(half))
    assert load_checkpoint(half).epoch == 2
    resumed = train_json(capsys, "--epochs", "4", "--resume", str(half), "--save", str(half))
    a, b = load_checkpoint(whole), load_checkpoint(half)
    assert a.epoch == b.epoch == 4
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    for key in a.optimizer_state:
        np.testing.assert_array_equal(a.optimizer_state[key], b.optimizer_state[key])
    assert a.rng_state == b.rng_state
    assert straight["history"] == resumed["history"]


def test_resume_refuses_a_checkpoint_of_another_graph(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    train_json(capsys, "--epochs", "1", "--save", str(saved))
    spec = tmp_path / "wider.yaml"
    spec.write_text((GRAPHS / "mlp.yaml").read_text().replace("[13, 10]", "[13, 11]")
                    .replace("[1, 10]", "[1, 11]").replace("[10, 3]", "[11, 3]"))
    assert main(["train", str(spec), "--data", str(GRAPHS / "data" / "wine.csv"),
                 "--resume", str(saved)]) == 1
    assert "parameter 'w1' has shape [13, 10], but" in capsys.readouterr().err


def test_resume_refuses_another_optimizer(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    train_json(capsys, "--epochs", "1", "--save", str(saved))
    assert main(["train", MLP, "--resume", str(saved), "--optimizer", "sgd"]) == 1
    assert "trained with adam" in capsys.readouterr().err


def test_run_with_trained_params_matches_numpy_by_hand(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    train_json(capsys, "--epochs", "3", "--save", str(saved))
    raw = np.loadtxt(GRAPHS / "data" / "wine.csv", delimiter=",", skiprows=1)
    x, y = raw[:4, :13], np.eye(3)[raw[:4, 13].astype(int)]  # raw rows, as a user has them
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert main(["run", MLP, "--params", str(saved), "--feed", f"x={tmp_path / 'x.npy'}",
                 "--feed", f"y={tmp_path / 'y.npy'}", "--json"]) == 0
    probs = np.array(json.loads(capsys.readouterr().out)["outputs"]["probs"])
    checkpoint = load_checkpoint(saved)
    # the split is a permutation from the seed's "train/split" stream: the first 142 train
    order = tensor_rng(0, "train/split").permutation(178)
    train_rows = raw[order[:142], :13]
    mean, std = train_rows.mean(axis=0), train_rows.std(axis=0)
    np.testing.assert_allclose(checkpoint.scaling["x"][0], mean, rtol=1e-12)
    np.testing.assert_allclose(checkpoint.scaling["x"][1], std, rtol=1e-12)
    p = checkpoint.params
    logits = np.maximum((x - mean) / std @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)


def test_run_params_that_do_not_fit_the_graph(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    train_json(capsys, "--epochs", "1", "--save", str(saved))
    assert main(["run", str(GRAPHS / "softmax.yaml"), "--params", str(saved)]) == 1
    err = capsys.readouterr().err
    assert "does not fit" in err and "w1" in err


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.pyplot as plt

    picture = tmp_path / "loss.png"
    assert main(["train", MLP, "--epochs", "5", "--plot", str(picture)]) == 0
    assert "plotted the loss curve" in capsys.readouterr().out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = plt.imread(picture)
    assert image.shape[0] == 400 and image.shape[1] == 640
    assert main(["train", MLP, "--epochs", "1", "--plot", str(tmp_path / "loss.gif")]) == 2
    assert "must end in .png" in capsys.readouterr().err


def test_summary_names_losses_and_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", MLP, "--epochs", "2", "--optimizer", "momentum", "--lr", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "2 epochs of momentum (lr 0.05, batch size 16)" in out
    assert "142 training rows, 36 validation rows" in out
    assert "val   loss" in out and "accuracy" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--lr", "-1"], "train.lr: Input should be greater than 0"),
    (["--momentum", "0.5"], "momentum is not a coefficient of adam"),
    (["--val-split", "1.5"], "train.val_split"),
    (["--set", "inputs.x.standardise=true"], "standardise"),
    (["--set", "lr"], "expected FIELD=VALUE"),
    (["--optimizer", "rmsprop"], "invalid choice"),
])
def test_bad_overrides_are_usage_errors(args: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["train", MLP, *args])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def _cli(*args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_ctrl_c_stops_after_the_last_complete_epoch(tmp_path: Path) -> None:
    saved = tmp_path / "p.npz"
    process = _cli("train", MLP, "--epochs", "1000000", "--save", str(saved), "--json")
    deadline = time.monotonic() + 60
    while not saved.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    document = json.loads(out)
    assert document["interrupted"] is True
    assert 0 < document["epochs"] < 1000000
    assert f"stopped after epoch {document['epochs']} of 1000000" in err
    assert load_checkpoint(saved).epoch == document["epochs"]
    assert len(document["history"]["val_loss"]) == document["epochs"]


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from engine.train.checkpoint import Checkpoint, save_checkpoint
    path = sys.argv[1]
    i = 0
    while True:
        params = {"w": np.full(2_000_000, float(i))}
        save_checkpoint(path, Checkpoint(params, "sgd", {}, {"i": i}, i, 0, {}))
        if i == 0:
            print("ready", flush=True)
        i += 1
""")


@pytest.mark.parametrize("delay", [0.05, 0.31])
def test_a_kill_during_save_leaves_the_previous_checkpoint_readable(
        tmp_path: Path, delay: float) -> None:
    saved = tmp_path / "p.npz"
    process = subprocess.Popen([sys.executable, "-c", SAVER, str(saved)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    time.sleep(delay)
    process.kill()  # SIGKILL: no cleanup runs, perhaps in the middle of a write
    process.wait(timeout=30)
    checkpoint = load_checkpoint(saved)
    assert checkpoint.rng_state == {"i": checkpoint.epoch}
    np.testing.assert_array_equal(checkpoint.params["w"], np.full(2_000_000,
                                                                  float(checkpoint.epoch)))


HALF_WRITER = textwrap.dedent("""
    import io, sys, time
    import numpy as np
    import engine.io.atomic as atomic
    from engine.train.checkpoint import Checkpoint, save_checkpoint
    path = sys.argv[1]
    save_checkpoint(path, Checkpoint({"w": np.full(1000, 1.0)}, "sgd", {}, {}, 1, 0, {}))
    real = atomic.write_atomically

    def stall_halfway(target, write):
        def half(handle):
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            handle.write(data[:len(data) // 2])
            handle.flush()
            print("half", flush=True)
            time.sleep(60)
        real(target, half)

    atomic.write_atomically = stall_halfway
    save_checkpoint(path, Checkpoint({"w": np.full(1000, 2.0)}, "sgd", {}, {}, 2, 0, {}))
""")


def test_a_kill_in_the_middle_of_writing_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    saved = tmp_path / "p.npz"
    process = subprocess.Popen([sys.executable, "-c", HALF_WRITER, str(saved)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None and process.stdout.readline() == "half\n"
    process.kill()
    process.wait(timeout=30)
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # killed mid-write
    checkpoint = load_checkpoint(saved)
    assert checkpoint.epoch == 1
    np.testing.assert_array_equal(checkpoint.params["w"], np.full(1000, 1.0))


def test_saved_files_get_the_umask_mode_not_0600(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    umask = os.umask(0o022)
    try:
        train_json(capsys, "--epochs", "1", "--save", str(saved))
    finally:
        os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o644


def test_resuming_a_finished_run_trains_and_saves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done, other = tmp_path / "done.npz", tmp_path / "other.npz"
    first = train_json(capsys, "--epochs", "2", "--save", str(done))
    again = train_json(capsys, "--epochs", "2", "--resume", str(done), "--save", str(other))
    assert again["epochs"] == 2 and again["saved"] is None and not other.exists()
    assert again["val_loss"] == first["val_loss"]


def test_no_shuffle_visits_rows_in_file_order_of_the_split() -> None:
    graph = load(MLP)
    config = graph.spec.train.model_copy(update={"batch_size": 50, "shuffle": False})
    dataset = load_dataset(graph, config, GRAPHS / "data" / "wine.csv", seed=0)
    trainer = Trainer(graph, config, dataset, seed=0)
    fed: list[np.ndarray] = []
    forward = trainer.executor.forward
    trainer.executor.forward = lambda feeds: (fed.append(feeds["x"]), forward(feeds))[1]
    trainer.train_epoch(NoProgress(), lambda: False)
    np.testing.assert_array_equal(np.concatenate(fed), dataset.train["x"])


def test_the_epoch_benchmark_runs_and_checks_it_compares_equal_work() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_epoch.py"),
                             "--rounds", "1", "--epochs", "1"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ratio engine/NumPy: median" in result.stdout


def _train_on_a_terminal(*args: str) -> str:
    """Run engine train with stdout on a pseudo-terminal, as a user's shell has it."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "engine", "train", MLP, *args], cwd=ROOT,
                               stdout=follower, stderr=subprocess.PIPE,
                               env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    return b"".join(chunks).decode()


def test_a_terminal_gets_the_progress_bar_and_a_pipe_does_not(
        capsys: pytest.CaptureFixture[str]) -> None:
    shown = _train_on_a_terminal("--epochs", "3")
    assert "epoch 3/3" in shown and "val loss" in shown  # the bar's per-epoch lines
    assert "\x1b[" in shown  # terminal control sequences: a live bar
    assert main(["train", MLP, "--epochs", "3"]) == 0
    piped = capsys.readouterr().out
    assert "epoch 3/3" not in piped and "\x1b[" not in piped
    assert piped.splitlines()[0].startswith("mlp (")
    as_json = _train_on_a_terminal("--epochs", "2", "--json")  # --json: no bar, on a terminal too
    assert "\x1b[" not in as_json and json.loads(as_json)["epochs"] == 2


def test_summary_counts_each_position_of_a_sequence(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Per-token accuracy: 8 rows of 2 positions each, the first position right and the
    second wrong in every row, so 0.5 is 1 of each row's 2 predictions, counted."""
    x = np.zeros((8, 2, 3))
    x[:, :, 0] = 5.0  # every position predicts class 0, by a wide margin
    target = np.tile(np.array([0, 1]), (8, 1))
    np.savez(tmp_path / "tokens.npz", x=x, target=target)
    spec = tmp_path / "tokens.yaml"
    spec.write_text(textwrap.dedent("""
        name: tokens
        inputs:
          x: {shape: [batch, 2, 3]}
          target: {shape: [batch, 2], dtype: int64, init: {labels: {classes: 3}}}
        parameters:
          w: {shape: [3], init: zeros}
        nodes:
          logits: {op: Add, inputs: [x, w]}
          probs: {op: Softmax, inputs: [logits], axis: -1}
          loss: {op: NLL, inputs: [probs, target], reduction: mean}
        loss: loss
        train:
          data: tokens.npz
          inputs: {x: {array: x}, target: {array: target}}
          lr: 1.0e-9
          batch_size: 4
          epochs: 1
          val_split: 0.25
    """))
    assert main(["train", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "6 training rows, 2 validation rows" in out
    assert "accuracy 0.500 (6/12)" in out  # 6 training rows x 2 positions, half right
    assert "accuracy 0.500 (2/4)" in out
