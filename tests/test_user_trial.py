"""What a new user ran into: a CSV saved with a BOM, resuming on other data, an output path
that cannot be written (found before training, not after), and the temporary files that
killed runs leave beside a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from engine.cli.main import main
from engine.io.atomic import save_npz

DATA = ROOT / "tests" / "bad_specs" / "data" / "tiny.csv"
TINY = """name: tiny
inputs:
  x: {shape: [batch, 2], init: zeros}
  y: {shape: [batch], dtype: int64, init: zeros}
parameters:
  w: {shape: [2, 2], init: {normal: {mean: 0.0, std: 0.3}}}
nodes:
  logits: {op: MatMul, inputs: [x, w]}
  probs: {op: Softmax, inputs: [logits]}
  loss: {op: NLL, inputs: [probs, y], reduction: mean}
loss: loss
train:
  data: data.csv
  inputs:
    x: {columns: [a, b], standardize: true}
    y: {label: label}
  epochs: 2
  batch_size: 4
"""


def tiny(folder: Path, rows: str | None = None, prefix: str = "") -> Path:
    (folder / "data.csv").write_text(prefix + (rows or DATA.read_text()), encoding="utf-8")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY)
    return spec


def test_a_csv_with_a_byte_order_mark_reads_its_first_column_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tiny(tmp_path, prefix="\ufeff")  # as Excel's "CSV UTF-8" saves it
    assert main(["train", str(spec), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["train_rows"] == 16


def test_resuming_on_other_data_is_refused(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec = tiny(tmp_path)
    saved = tmp_path / "p.npz"
    assert main(["train", str(spec), "--save", str(saved), "--json"]) == 0
    capsys.readouterr()
    fewer = "\n".join(DATA.read_text().splitlines()[:-5]) + "\n"
    (tmp_path / "data.csv").write_text(fewer)
    assert main(["train", str(spec), "--resume", str(saved), "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert f"error: {saved}: it was trained on other data (16 training and 4 validation " \
           "rows), but this run's data and split give 12 and 3 rows" in err
    # The same rows, changed values: told apart too.
    (tmp_path / "data.csv").write_text(DATA.read_text().replace("0.", "1.", 1))
    assert main(["train", str(spec), "--resume", str(saved), "--epochs", "3"]) == 1
    assert "give 16 and 4 rows with other values" in capsys.readouterr().err
    (tmp_path / "data.csv").write_text(DATA.read_text())
    assert main(["train", str(spec), "--resume", str(saved), "--epochs", "3", "--json"]) == 0


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder nobody can write in")
@pytest.mark.parametrize("option", ["--plot", "--save"])
def test_an_unwritable_output_folder_is_found_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    """/proc refuses new files even to root (who may write into a chmod 555 folder)."""
    spec = tiny(tmp_path)
    (tmp_path / "data.csv").write_text("not,the,header\n")  # reading it would fail: it is not
    target = "/proc/loss.png" if option == "--plot" else "/proc/p.npz"
    assert main(["train", str(spec), option, target]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}: cannot write in folder '/proc'"), err


def test_a_save_removes_the_temporary_files_of_dead_writers_only(tmp_path: Path) -> None:
    target = tmp_path / "p.npz"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = tmp_path / f".p.npz.{finished.stdout.strip()}.abc123.tmp"
    live = tmp_path / f".p.npz.{os.getpid()}.def456.tmp"  # a writer still at work: this one
    other = tmp_path / ".q.npz.1.x.tmp"  # another file's
    for path in (dead, live, other):
        path.write_bytes(b"half a checkpoint")
    save_npz(target, {"w": np.ones(3)})
    assert not dead.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name,
                                                                  other.name])
