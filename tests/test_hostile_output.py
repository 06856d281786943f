"""Output nobody planned for: a full disk, Ctrl-C while importing, numbers too long to
write, and text from a spec that would drive the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GRAPHS, ROOT

from engine.cli.main import main
from engine.cli.terminal import escape_controls

SOFTMAX = str(GRAPHS / "softmax.yaml")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("argv", [["run", SOFTMAX, "--json"], ["check", SOFTMAX],
                                  ["explain", SOFTMAX, "--wrt", "x"]])
def test_stdout_on_a_full_device_is_an_error_not_a_traceback(argv: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "engine", *argv], cwd=ROOT, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert result.stderr.endswith("error: cannot write the output: No space left on device\n")
    assert "Traceback" not in result.stderr


def test_ctrl_c_while_importing_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """A stand-in numpy whose import is interrupted, as Ctrl-C in the first second would be."""
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    script = Path(sys.executable).parent / "engine"  # the installed command
    commands = [[sys.executable, "-m", "engine"]] + ([[str(script)]] if script.exists() else [])
    for command in commands:
        result = subprocess.run([*command, "check", SOFTMAX], cwd=ROOT,
                                capture_output=True, text=True, timeout=600,
                                env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""})
        assert result.returncode == 130, result.stderr
        assert result.stderr == "interrupted\n"


def test_ctrl_c_while_importing_is_exit_130_however_the_command_is_started(
        tmp_path: Path) -> None:
    """Interpreter options before -m, and the script under another file name (engine.exe on
    Windows), are still the command."""
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    script = Path(sys.executable).parent / "engine"
    commands = [[sys.executable, "-W", "ignore", "-X", "utf8", "-m", "engine"],
                [sys.executable, "-u", "-mengine"]]
    if script.exists():
        renamed = tmp_path / "engine.exe"
        renamed.write_text(script.read_text())
        commands.append([sys.executable, str(renamed)])
    for command in commands:
        result = subprocess.run([*command, "check", SOFTMAX], cwd=ROOT, capture_output=True,
                                text=True, timeout=600,
                                env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""})
        assert (result.returncode, result.stderr) == (130, "interrupted\n"), command


def test_ctrl_c_while_another_module_imports_the_engine_stays_a_keyboard_interrupt(
        tmp_path: Path) -> None:
    """``python -m tool`` whose package imports the engine is not the engine command: the
    interrupt reaches the tool (a KeyboardInterrupt), it is not turned into an exit."""
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "__init__.py").write_text("import engine\n")
    (tmp_path / "tool" / "__main__.py").write_text("print('ran')\n")
    result = subprocess.run([sys.executable, "-m", "tool"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600,
                            env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""})
    assert "KeyboardInterrupt" in result.stderr, result.stderr
    assert result.stderr != "interrupted\n"


def test_explain_counts_paths_past_the_limit_on_writing_integers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mul(h, h) doubles the paths at each of 15,000 layers: 2^15000 has 4,516 digits, more
    than Python writes (4,300)."""
    lines = ["name: doubling", "inputs: {h0: {shape: [1], requires_grad: true, init: ones}}",
             "nodes:"]
    lines += [f"  h{i + 1}: {{op: Mul, inputs: [h{i}, h{i}]}}" for i in range(15_000)]
    spec = tmp_path / "doubling.yaml"
    spec.write_text("\n".join([*lines, "  loss: {op: Sum, inputs: [h15000]}", "loss: loss"]))
    assert main(["explain", str(spec), "--wrt", "h0"]) == 0
    out = capsys.readouterr().out
    assert "∂loss/∂h0 is a sum over 2^15000 paths, too many to write out" in out


def test_explain_refuses_to_list_more_than_a_million_paths(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", SOFTMAX, "--wrt", "x", "--max-paths", str(10**40)]) == 2
    assert "--max-paths must be from 1 to 1,000,000" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"), ("abc\u202edcba", "abc\\u202edcba"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("bell\x07 del\x7f csi\x9b", "bell\\x07 del\\x7f csi\\x9b"),
    ("naïve ∂x", "naïve ∂x")])
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert escape_controls(text) == shown


def test_a_spec_name_cannot_drive_the_terminal(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "evil\x1b[2J.yaml"
    spec.write_text('name: "\\e[31mred\\u202Edesrever"\ninputs: {x: {shape: [2], init: ones}}\n'
                    'nodes:\n  s: {op: Sum, inputs: [x]}\noutputs: [s]\n'
                    'functions: {"f": {inputs: [a], nodes: {"b": {op: Exp, inputs: [a]}}, '
                    'outputs: [b]}}\n')
    for argv in (["run", str(spec)], ["check", str(spec)], ["check", str(spec), "--json"]):
        assert main(argv) == 0
        captured = capsys.readouterr()
        for stream in (captured.out, captured.err):
            assert "\x1b" not in stream and "\u202e" not in stream
    assert main(["run", str(spec)]) == 0
    assert "\\x1b[31mred\\u202edesrever" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: t\nnodes: {}\n"\\e]0;title\\a": 1\n')
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
