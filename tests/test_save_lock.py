"""One ``engine train --save FILE`` at a time: a second run on the same file is refused at
once, instead of both reporting success while one run's result is lost."""

from __future__ import annotations

import subprocess
import sys
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


def test_a_run_in_another_process_is_refused_while_the_file_is_held(tmp_path: Path) -> None:
    """Across processes, without a race: this process holds the lock (as a running
    ``engine train --save`` does) while an ``engine train`` process on the same file starts;
    it is refused and writes nothing, and once the lock is released the same command runs."""
    saved = tmp_path / "p.npz"
    command = [sys.executable, "-m", "engine", "train", MLP, "--epochs", "1", "--save",
               str(saved)]
    with exclusive(saved, "test"):
        refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "another engine train --save is writing to this file" in refused.stderr
    assert not saved.exists()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert saved.exists()
    assert not lock_path(saved).exists()
