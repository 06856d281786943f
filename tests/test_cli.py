"""The command line as a user meets it: exit codes, stdout, stderr, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS, ROOT

import engine

SPECS = sorted(GRAPHS.glob("*.yaml"))


def engine_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)  # a hang guard, not a speed limit


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_run_every_example_graph(spec: Path) -> None:
    result = engine_cli("run", str(spec))
    assert result.returncode == 0, result.stderr
    assert "gradients (d loss / d tensor)" in result.stdout
    # nothing was fed: one line names every input, which took its init
    inputs = [name for name, value in engine.load(spec).values.items() if value.kind == "input"]
    many = len(inputs) > 1
    expected = f"note: input{'s' if many else ''} {', '.join(inputs)} took " \
               f"{'their' if many else 'its'} init because nothing was fed (feed " \
               f"{'them' if many else 'it'} with --feed NAME=FILE)\n" if inputs else ""
    assert result.stderr == expected


def test_run_names_only_the_inputs_that_were_not_fed(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((4, 13)))
    result = engine_cli("run", str(GRAPHS / "mlp.yaml"), "--feed", f"x={tmp_path / 'x.npy'}",
                        "--json")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # stdout stays one JSON document
    assert result.stderr == ("note: input y took its init because nothing was fed (feed it "
                             "with --feed NAME=FILE)\n")
    np.save(tmp_path / "y.npy", np.eye(3)[[0, 1, 2, 0]])
    result = engine_cli("run", str(GRAPHS / "mlp.yaml"), "--feed", f"x={tmp_path / 'x.npy'}",
                        "--feed", f"y={tmp_path / 'y.npy'}")
    assert result.returncode == 0 and result.stderr == ""


def test_an_integer_label_csv_feeds_an_int64_input(tmp_path: Path) -> None:
    (tmp_path / "y.csv").write_text("digit\n3\n1\n0\n")
    np.save(tmp_path / "x.npy", np.zeros((3, 64)))
    feeds = ("--feed", f"x={tmp_path / 'x.npy'}", "--feed", f"y={tmp_path / 'y.csv'}")
    result = engine_cli("run", str(GRAPHS / "digits.yaml"), *feeds, "--json")
    assert result.returncode == 0, result.stderr
    # zero features and zero biases give logits 0: each probability is 1/10, the NLL log(10)
    assert json.loads(result.stdout)["loss"] == pytest.approx(np.log(10))
    (tmp_path / "y.csv").write_text("digit\n3.5\n1\n0\n")
    result = engine_cli("run", str(GRAPHS / "digits.yaml"), *feeds)
    assert result.returncode == 1
    assert "declared dtype int64, fed float64" in result.stderr


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_run_json_is_one_document_with_outputs_loss_and_grads(spec: Path) -> None:
    result = engine_cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"outputs", "loss", "grads"}
    assert isinstance(document["loss"], float)
    assert document["grads"]


def test_softmax_json_gradient_is_p_minus_y() -> None:
    document = json.loads(engine_cli("run", "graphs/softmax.yaml", "--json").stdout)
    p = np.array(document["outputs"]["softmax"])
    grad = np.array(document["grads"]["x"])
    y = p - grad  # the gradient of NLL(sum) through softmax is p - y, so this must be one-hot
    np.testing.assert_allclose(np.sort(y, axis=1), np.tile([0.0, 0.0, 1.0], (5, 1)), atol=1e-12)
    assert document["loss"] == pytest.approx(-np.log(p[np.round(y).astype(bool)]).sum(), rel=1e-12)


def test_feed_npy_csv_and_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 3))
    y = np.eye(3)[[0, 1, 2, 1, 0]]
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",", header="a,b,c", comments="")
    np.savez(tmp_path / "both.npz", x=x, y=y)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    for feeds in ([f"x={tmp_path / 'x.npy'}", f"y={tmp_path / 'y.csv'}"],
                  [f"x={tmp_path / 'both.npz'}", f"y={tmp_path / 'both.npz'}"]):
        args = [a for feed in feeds for a in ("--feed", feed)]
        result = engine_cli("run", "graphs/softmax.yaml", "--json", *args)
        assert result.returncode == 0, result.stderr
        np.testing.assert_allclose(json.loads(result.stdout)["grads"]["x"], p - y, atol=1e-12)


def test_seed_changes_default_inputs() -> None:
    a = json.loads(engine_cli("run", "graphs/softmax.yaml", "--json", "--seed", "1").stdout)
    b = json.loads(engine_cli("run", "graphs/softmax.yaml", "--json", "--seed", "2").stdout)
    c = json.loads(engine_cli("run", "graphs/softmax.yaml", "--json", "--seed", "1").stdout)
    assert a == c and a != b


def test_save_writes_outputs_and_grads(tmp_path: Path) -> None:
    target = tmp_path / "result.npz"
    result = engine_cli("run", "graphs/mlp.yaml", "--save", str(target))
    assert result.returncode == 0, result.stderr
    with np.load(target) as saved:
        assert set(saved.files) == {"outputs/probs", "outputs/loss", "grads/w1", "grads/b1",
                                    "grads/w2", "grads/b2"}
        assert saved["grads/b1"].shape == (1, 10)
        np.testing.assert_allclose(saved["outputs/probs"].sum(axis=1), 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["result.npz"]  # no temporary left behind


def test_bad_spec_exits_1_with_located_errors_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnodes:\n  e: {op: Exp, inputs: [x]}\n  f: {op: Nope, inputs: []}\n")
    result = engine_cli("run", str(bad))
    assert result.returncode == 1
    assert f"{bad}:4:7: nodes.f.op: unknown op 'Nope'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(("args", "message"), [
    (["run", "graphs/softmax.yaml", "--feed", "x=missing.npy"], "missing.npy: no such file"),
    (["run", "graphs/softmax.yaml", "--feed", "q=graphs/softmax.yaml"], "unknown data format"),
    (["run", "graphs/softmax.yaml", "--save", "no/such/dir/out.npz"], "does not exist"),
])
def test_bad_data_arguments_exit_1_without_traceback(args: list[str], message: str) -> None:
    result = engine_cli(*args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_csv_names_row_and_column(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text("a,b,c\n1,2,3\n4,five,6\n7,8,9\n1,2,3\n")
    result = engine_cli("run", "graphs/softmax.yaml", "--feed", f"x={data}")
    assert result.returncode == 1
    assert f"{data}:3: column 2 ('b'): 'five' is not a number" in result.stderr
    data.write_text("1,2,3\n4,5\n")
    result = engine_cli("run", "graphs/softmax.yaml", "--feed", f"x={data}")
    assert f"{data}:2: row has 2 columns, expected 3" in result.stderr


@pytest.mark.parametrize("args", [[], ["run"], ["fly", "x.yaml"], ["run", "x.yaml", "--feed", "x"],
                                  ["run", "graphs/softmax.yaml", "--seed", "abc"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = engine_cli(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_help_describes_run() -> None:
    result = engine_cli("run", "--help")
    assert result.returncode == 0
    for option in ("--feed", "--seed", "--json", "--save"):
        assert option in result.stdout
