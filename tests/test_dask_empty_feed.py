"""A feed without rows on the Dask backend is a located DataError, not a traceback from
inside Dask: Dask's max over an empty axis raises (``da.from_array(np.zeros((0, 10)),
chunks=(5, 10)).max(axis=-1).compute()``), and digits' Softmax takes a row max.  NumPy
runs the same feed (an empty result), which this checks too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.cli.main import main
from engine.errors import DataError

EMPTY = {"x": np.zeros((0, 64)), "y": np.zeros(0, np.int64)}


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the mean loss of 0 rows
def test_numpy_runs_an_empty_feed() -> None:
    out = engine.Executor(engine.load(GRAPHS / "digits.yaml")).forward(EMPTY)
    assert all(0 in np.shape(v) for name, v in out.items() if name in ("logits", "probs"))


def test_dask_refuses_an_empty_feed_naming_the_input() -> None:
    ex = engine.Executor(engine.load(GRAPHS / "digits.yaml"), backend="dask")
    with pytest.raises(DataError, match=r"input 'x' \(.*digits\.yaml:\d+:\d+\), as fed: has "
                                        r"shape \[0, 64\], no elements, which the Dask"):
        ex.forward(EMPTY)


def test_a_lazily_read_empty_npy_on_dask_is_an_error_without_traceback(tmp_path: Path,
                                                                        capsys) -> None:
    for name, array in EMPTY.items():
        np.save(tmp_path / f"{name}.npy", array)
    code = main(["run", str(GRAPHS / "digits.yaml"), "--backend", "dask",
                 "--feed", f"x={tmp_path / 'x.npy'}", "--feed", f"y={tmp_path / 'y.npy'}"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "has shape [0, 64], no elements, which the Dask backend cannot run" in err, err
