"""Bad command lines on every verb: exit 1 for a bad file or spec, 2 for a bad option value,
never a traceback, and a message that names the file and says what to do."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

from engine.cli.main import main
from engine.train.progress import format_metrics, split_metrics

SOFTMAX = str(GRAPHS / "softmax.yaml")
MLP = str(GRAPHS / "mlp.yaml")


def fails(capsys: pytest.CaptureFixture[str], code: int, *argv: str) -> str:
    """Run the CLI in this process (an uncaught exception would fail the test) and return
    stderr, after checking the exit code and that nothing reached stdout."""
    assert main(list(argv)) == code, capsys.readouterr()
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize("argv", [
    ["run", SOFTMAX, "--save", "{tmp}/out.txt"],
    ["train", MLP, "--save", "{tmp}/out.txt"],
    ["train", MLP, "--plot", "{tmp}/loss.gif"],
    ["explain", SOFTMAX, "--wrt", "x", "--max-paths", "0"],
    ["graph", SOFTMAX, "-o", "-", "--format", "png"],
    ["graph", SOFTMAX, "-o", "{tmp}/picture.jpg"],
])
def test_a_bad_option_value_is_a_usage_error_on_every_verb(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, 2, *(a.format(tmp=tmp_path) for a in argv))
    assert err.startswith("error: ") and err.count("\n") == 1
    assert any(option in err for option in ("--save", "--plot", "--max-paths", "-o "))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["schema", "-o", "{tmp}"],
    ["graph", SOFTMAX, "--format", "dot", "-o", "{tmp}"],
    ["run", SOFTMAX, "--save", "{tmp}/sub.npz"],
])
def test_an_output_path_that_is_a_folder(argv: list[str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub.npz").mkdir()
    target = str(tmp_path / "sub.npz") if "run" in argv else str(tmp_path)
    err = fails(capsys, 1, *(a.format(tmp=tmp_path) for a in argv))
    assert err == f"error: {target}: is a folder; name a file to write\n"


def test_an_output_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("")
    target = tmp_path / "notes.txt" / "schema.json"
    err = fails(capsys, 1, "schema", "-o", str(target))
    assert err == f"error: {target}: '{tmp_path / 'notes.txt'}' is a file, not a folder\n"


def test_an_output_folder_that_refuses_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    target = tmp_path / "schema.json"
    err = fails(capsys, 1, "schema", "-o", str(target))
    assert err == f"error: {target}: cannot write there (Permission denied)\n"


def test_a_failing_write_leaves_no_temporary_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.io.atomic.os.replace", full)
    err = fails(capsys, 1, "schema", "-o", str(tmp_path / "schema.json"))
    assert "cannot write there (No space left on device)" in err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_given_as_an_input_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, 1, "run", SOFTMAX, "--feed", f"x={tmp_path}")
    assert err == f"error: {tmp_path}: is a folder, not a file\n"
    err = fails(capsys, 1, "train", MLP, "--data", str(tmp_path))
    assert err == f"error: --data {tmp_path}: is a folder, not a file\n"


def test_an_npy_file_where_an_npz_archive_is_needed(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    single = tmp_path / "weights.npy"
    np.save(single, np.zeros((13, 10)))
    for option in ("--params", "--resume"):
        verb = "run" if option == "--params" else "train"
        err = fails(capsys, 1, verb, MLP, option, str(single))
        assert err.startswith(f"error: {single}: holds one array (.npy format), not an .npz")
        assert "numpy.savez" in err


def test_training_data_of_an_unknown_format(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "wine.parquet"
    data.write_bytes(b"PAR1")
    err = fails(capsys, 1, "train", MLP, "--data", str(data))
    assert err.startswith(f"error: {data}: unknown data format '.parquet'; a data file is a "
                          ".csv file (numbers, with a header row), a .npy table of numbers, or "
                          "an .npz file or .zarr store of named arrays")


def test_a_bad_output_path_is_found_before_training(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for option, name in (("--plot", "loss.png"), ("--save", "params.npz")):
        missing = tmp_path / "no" / name
        # 100,000 epochs would take minutes: failing at once shows nothing ran.
        err = fails(capsys, 1, "train", MLP, "--epochs", "100000", option, str(missing))
        assert err == f"error: {missing}: folder '{missing.parent}' does not exist\n"


WARNED = """\
name: warned
inputs:
  x: {shape: [2], init: ones, requires_grad: true}
  unused: {shape: [2], init: ones}
nodes:
  loss: {op: Sum, inputs: [x]}
loss: loss
"""


@pytest.mark.parametrize("verb", [["run"], ["graph", "--format", "dot", "-o", "-"],
                                  ["explain", "--wrt", "x"]])
def test_every_verb_that_loads_a_spec_prints_its_warnings_alike(
        verb: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "warned.yaml"
    spec.write_text(WARNED)
    assert main([verb[0], str(spec), *verb[1:], "--snippets", "never"]) == 0
    err = capsys.readouterr().err
    # run also says, in one line, which inputs took their init (nothing was fed)
    note = "note: inputs x, unused took their init because nothing was fed (feed them with " \
           "--feed NAME=FILE)\n" if verb[0] == "run" else ""
    assert err == (f"warning: {spec}:4:3: inputs.unused: input 'unused' is used by no node; "
                   "remove it or list it among a node's inputs\n") + note


DATA = GRAPHS / "data" / "wine.csv"


def mlp_with_extra_input(tmp_path: Path, declaration: str) -> Path:
    """graphs/mlp.yaml with one more input, ``extra``, declared at line 13."""
    spec = tmp_path / "mlp.yaml"
    spec.write_text(Path(MLP).read_text().replace("inputs:\n", f"inputs:\n  extra: {declaration}\n",
                                                   1))
    return spec


def test_an_input_train_does_not_feed_is_named_with_what_to_do(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = mlp_with_extra_input(tmp_path, "{shape: [1]}")
    err = fails(capsys, 1, "train", str(spec), "--data", str(DATA), "--epochs", "1")
    assert f"error: input 'extra' ({spec}:13:3) was not fed and has no init" in err
    assert "an entry under train.inputs" in err


def test_train_prints_the_spec_warnings(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = mlp_with_extra_input(tmp_path, "{shape: [1], init: zeros}")
    assert main(["train", str(spec), "--data", str(DATA), "--epochs", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"warning: {spec}:13:3: inputs.extra: input 'extra' is used "
                                   "by no node")
    assert json.loads(captured.out)["epochs"] == 1


def test_run_json_writes_non_finite_numbers_as_strings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "logs.yaml"
    spec.write_text("name: logs\ninputs:\n  x: {shape: [3], dtype: float32, init: "
                    "{value: [1, 0, -1]}, requires_grad: true}\nnodes:\n"
                    "  l: {op: Log, inputs: [x]}\n  s: {op: Sum, inputs: [l]}\n"
                    "outputs: [l]\nloss: s\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's RuntimeWarning would fail the run
        assert main(["run", str(spec), "--json", "--trace"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("note: input x took its init because nothing was fed (feed it with "
                            "--feed NAME=FILE)\n"
                            "warning: NaN or inf in the loss, output 'l', gradient 'x'; run again "
                            "with --check-finite to stop at the first node that makes one\n")
    document = json.loads(captured.out)  # one document, and strict JSON
    assert document["outputs"]["l"] == [0.0, "-Infinity", "NaN"]  # log 1, log 0, log -1
    assert document["loss"] == "NaN"
    assert document["grads"]["x"] == [1.0, "Infinity", -1.0]  # d log x = 1/x
    assert document["trace"][0]["value_max"] == "NaN"


def test_metrics_are_formatted_from_what_is_there() -> None:
    metrics = {"train_loss": 0.5, "train_accuracy": 0.75, "val_loss": None,
               "val_accuracy": None}
    assert split_metrics(metrics) == [("train", {"loss": 0.5, "accuracy": 0.75})]
    assert format_metrics(metrics) == "train loss 0.5000 acc 0.750"
    both = {"train_loss": 1.0, "val_loss": 2.0}
    assert format_metrics(both) == "train loss 1.0000  val loss 2.0000"


def test_check_takes_import_path_like_every_verb_that_loads_a_spec(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "shared_nn.yaml").write_text((GRAPHS / "lib" / "nn.yaml").read_text())
    spec = tmp_path / "project" / "main.yaml"
    spec.write_text("name: m\ninputs: {x: {shape: [2, 3], init: zeros}}\n"
                    "imports: {nn: shared_nn.yaml}\nnodes:\n  p: {op: nn.softmax, inputs: [x]}\n"
                    "outputs: [p]\n")
    assert main(["check", str(spec), "--snippets", "never"]) == 1
    assert "no such file 'shared_nn.yaml'" in capsys.readouterr().err
    assert main(["check", str(spec), "--import-path", str(tmp_path / "shared")]) == 0
    assert "p/raised" in capsys.readouterr().out


def test_every_option_of_every_verb_has_help_text() -> None:
    import argparse

    from engine.cli.main import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(verbs.choices) == {"run", "check", "schema", "graph", "explain", "train", "eval",
                                   "predict", "grad", "gradcheck", "optimize", "export", "import"}
    for name, verb in verbs.choices.items():
        assert verb.description, name
        for action in verb._actions:
            assert action.help, f"engine {name} {'/'.join(action.option_strings) or action.dest}"


def test_npy_files_that_are_not_arrays_of_numbers(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy at all")
    err = fails(capsys, 1, "run", SOFTMAX, "--feed", f"x={garbage}")
    assert err == (f"error: {garbage}: not a .npy file (it lacks NumPy's header); write it with "
                   "numpy.save, or feed a .csv of numbers\n")
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = fails(capsys, 1, "run", SOFTMAX, "--feed", f"x={objects}")
    assert err == f"error: {objects}: holds Python objects, which are never unpickled; save an " \
                  "array of numbers\n"
    assert "allow_pickle" not in err


def test_an_input_fed_twice_is_a_usage_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.ones((5, 3)))
    err = fails(capsys, 2, "run", SOFTMAX, "--feed", f"x={x}", "--feed", f"y={x}",
                "--feed", f"x={x}")
    assert err == "error: --feed x: fed more than once; give each input one --feed NAME=FILE\n"


def test_a_spec_that_is_not_utf8_is_located_at_its_first_bad_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes("name: caf\u00e9\nnodes: {}\n# na\u00efve\n".encode("latin-1"))
    err = fails(capsys, 1, "run", str(spec), "--snippets", "never")
    # 'caf' is 9 bytes into line 1, so the byte 0xe9 of the é is at column 10
    assert err == (f"error: {spec}:1:10: not UTF-8 text: byte 0xe9 (invalid continuation byte); "
                   "save the file as UTF-8\n1 error found\n")


def test_a_feed_that_does_not_fit_names_its_file(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    wide = tmp_path / "wide.npy"
    np.save(wide, np.ones((5, 4)))
    err = fails(capsys, 1, "run", SOFTMAX, "--feed", f"x={wide}")
    assert err.startswith(f"error: --feed x={wide}: input 'x' ({SOFTMAX}:9:3): expected shape "
                          "[5, 3], fed [5, 4]: axis 1 differs")
    err = fails(capsys, 1, "run", SOFTMAX, "--feed", f"z={wide}")
    assert err == f"error: --feed z={wide}: cannot feed 'z': it is not declared; the inputs " \
                  "are: x, y\n"


def test_the_top_level_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "Exit codes: 0 success, 1 a spec or data error, 2 a usage error, 130 interrupted" \
        in " ".join(capsys.readouterr().out.split())


def test_a_checkpoint_with_a_foreign_generator_state(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "params.npz"
    assert main(["train", MLP, "--epochs", "1", "--save", str(saved)]) == 0
    capsys.readouterr()
    arrays = dict(np.load(saved))
    arrays["rng"] = np.array(json.dumps({"bit_generator": "MT19937", "state": {}}))
    np.savez(saved, **arrays)
    err = fails(capsys, 1, "train", MLP, "--epochs", "2", "--resume", str(saved))
    assert err.startswith(f"error: {saved}: unreadable checkpoint metadata (")
    assert err.endswith("--resume takes a file that engine train --save wrote\n")


def test_the_train_summary_counts_in_the_singular_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", MLP, "--epochs", "1", "--set", "val_split=0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ": 1 epoch of adam (lr 0.01, batch size 16)" in lines[0]
    assert lines[1].endswith(", 178 training rows, 0 validation rows")  # wine.csv has 178 rows


def test_a_checkpoint_missing_optimizer_state_names_its_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "params.npz"
    assert main(["train", MLP, "--epochs", "1", "--save", str(saved)]) == 0
    capsys.readouterr()
    arrays = dict(np.load(saved))
    del arrays["optimizer/m/w1"]  # adam's first moment of w1
    np.savez(saved, **arrays)
    err = fails(capsys, 1, "train", MLP, "--epochs", "2", "--resume", str(saved))
    assert err.startswith(f"error: {saved}: the checkpoint's optimizer state does not fit: ")
    assert "'m/w1'" in err


def test_training_a_graph_whose_parameters_get_no_gradient(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "fixed.yaml"
    spec.write_text("name: fixed\ninputs:\n  x: {shape: [batch, 2]}\n  y: {shape: [batch, 2]}\n"
                    "parameters:\n  unused: {shape: [2], init: zeros}\n"
                    "nodes:\n  probs: {op: Softmax, inputs: [x]}\n"
                    "  loss: {op: NLL, inputs: [probs, y]}\n  spare: {op: Exp, inputs: [unused]}\n"
                    "outputs: [spare]\nloss: loss\n"
                    "train: {data: d.csv, inputs: {x: {columns: [a, b]}, y: {label: c}}}\n")
    (tmp_path / "d.csv").write_text("a,b,c\n1,2,0\n3,4,1\n5,6,0\n")
    err = fails(capsys, 1, "train", str(spec), "--snippets", "never")
    assert err.endswith(f"error: {spec}: no parameter gets a gradient from the loss 'loss', so "
                        "training has nothing to change; declare parameters: and use them on "
                        "the way to the loss\n")
    assert "parameter 'unused' gets no gradient" in err  # the spec's warning came first
