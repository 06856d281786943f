"""Reading a .zarr store of named arrays: whole, or as Dask arrays read chunk by chunk.

zarr is an optional extra (``pip install -e ".[zarr]"``), imported only when a
.zarr store is read.  A store is a folder; the engine reads the arrays at the
top of a zarr group, by name, as it reads the arrays of an .npz file.  Read whole,
their sizes (from the metadata) must fit in ``--max-bytes`` before any is read;
read lazily (a Dask array over ``ZarrRows``, as ``dask.array.from_zarr`` makes one),
each task reads only its own rows, and a chunk that cannot be decoded is a
DataError naming the array and rows.  A chunk file that is missing reads as the
array's fill value: zarr's own rule (a chunk equal to it is not written), so it
cannot be told from one that was never written.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.io.arrays import within_budget

INSTALL = 'pip install -e ".[zarr]"'


def zarr_arrays(path: Path, *, max_bytes: int,
                rows_per_chunk: Callable[[Any], int] | None = None) -> dict[str, Any]:
    """The arrays of the zarr group at ``path``, by name: with ``rows_per_chunk`` (given an
    array, its rows per chunk) Dask arrays of that many rows a chunk, else NumPy arrays
    read whole."""
    arrays: dict[str, Any] = {}
    total = 0
    for name, array in _open_group(path):
        dtype = np.dtype(array.dtype)
        rows = ZarrRows(str(path), name, array)
        if rows_per_chunk is not None:
            da = importlib.import_module("dask.array")
            chunks = (rows_per_chunk(array), *array.shape[1:]) if array.ndim else ()
            arrays[name] = da.from_array(rows, chunks=chunks, meta=np.empty((0,) * rows.ndim,
                                                                            dtype))
            continue
        total += within_budget(f"{path}: array {name!r}", tuple(array.shape), dtype,
                               max_bytes, total)
        arrays[name] = rows[...]
    return arrays


@dataclass(frozen=True)
class ZarrRows:
    """A zarr array whose reads are DataErrors when its chunks cannot be decoded (a zarr
    array pickles as its store's path and metadata: no data travels in a task)."""

    path: str
    name: str
    array: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self.array[key])
        except Exception as exc:  # each codec raises its own kinds (RuntimeError, zlib.error)
            rows = key[0] if isinstance(key, tuple) and key else key
            where = f"rows {rows.start}..{rows.stop - 1}" if isinstance(rows, slice) and \
                rows.stop is not None and rows.start is not None else "its data"
            raise DataError(f"{self.path}: array {self.name!r}: {where} cannot be read "
                            f"({type(exc).__name__}: {exc}); the store is damaged: write it "
                            "again") from None


def _open_group(path: Path) -> list[tuple[str, Any]]:
    """The arrays at the top of the group, sorted by name; every problem a DataError."""
    try:
        zarr = importlib.import_module("zarr")
    except ImportError:
        raise DataError(f"{path}: reading a .zarr store needs zarr, an optional extra: "
                        f"{INSTALL}") from None
    if not path.exists():
        raise DataError(f"{path}: no such .zarr store (a folder that zarr writes)")
    if not path.is_dir():
        raise DataError(f"{path}: a file, not a .zarr store (a folder that zarr writes, such "
                        "as zarr.open_group(PATH, mode='w') with an array per input)")
    try:
        node = zarr.open(str(path), mode="r")
        if not hasattr(node, "arrays"):
            raise DataError(f"{path}: holds one zarr array, not a group of named arrays; "
                            "write zarr.open_group(PATH, mode='w') with an array per input")
        return sorted(node.arrays(), key=lambda item: item[0])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{path}: not a readable zarr group ({exc})") from None

