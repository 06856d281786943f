"""The data file of train, eval and predict, opened as a table of columns or named arrays.

A .csv file is a table (a header row names its columns) and an .npy file is one
[rows, columns] table without a header (columns by 0-based index); an .npz file
and a .zarr store hold named arrays (an input takes a whole array).  On the Dask
backend a .npy file is opened memory-mapped and a .zarr store with
``dask.array.from_zarr``: their arrays are Dask arrays whose chunks of rows are
read by the tasks that compute them, so no process holds the whole file.  CSV
and .npz files, and every file on the other backends, are read whole (within
``--max-bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import DataError
from engine.graph.shapes import format_shape
from engine.io.arrays import CsvTable, load_array, load_npz, read_csv_table
from engine.io.lazy import NpyRows, lazy_npy
from engine.io.zarrs import zarr_arrays
from engine.runtime.backends import Backend
from engine.train.checks import Locate

FORMATS = (".csv", ".npy", ".npz", ".zarr")


@dataclass(frozen=True)
class NamedArrays:
    """The arrays of an .npz file or a .zarr store: each input takes one whole array, rows on
    axis 0 (NumPy arrays, or Dask arrays read lazily)."""

    path: Path
    arrays: dict[str, Any]

    @property
    def kind(self) -> str:
        return "a .zarr store" if self.path.suffix.lower() == ".zarr" else "an .npz file"

    def locator(self, key: str, at_index: bool = True) -> Locate:
        """Names an index of array ``key`` (what travels in a Dask task: no data)."""
        return _ArrayIndex(str(self.path), key, at_index)


@dataclass(frozen=True)
class NpyTable:
    """A .npy data file: one [rows, columns] table of numbers, columns by 0-based index (as in
    a CSV file without a header); NumPy, or a Dask array read lazily."""

    path: Path
    data: Any
    header: None = None

    def locator(self, columns: list[int]) -> Locate:
        return _NpyCell(str(self.path), tuple(columns))


Source = CsvTable | NpyTable | NamedArrays


def open_source(file: Path, max_bytes: int, backend: Backend | None = None) -> Source:
    """``file`` as a table or named arrays; on ``backend`` Dask, a .npy or .zarr file as
    Dask arrays read chunk by chunk (``backend.rows_per_chunk``: ``--chunk-rows``)."""
    suffix = file.suffix.lower()
    lazy = backend is not None and backend.name == "dask"
    if suffix == ".csv":
        return read_csv_table(file, max_bytes=max_bytes)
    if suffix == ".npz":
        return NamedArrays(file, load_npz(file, max_bytes=max_bytes))
    if suffix == ".zarr":
        return NamedArrays(file, zarr_arrays(file, max_bytes=max_bytes, rows_per_chunk=(
            backend.rows_per_chunk if lazy and backend is not None else None)))
    if suffix == ".npy":
        if lazy and backend is not None:
            reader = NpyRows.open(file)
            data = lazy_npy(file, backend.rows_per_chunk(reader))
        else:
            data = load_array(file, max_bytes=max_bytes)
        if data.ndim != 2:
            raise DataError(f"{file}: holds a {format_shape(data.shape)} {data.dtype} array; "
                            "a .npy data file is one table [rows, columns], whose columns "
                            "train.inputs maps (columns: [0, 1, ...], label: INDEX); for "
                            "arrays of other shapes use an .npz file or a .zarr store")
        return NpyTable(file, data)
    raise DataError(f"{file}: unknown data format {suffix or '(no suffix)'!r}; a data file "
                    "is a .csv file (numbers, with a header row), a .npy table of numbers, or "
                    "an .npz file or .zarr store of named arrays")


@dataclass(frozen=True)
class _ArrayIndex:
    path: str
    key: str
    at_index: bool

    def __call__(self, index: tuple[int, ...]) -> str:
        at = f", at index {list(index)}" if self.at_index else ""
        return f"{self.path}: array {self.key!r}, row {index[0]} (0-based){at}"


@dataclass(frozen=True)
class _NpyCell:
    path: str
    columns: tuple[int, ...]

    def __call__(self, index: tuple[int, ...]) -> str:
        column = self.columns[index[1] if len(index) > 1 else 0]
        return f"{self.path}: row {index[0]} (0-based), column index {column}"
