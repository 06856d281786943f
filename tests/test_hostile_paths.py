"""Spec paths that are not regular files, and numbers the command line and YAML must take.

A FIFO would block ``read`` until a writer came, ``/dev/zero`` would never end, a NUL
byte or a name over the system's limit would raise from inside ``os``: each must be a
located error (exit 1) that says what the path is, at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS, ROOT

import engine
from engine.cli.main import main

SOFTMAX = str(GRAPHS / "softmax.yaml")


def check_fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["check", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_not_read(device: str, capsys: pytest.CaptureFixture[str]) -> None:
    if not Path(device).exists():
        pytest.skip(f"{device} does not exist here")
    err = check_fails(capsys, device)
    assert f"error: {device}:1:1: is a character device, not a regular file" in err


def test_a_symlink_to_a_device_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "spec.yaml"
    link.symlink_to("/dev/zero")
    assert f"error: {link}:1:1: is a character device" in check_fails(capsys, str(link))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    # A real process: if it blocked on the FIFO, no test in this process could stop it.
    result = subprocess.run([sys.executable, "-m", "engine", "check", str(fifo)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert f"error: {fifo}:1:1: is a named pipe (FIFO), not a regular file" in result.stderr


def test_a_nul_byte_in_a_path_is_a_spec_error() -> None:
    with pytest.raises(engine.SpecError, match="the path contains a NUL byte"):
        engine.load("spec\0.yaml")


@pytest.mark.parametrize(("target", "why"), [
    ("a" * 300 + ".yaml", "the path is too long for the operating system"),
    ("a\\0b.yaml", "cannot name a file (embedded null byte)"),
])
def test_an_import_path_the_system_cannot_take_is_located(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, why: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f'name: t\nimports:\n  lib: "{target}"\nnodes: {{}}\n')
    err = check_fails(capsys, str(spec))
    assert f"error: {spec}:3:3: imports.lib: import 'lib': " in err and why in err


def test_an_import_of_a_fifo_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    os.mkfifo(tmp_path / "lib.yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nimports:\n  lib: lib.yaml\nnodes: {}\n")
    assert "'lib.yaml': is a named pipe (FIFO)" in check_fails(capsys, str(spec))


@pytest.mark.parametrize("seed", ["-1", "18446744073709551616", "3.5"])
def test_run_refuses_a_seed_out_of_range_as_a_usage_error(
        seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", SOFTMAX, "--seed", seed])
    assert exit_.value.code == 2
    assert "argument --seed:" in capsys.readouterr().err


def test_train_refuses_a_negative_seed_as_a_usage_error(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["train", str(GRAPHS / "mlp.yaml"), "--seed", "-1", "--epochs", "1"]) == 2
    assert "train.seed: " in capsys.readouterr().err


def test_an_exponent_without_a_dot_is_a_number_everywhere() -> None:
    """YAML 1.1 reads 1e-3 as text; users mean a number, and so does the engine."""
    graph = engine.loads("""
name: t
inputs:
  x: {shape: [2], init: {uniform: {low: -1e-3, high: 1E+2}}}
constants:
  k: 1e-3
  v: {value: [2e0, -.5e1]}
nodes:
  a: {op: Mul, inputs: [x, k]}
  b: {op: Add, inputs: [a, 5e-1]}
  c: {op: Mul, inputs: [b, v]}
outputs: [c]
train: {lr: 1e-3, data: d.csv}
""")
    assert graph.spec.constants["k"].value == 0.001
    assert graph.spec.constants["v"].value == [2.0, -5.0]
    assert graph.spec.inputs["x"].init.uniform.low == -0.001
    assert graph.spec.train.lr == 0.001
    out = engine.Executor(graph).forward({"x": np.array([1000.0, 2000.0])})["c"]
    np.testing.assert_allclose(out, [(1.0 + 0.5) * 2.0, (2.0 + 0.5) * -5.0])
