"""--max-bytes bounds what the engine reads and makes, not only the declared shapes: fed
arrays and the shapes they bind, .npy/.npz headers (checked before reading), one_hot inits,
spec files and CSV files.  Memory is measured with tracemalloc (NumPy reports to it)."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from engine.io.arrays import _careful_table, load_npz, read_csv_table
from engine.runtime.feeds import one_hot_rows

MiB = 2**20


def peak(call: Callable[[], Any]) -> tuple[Any, int]:
    """What ``call`` returns, and the most memory it held at once (bytes)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    except Exception as exc:  # the caller inspects it
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_one_hot_init_takes_the_size_of_its_rows_not_an_identity_matrix() -> None:
    graph = engine.loads("name: t\ninputs:\n  y: {shape: [4, 100000], init: one_hot}\n"
                         "outputs: [y]\nnodes: {}\n")
    out, held = peak(lambda: engine.Executor(graph).forward())
    y = out["y"]
    assert y.shape == (4, 100000) and (y.sum(axis=1) == 1).all() and set(np.unique(y)) == {0, 1}
    assert held < 20 * MiB  # the rows are 3.2 MB; eye(100000) would be 80 GB


def test_one_hot_rows_equal_rows_of_the_identity() -> None:
    labels = np.array([[2, 0], [1, 1]])
    np.testing.assert_array_equal(one_hot_rows(labels, 3, "float32"),
                                  np.eye(3, dtype="float32")[labels])


def test_a_feed_that_binds_a_huge_shape_is_refused_before_running() -> None:
    graph = engine.loads("name: t\ninputs:\n  a: {shape: [n, 1], init: zeros}\n"
                         "  b: {shape: [1, n], init: zeros}\n"
                         "nodes:\n  c: {op: Add, inputs: [a, b]}\noutputs: [c]\n")
    ex = engine.Executor(graph)
    a = np.zeros((10**6, 1))
    error, held = peak(lambda: ex.forward({"a": a}))
    assert isinstance(error, engine.DataError)
    assert "7.3 TiB" in str(error) and "(n = 1000000)" in str(error)
    assert held < 50 * MiB
    small = engine.loads("name: t\ninputs:\n  a: {shape: [n, 1]}\n"
                         "  b: {shape: [1, n]}\nnodes:\n  c: {op: Add, inputs: [a, b]}\n"
                         "outputs: [c]\n", max_bytes=10**5)
    with pytest.raises(engine.DataError, match=r"over the budget of 97\.7 KiB"):
        engine.Executor(small).forward({"a": np.zeros((200, 1)), "b": np.zeros((1, 200))})
    out = engine.Executor(small).forward({"a": np.zeros((10, 1)), "b": np.zeros((1, 10))})
    assert out["c"].shape == (10, 10)


def _npy_header_only(path: Path, shape: tuple[int, ...]) -> None:
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f8", "fortran_order": False, "shape": shape})


@pytest.mark.parametrize("shape", [(10**12,), (2**35, 2**35), (10**400,)])
def test_an_npy_header_is_checked_before_anything_is_read(tmp_path: Path,
                                                          shape: tuple[int, ...]) -> None:
    path = tmp_path / "x.npy"
    _npy_header_only(path, shape)
    with pytest.raises(engine.DataError, match=r"x\.npy: holds a \[\d+.*float64 array, .* over "
                                               r"the budget of 4\.0 GiB"):
        engine.io.arrays.load_array(path)


def test_an_npz_zip_bomb_is_refused_before_it_inflates(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(16 * MiB))  # 128 MiB of zeros
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", buffer.getvalue())
    del buffer
    assert path.stat().st_size < MiB
    error, held = peak(lambda: load_npz(path, max_bytes=10 * MiB))
    assert isinstance(error, engine.DataError), error
    assert "array 'x': holds a [16777216] float64 array, 128.0 MiB" in str(error)
    assert held < 5 * MiB


def test_the_arrays_of_an_npz_count_together(tmp_path: Path) -> None:
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros(1000), b=np.zeros(1000))
    assert set(load_npz(path, max_bytes=16_000)) == {"a", "b"}
    with pytest.raises(engine.DataError, match=r"array 'b': .* \(and 7\.8 KiB in the arrays "
                                               r"before it\), over the budget"):
        load_npz(path, max_bytes=15_999)


CSVS = {
    "header": "a,b,c\n1,2,3\n4,5,6\n",
    "no header": "1,2\n3,4\n",
    "no final newline": "a,b\n1,2\n3,4",
    "blank lines": "a,b\n\n1,2\n\n3,4\n",
    "quotes": 'a,b\n"1",2\n3,"4"\n',
    "crlf": "a,b\r\n1,2\r\n3,4\r\n",
    "one column": "x\n1.5\n-2e3\n",
    "spaces": "a, b\n 1 , 2\n3,4 \n",
    "nan and inf": "a,b\nnan,inf\n-inf,1\n",
}


@pytest.mark.parametrize("name", list(CSVS))
def test_the_fast_csv_reader_agrees_with_the_careful_one(tmp_path: Path, name: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(CSVS[name])
    fast, careful = read_csv_table(path), _careful_table(path)
    assert fast.header == careful.header
    np.testing.assert_array_equal(fast.data, careful.data)
    np.testing.assert_array_equal(fast.lines, careful.lines)


def test_a_csv_is_counted_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n" + "1,2\n" * 1000)
    assert read_csv_table(path, max_bytes=16_016).data.shape == (1000, 2)
    with pytest.raises(engine.DataError, match=r"holds up to 2,002 numbers, 15\.6 KiB as "
                                               r"float64, over the budget"):
        read_csv_table(path, max_bytes=16_000)


def test_a_spec_file_is_read_only_up_to_its_share_of_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: t\nnodes: {}\n# " + "x" * 10_000 + "\n")
    assert engine.load(path).spec.name == "t"
    with pytest.raises(engine.SpecError, match=r"larger than 7,812 bytes, the most that "
                                               r"--max-bytes allows"):
        engine.load(path, max_bytes=10**6)
    with pytest.raises(engine.SpecError, match=r"larger than 7,812 characters"):
        engine.loads(path.read_text(), max_bytes=10**6)


def test_every_verb_that_loads_a_spec_takes_max_bytes() -> None:
    """The budget error says "raise --max-bytes": every verb that reads a spec must take it."""
    from engine.cli.main import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    loading = {name: verb for name, verb in verbs.items()
               if any(a.dest in ("spec", "specs") for a in verb._actions)}
    assert {"run", "check", "train", "graph", "explain"} <= set(loading)
    for name, verb in loading.items():
        assert any("--max-bytes" in a.option_strings for a in verb._actions), name
