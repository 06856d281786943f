"""Training, eval and predict on Dask read a .npy table or a .zarr store chunk by chunk.

``engine train --backend dask`` with a .npy data file opens it memory-mapped
and with a .zarr store through ``dask.array.from_zarr``: every read is one chunk
of rows (``--chunk-rows``), nothing reads the whole file (``load_array`` is made
to fail), and the trained parameters equal NumPy's from the same seed, which in
turn equal those trained from the same rows written as a CSV file (the reading
path that predates these formats).  A bad value is a DataError naming the file,
the row and the column, raised inside the task graph as the chunk is read.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GRAPHS

from engine.cli.main import main
from engine.io.lazy import NpyRows
from engine.runtime.backends import install_hint, installed

needs_dask = pytest.mark.skipif(not installed("dask"), reason=f"backend dask is not installed: "
                                                              f"{install_hint('dask')}")
pytestmark = needs_dask
needs_zarr = pytest.mark.skipif(importlib.util.find_spec("zarr") is None,
                                reason='zarr is not installed: pip install -e ".[zarr]"')

ROWS, FEATURES, CHUNK = 230, 13, 40
SPEC = (GRAPHS / "mlp.yaml").read_text()


def _table(seed: int = 5) -> np.ndarray:
    """Rows of 13 features and a class 0..2 in the last column."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, ROWS)
    features = rng.normal(size=(ROWS, FEATURES)) + labels[:, None]
    return np.column_stack([features, labels.astype(np.float64)])


def _spec(folder: Path, data: str, x: str, y: str) -> Path:
    spec = folder / "spec.yaml"
    text = SPEC.replace("data: data/wine.csv", f"data: {data}") \
        .replace("x: {columns: rest, standardize: true}", x).replace("y: {label: class}", y) \
        .replace("epochs: 30", "epochs: 3")
    spec.write_text(text)
    return spec


@pytest.fixture()
def npy_spec(tmp_path: Path) -> Path:
    np.save(tmp_path / "table.npy", _table())
    return _spec(tmp_path, "table.npy", "x: {columns: rest, standardize: true}", "y: {label: 13}")


def _cli(capsys, *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _train(capsys, spec: Path, save: Path, *options: str) -> dict:
    return json.loads(_cli(capsys, "train", str(spec), "--save", str(save), "--json", *options))


def _same_parameters(got: Path, want: Path, rtol: float = 1e-9) -> None:
    with np.load(got) as a, np.load(want) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if key.startswith("param/") or key.startswith("scale/"):
                np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-12, err_msg=key)


def _count_reads(monkeypatch, cls: type) -> list[int]:
    """The rows of every read through ``cls.__getitem__`` (a .npy file's memory map, a
    zarr array), from now on."""
    reads: list[int] = []
    read = cls.__getitem__

    def counted(self, key):
        rows = read(self, key)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(cls, "__getitem__", counted)
    return reads


@pytest.fixture()
def counted_reads(monkeypatch) -> list[int]:
    """The reads of a .npy file through its memory map; reading a data file whole (NumPy's
    reader of .npy files) fails the test."""
    def whole(*args, **kwargs):
        raise AssertionError("a data file was read whole")

    monkeypatch.setattr(np.lib.format, "read_array", whole)
    monkeypatch.setattr(np, "load", whole)
    return _count_reads(monkeypatch, NpyRows)


def test_the_npy_table_trains_as_the_same_csv_does(capsys, tmp_path: Path, npy_spec: Path
                                                  ) -> None:
    """NumPy reads a .npy table whole: the same parameters as the same rows in a CSV."""
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), "class"])
    np.savetxt(tmp_path / "table.csv", _table(), delimiter=",", header=header, comments="",
               fmt="%.17g")
    csv_spec = _spec(tmp_path, "table.csv", "x: {columns: rest, standardize: true}",
                     "y: {label: class}")
    _trains_as(capsys, tmp_path, npy_spec, csv_spec)


def _trains_as(capsys, tmp_path: Path, spec: Path, reference: Path) -> None:
    """On NumPy, ``spec`` trains to exactly the parameters and history of ``reference``."""
    want = _train(capsys, reference, tmp_path / "reference.npz")
    got = _train(capsys, spec, tmp_path / "got.npz")
    _same_parameters(tmp_path / "got.npz", tmp_path / "reference.npz", rtol=0)
    assert got["history"] == want["history"]


def _dask_equals_numpy(capsys, tmp_path: Path, spec: Path, reads: list[int]) -> None:
    """Trains on NumPy, then on Dask in chunks of CHUNK rows: the same parameters and
    history; eval and predict on Dask print NumPy's numbers.  ``reads`` is emptied before
    the Dask runs, so that it holds only theirs."""
    data = str(spec.parent / spec.read_text().split("data: ")[1].split()[0])
    params = str(tmp_path / "numpy.npz")
    eval_args = ("eval", str(spec), "--params", params, "--data", data, "--json")
    predict_args = ("predict", str(spec), "--params", params, "--data", data)
    want = _train(capsys, spec, tmp_path / "numpy.npz")
    want_eval, want_predict = json.loads(_cli(capsys, *eval_args)), _cli(capsys, *predict_args)
    reads.clear()
    dask = ("--backend", "dask", "--chunk-rows", str(CHUNK))
    got = _train(capsys, spec, tmp_path / "dask.npz", *dask)
    _same_parameters(tmp_path / "dask.npz", tmp_path / "numpy.npz")
    for key, values in want["history"].items():
        np.testing.assert_allclose(got["history"][key], values, rtol=1e-9, err_msg=key)
    got_eval = json.loads(_cli(capsys, *eval_args, *dask))
    assert got_eval["rows"] == want_eval["rows"] == ROWS
    np.testing.assert_allclose(got_eval["loss"], want_eval["loss"], rtol=1e-9)
    assert got_eval["accuracy"] == want_eval["accuracy"]
    got_predict = _cli(capsys, *predict_args, *dask)
    np.testing.assert_allclose(np.loadtxt(got_predict.splitlines()[1:], delimiter=","),
                               np.loadtxt(want_predict.splitlines()[1:], delimiter=","),
                               rtol=1e-9)


def test_dask_trains_on_a_npy_table_chunk_by_chunk_as_numpy_does(capsys, tmp_path: Path,
                                                                 npy_spec: Path,
                                                                 monkeypatch) -> None:
    reads = _count_reads(monkeypatch, NpyRows)
    _dask_equals_numpy(capsys, tmp_path, npy_spec, reads)
    assert reads and max(reads) <= CHUNK, "every read is one chunk of rows, or part of one"


def test_dask_never_reads_the_npy_table_whole(capsys, tmp_path: Path, npy_spec: Path,
                                              counted_reads: list[int]) -> None:
    _train(capsys, npy_spec, tmp_path / "dask.npz", "--backend", "dask", "--chunk-rows",
           str(CHUNK))
    assert counted_reads and max(counted_reads) <= CHUNK
    # the default chunk (about 64 MiB) holds all 230 rows: one read of each at a time
    counted_reads.clear()
    _train(capsys, npy_spec, tmp_path / "default.npz", "--backend", "dask")
    assert counted_reads and max(counted_reads) <= ROWS


def _zarr_store(path: Path, table: np.ndarray) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.create_array("x", data=table[:, :FEATURES], chunks=(64, FEATURES))
    group.create_array("y", data=table[:, FEATURES].astype(np.int64), chunks=(64,))


@pytest.fixture()
def zarr_spec(tmp_path: Path) -> Path:
    _zarr_store(tmp_path / "store.zarr", _table())
    return _spec(tmp_path, "store.zarr", "x: {array: x, standardize: true}", "y: {label: y}")


@needs_zarr
def test_a_zarr_store_trains_as_the_same_npz_does(capsys, tmp_path: Path, zarr_spec: Path
                                                  ) -> None:
    table = _table()
    np.savez(tmp_path / "arrays.npz", x=table[:, :FEATURES],
             y=table[:, FEATURES].astype(np.int64))
    npz_spec = _spec(tmp_path, "arrays.npz", "x: {array: x, standardize: true}",
                     "y: {label: y}")
    _trains_as(capsys, tmp_path, zarr_spec, npz_spec)


@needs_zarr
def test_dask_trains_on_a_zarr_store_chunk_by_chunk_as_numpy_does(capsys, tmp_path: Path,
                                                                  zarr_spec: Path,
                                                                  monkeypatch) -> None:
    import zarr

    reads = _count_reads(monkeypatch, zarr.Array)
    _dask_equals_numpy(capsys, tmp_path, zarr_spec, reads)
    assert reads and max(reads) <= CHUNK, "every read is one chunk of rows, or part of one"


def _fails(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("backend", [(), ("--backend", "dask", "--chunk-rows", str(CHUNK))],
                         ids=["numpy", "dask"])
def test_a_bad_value_is_located_in_the_file_on_either_backend(capsys, tmp_path: Path,
                                                              backend: tuple[str, ...]) -> None:
    """The same message whether the file is read whole or checked chunk by chunk."""
    table = _table()
    table[123, FEATURES] = 7
    np.save(tmp_path / "table.npy", table)
    spec = _spec(tmp_path, "table.npy", "x: {columns: rest}", "y: {label: 13}")
    err = _fails(capsys, "train", str(spec), *backend)
    assert "table.npy: row 123 (0-based), column index 13: label 7 is not a class index " \
           "0..2 (input 'y' is declared [batch, 3])" in err
    table = _table()
    table[57, 4] = np.nan
    np.save(tmp_path / "table.npy", table)
    err = _fails(capsys, "train", str(spec), *backend)
    assert "table.npy: row 57 (0-based), column index 4: nan is not a finite number" in err


@needs_zarr
@pytest.mark.parametrize("backend", [(), ("--backend", "dask", "--chunk-rows", str(CHUNK))],
                         ids=["numpy", "dask"])
def test_a_bad_label_is_located_in_a_zarr_store_on_either_backend(capsys, tmp_path: Path,
                                                                  backend: tuple[str, ...]
                                                                  ) -> None:
    table = _table()
    table[200, FEATURES] = -1
    _zarr_store(tmp_path / "store.zarr", table)
    spec = _spec(tmp_path, "store.zarr", "x: {array: x}", "y: {label: y}")
    err = _fails(capsys, "train", str(spec), *backend)
    assert "store.zarr: array 'y', row 200 (0-based): label -1 is not a class index 0..2 " \
           "(input 'y' is declared [batch, 3])" in err


def test_data_files_that_cannot_be_read_are_located_errors(capsys, tmp_path: Path) -> None:
    dask = ("--backend", "dask")
    np.save(tmp_path / "flat.npy", np.arange(10.0))
    spec = _spec(tmp_path, "flat.npy", "x: {columns: rest}", "y: {label: 0}")
    for backend in ((), dask):
        err = _fails(capsys, "train", str(spec), *backend)
        assert "flat.npy: holds a [10] float64 array; a .npy data file is one table" in err
    spec = _spec(tmp_path, "missing.zarr", "x: {array: x}", "y: {label: y}")
    assert "no such file 'missing.zarr'" in _fails(capsys, "train", str(spec))
    for backend in ((), dask):
        err = _fails(capsys, "train", str(spec), "--data", str(tmp_path / "gone.zarr"), *backend)
        assert "gone.zarr: no such file" in err


@needs_zarr
def test_zarr_stores_that_cannot_be_read_are_located_errors(capsys, tmp_path: Path,
                                                            monkeypatch) -> None:
    import zarr

    dask = ("--backend", "dask")
    zarr.create_array(str(tmp_path / "one.zarr"), data=np.ones((5, 14)))
    spec = _spec(tmp_path, "one.zarr", "x: {array: x}", "y: {label: y}")
    assert "one.zarr: holds one zarr array, not a group of named arrays" in \
        _fails(capsys, "train", str(spec))
    group = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w")
    group.create_array("x", data=np.ones((6, 12)))
    group.create_array("y", data=np.zeros(6, np.int64))
    spec = _spec(tmp_path, "bad.zarr", "x: {array: x}", "y: {label: y}")
    for backend in ((), dask):
        err = _fails(capsys, "train", str(spec), *backend)
        assert "input 'x' is declared [batch, 13], but array 'x' of " in err and \
            "has shape [6, 12]" in err
    good = tmp_path / "good.zarr"
    _zarr_store(good, _table())
    (good / "x" / "c" / "1" / "0").write_bytes(b"not a compressed chunk")  # rows 64..127
    spec = _spec(tmp_path, "good.zarr", "x: {array: x}", "y: {label: y}")
    err = _fails(capsys, "train", str(spec))
    assert "good.zarr: array 'x': its data cannot be read (" in err
    err = _fails(capsys, "train", str(spec), "--backend", "dask", "--chunk-rows", "32")
    assert "good.zarr: array 'x': rows 64..95 cannot be read (" in err or \
        "good.zarr: array 'x': rows 96..127 cannot be read (" in err
    monkeypatch.setitem(__import__("sys").modules, "zarr", None)  # as if not installed
    for backend in ((), dask):
        err = _fails(capsys, "train", str(spec), *backend)
        assert 'good.zarr: reading a .zarr store needs zarr, an optional extra: ' \
               'pip install -e ".[zarr]"' in err


def test_a_lazily_trained_checkpoint_resumes_on_its_own_data_only(capsys, tmp_path: Path,
                                                                  npy_spec: Path) -> None:
    """The fingerprint of data read lazily is hashed block by block on Dask: a resumed run
    continues exactly, other values are refused, and so is data read the other way."""
    dask = ("--backend", "dask", "--chunk-rows", str(CHUNK))
    _train(capsys, npy_spec, tmp_path / "straight.npz", *dask)
    _train(capsys, npy_spec, tmp_path / "resumed.npz", "--epochs", "2", *dask)
    _train(capsys, npy_spec, tmp_path / "resumed.npz", "--resume", str(tmp_path / "resumed.npz"),
           "--chunk-rows", "70", *dask[:2])  # another chunking: the same fingerprint
    _same_parameters(tmp_path / "resumed.npz", tmp_path / "straight.npz", rtol=1e-12)
    resume = ("train", str(npy_spec), "--resume", str(tmp_path / "straight.npz"),
              "--epochs", "4")
    err = _fails(capsys, *resume)
    assert "it was trained on data read lazily (--backend dask, a .npy or .zarr file), and " \
           "this run's data is read whole" in err
    table = _table()
    table[3, 0] += 1.0
    np.save(npy_spec.parent / "table.npy", table)
    err = _fails(capsys, *resume, *dask)
    assert "training and" in err and "with other values" in err


@pytest.mark.skipif(not installed("dask") or __import__("importlib").util.find_spec(
    "distributed") is None, reason='dask.distributed is not installed: pip install -e ".[dask]"')
def test_a_bad_label_found_on_a_local_cluster_is_one_line(capfd, tmp_path: Path) -> None:
    """The worker that finds it does not print its own traceback to this terminal."""
    table = _table()
    table[171, FEATURES] = 9
    np.save(tmp_path / "table.npy", table)
    spec = _spec(tmp_path, "table.npy", "x: {columns: rest}", "y: {label: 13}")
    code = main(["train", str(spec), "--backend", "dask", "--workers", "1", "--chunk-rows",
                 str(CHUNK)])
    err = capfd.readouterr().err
    assert code == 1
    assert err.splitlines()[-1] == f"error: {tmp_path / 'table.npy'}: row 171 (0-based), " \
                                   "column index 13: label 9 is not a class index 0..2 " \
                                   "(input 'y' is declared [batch, 3])"
    assert "Traceback" not in err and "Compute Failed" not in err
