"""One ``engine train --save FILE`` at a time: a second run on the same file is refused at
once, instead of both reporting success while one run's result is lost."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from engine.cli.main import main
from engine.io.lock import exclusive, lock_path

MLP = str(ROOT / "graphs" / "mlp.yaml")


def test_a_second_run_on_a_locked_save_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    with exclusive(saved, "test"):  # another run holds the file
        assert main(["train", MLP, "--epochs", "1", "--save", str(saved)]) == 1
    err = capsys.readouterr().err
    assert "another engine train --save is writing to this file" in err
    assert not saved.exists()


def test_the_lock_is_released_and_removed_after_a_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "p.npz"
    for _ in range(2):  # one after the other: both succeed
        assert main(["train", MLP, "--epochs", "1", "--save", str(saved)]) == 0
    assert saved.exists()
    assert not lock_path(saved).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]


def test_two_processes_on_one_save_file_do_not_both_succeed(tmp_path: Path) -> None:
    saved = tmp_path / "p.npz"
    command = [sys.executable, "-m", "engine", "train", MLP, "--epochs", "200", "--save",
               str(saved), "--json"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:  # wait (without a clock) until the first run holds the lock
        while not lock_path(saved).exists() and first.poll() is None:
            time.sleep(0.01)
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    finally:
        first.communicate()
    codes = sorted([first.returncode, second.returncode])
    if first.returncode == 0 and second.returncode == 0:  # the first ended before the second
        pytest.skip("the first run finished before the second started; nothing overlapped")
    assert codes == [0, 1]
    assert "another engine train --save is writing to this file" in second.stderr
