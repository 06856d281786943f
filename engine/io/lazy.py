"""A .npy file read chunk by chunk where Dask computes, never whole into one process.

``NpyRows`` stands for the file in a Dask graph: it pickles as its path, header
offset, shape and dtype (a pickled ``np.memmap`` would carry the whole array),
and each chunk's task opens the file memory-mapped and copies out only its rows.
The header (dtype, shape, order) is checked when the file is opened, before any
data is read.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.io.arrays import npy_header, require_file


@dataclass(frozen=True)
class NpyRows:
    """An .npy file as an array-like that ``dask.array.from_array`` slices."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def open(cls, path: Path) -> NpyRows:
        """The file's header, checked: numbers (never objects), C order; no data is read."""
        require_file(path)
        try:
            with path.open("rb") as handle:
                shape, dtype, fortran = npy_header(handle, str(path))
                offset = handle.tell()
        except OSError as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc})") from None
        if dtype.kind not in "biuf":
            raise DataError(f"{path}: holds {dtype}, not real numbers; save an array of "
                            "integers or floats")
        if fortran and len(shape) > 1:
            raise DataError(f"{path}: stored in Fortran (column) order, whose rows are not "
                            "consecutive bytes; save it with numpy.save of a C-ordered array")
        if not shape:
            raise DataError(f"{path}: holds a single number, not rows to read in chunks; feed it "
                            "with --backend numpy, or save an array with rows")
        expected = offset + math.prod(shape) * dtype.itemsize
        if os.path.getsize(path) < expected:
            raise DataError(f"{path}: the header declares {expected - offset} bytes of data, "
                            "but the file is shorter")
        return cls(str(path), offset, tuple(shape), dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def __getitem__(self, key: Any) -> np.ndarray:
        """The rows ``key`` selects, copied out of a memory map opened for this read only."""
        mapped = np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
        try:
            return np.array(mapped[key])
        finally:
            del mapped


def lazy_npy(path: Path, rows_per_chunk: int) -> Any:
    """The .npy file at ``path`` as a Dask array of ``rows_per_chunk`` rows a chunk, each
    read by its own task; the name covers the file's size and time, so an edited file is
    never taken for a cached one."""
    da = importlib.import_module("dask.array")
    reader = NpyRows.open(path)
    stat = os.stat(path)
    token = importlib.import_module("dask.base").tokenize(
        reader, stat.st_size, stat.st_mtime_ns, rows_per_chunk)
    return da.from_array(reader, chunks=(rows_per_chunk, *reader.shape[1:]),
                         meta=np.empty((0,) * reader.ndim, reader.dtype),
                         name=f"npy-{Path(path).name}-{token}")
