"""A .npy feed on Dask is read chunk by chunk inside the task graph, and still checked.

``engine run --feed x=FILE.npy --backend dask`` opens the file memory-mapped
(``engine.io.lazy``): every read a task makes is one chunk of rows, each row is
read once, and the numbers equal NumPy's reading the whole file.  Labels are
checked block by block inside the graph, and a bad one is a DataError naming
its row in the whole file.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.cli.main import main
from engine.errors import DataError, DataWarning
from engine.graph.targets import LabelCheck
from engine.io import lazy
from engine.io.lazy import NpyRows, lazy_npy
from engine.runtime.backends import install_hint, installed

pytestmark = pytest.mark.skipif(not installed("dask"), reason=f"backend dask is not "
                                                              f"installed: {install_hint('dask')}")

ROWS, CHUNK = 230, 50


@pytest.fixture()
def digits_files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, rng.normal(size=(ROWS, 64)))
    np.save(y, rng.integers(0, 10, size=ROWS))
    return x, y


def _run_json(capsys, *args: str) -> dict:
    code = main(["run", str(GRAPHS / "digits.yaml"), "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_a_npy_feed_is_read_chunk_by_chunk_and_equals_numpy(capsys, monkeypatch,
                                                           digits_files) -> None:
    x, y = digits_files
    feeds = ("--feed", f"x={x}", "--feed", f"y={y}")
    want = _run_json(capsys, *feeds)
    reads: list[tuple[str, int]] = []
    read = NpyRows.__getitem__

    def counted(self: NpyRows, key):
        rows = read(self, key)
        reads.append((Path(self.path).name, len(rows)))
        return rows

    monkeypatch.setattr(NpyRows, "__getitem__", counted)
    got = _run_json(capsys, *feeds, "--backend", "dask", "--chunk-rows", str(CHUNK))
    for name in ("x.npy", "y.npy"):
        sizes = [n for file, n in reads if file == name]
        assert max(sizes) <= CHUNK, "no read takes more than a chunk of rows"
        assert sum(sizes) == ROWS, "every row is read once: one compute"
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-10)
    for key, grad in want["grads"].items():
        np.testing.assert_allclose(got["grads"][key], grad, rtol=1e-10, atol=1e-13)


def test_the_reader_pickles_without_the_data(digits_files) -> None:
    reader = NpyRows.open(digits_files[0])
    assert len(pickle.dumps(reader)) < 1000 < ROWS * 64 * 8
    array = lazy_npy(digits_files[0], CHUNK)
    assert array.chunks[0] == (50, 50, 50, 50, 30)
    np.testing.assert_array_equal(array[60:70].compute(), np.load(digits_files[0])[60:70])


def test_a_bad_label_in_a_lazy_feed_is_a_located_data_error(capsys, digits_files) -> None:
    x, y = digits_files
    labels = np.load(y)
    labels[173] = 12  # in the fourth chunk of 50 rows
    np.save(y, labels)
    graph = engine.load(GRAPHS / "digits.yaml")
    ex = engine.Executor(graph, backend="dask")
    ex.forward({"x": lazy_npy(x, CHUNK), "y": lazy_npy(y, CHUNK)})
    grads = ex.backward()
    with pytest.raises(DataError, match=r"input 'y' .*as fed: row 173 holds label 12, but "):
        ex.compute(grads)
    code = main(["run", str(GRAPHS / "digits.yaml"), "--feed", f"x={x}", "--feed", f"y={y}",
                 "--backend", "dask", "--chunk-rows", str(CHUNK)])
    err = capsys.readouterr().err
    # named with the file it was read from, as a bad label in an eagerly read feed is
    assert code == 1 and f"error: --feed y={y}: input 'y' (" in err, err
    assert "as fed: row 173 holds label 12" in err and "Traceback" not in err


def test_a_lazy_feed_read_by_engine_run_has_its_labels_checked_once(digits_files) -> None:
    from engine.cli.commands.run import _read_feed
    from engine.runtime.backends import get_backend

    graph = engine.load(GRAPHS / "digits.yaml")
    labels = _read_feed(graph, "y", digits_files[1], get_backend("dask", None, CHUNK))
    fed, _ = engine.runtime.feeds.bind_feeds(graph, {"y": labels})  # as the executor binds
    checks = [layer for layer in fed["y"].dask.layers if layer.startswith("label-check-")]
    assert len(checks) == 1, checks


def test_a_fortran_ordered_file_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(np.ones((4, 3))))
    with pytest.raises(DataError, match="Fortran"):
        NpyRows.open(path)


def test_a_truncated_file_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.ones((100, 3)))
    path.write_bytes(path.read_bytes()[:-80])
    with pytest.raises(DataError, match="shorter"):
        lazy.NpyRows.open(path)


def test_one_hot_rows_split_across_blocks_are_checked_whole(tmp_path: Path) -> None:
    """A Dask feed chunked along the class axis too: its rows are made whole before they
    are checked (a third of a one-hot row is not one-hot), and a soft row is warned about
    at its row in the whole array."""
    import dask.array as da

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=40)
    y = np.eye(3)[labels]
    x = rng.normal(size=(40, 13))
    graph = engine.load(GRAPHS / "mlp.yaml")
    ex = engine.Executor(graph, backend="dask")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex.forward({"x": da.from_array(x, chunks=(7, 5)), "y": da.from_array(y, chunks=(7, 1))})
        ex.compute(ex.backward())
    y[29] = [0.5, 0.5, 0.0]
    ex.forward({"x": da.from_array(x, chunks=(7, 5)), "y": da.from_array(y, chunks=(7, 1))})
    with pytest.warns(DataWarning, match=r"input 'y' .*as fed: row 29 is \[0\.5 0\.5 0\. \], "
                                         r"not one-hot"):
        ex.compute(ex.backward())


def _check(ignore_index: int | None = None) -> LabelCheck:
    return LabelCheck("labels", 5, False, ignore_index, "NLL", "loss", "5 classes")


def test_a_bad_label_is_located_in_the_whole_array_on_every_axis() -> None:
    import dask.array as da

    labels = np.zeros((20, 9), dtype=np.int64)
    labels[13, 7] = 5  # block (2, 2) of blocks 6 x 4: its corner is [12, 4]
    lazy_labels = _check().in_graph(da.from_array(labels, chunks=(6, 4)))
    with pytest.raises(DataError, match=r"^labels: index \[13, 7\] holds label 5, but 5 "
                                        r"classes; labels count from 0$"):
        lazy_labels.compute()


def test_the_ignore_index_passes_the_lazy_check() -> None:
    import dask.array as da

    labels = np.array([0, 4, -100, 2, -100, 1])
    got = _check(ignore_index=-100).in_graph(da.from_array(labels, chunks=4)).compute()
    np.testing.assert_array_equal(got, labels)
    # blocks are checked in parallel: the one that fails first names its row
    with pytest.raises(DataError, match=r"row [24] holds label -100"):
        _check().in_graph(da.from_array(labels, chunks=4)).compute()
