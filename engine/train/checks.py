"""Checks of a data file's values, the same whether the data is whole or read lazily.

A value the graph cannot take (a NaN feature, a label that is no class index, a
fraction fed to an integer input) is a DataError that names the file and where
in it.  Data read whole is checked at once, before the first step; data read
chunk by chunk (Dask: a memory-mapped .npy, a .zarr) is checked inside the task
graph, each block as it is read, with its indices counted in the whole file,
because checking it here first would mean reading all of it into this process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.errors import DataError
from engine.graph.targets import block_corner, shifted
from engine.runtime.feeds import is_lazy

#: Where an index of the whole array is, for a message: ``FILE:LINE: column 3``.
Locate = Callable[[tuple[int, ...]], str]


@dataclass(frozen=True)
class ValueCheck:
    """``finite``: every value a finite number.  ``labels``: whole numbers 0..classes-1.
    ``integers``: whole numbers that ``dtype`` (an integer or bool dtype) holds.
    ``what`` names the input for the message."""

    kind: Literal["finite", "labels", "integers"]
    locate: Locate
    what: str = ""
    classes: int = 0
    dtype: str = ""

    def apply(self, array: Any) -> Any:
        """``array``, checked: now, or (a Dask array) each block where it is computed."""
        if not is_lazy(array):
            self(array)
            return array
        return array.map_blocks(self._block, dtype=array.dtype, meta=array._meta)

    def __call__(self, array: np.ndarray, start: tuple[int, ...] = ()) -> None:
        """A DataError for the first bad value of ``array``, which begins at ``start`` in
        the whole array (a block's corner)."""
        array = np.asarray(array)
        bad = self._bad(array)
        if bad.any():
            index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
            raise DataError(f"{self.locate(shifted(index, start))}: "
                            f"{self._why(array[index])}")

    def _block(self, block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        self(block, block_corner(block_info))
        return block

    def _bad(self, array: np.ndarray) -> np.ndarray:
        if self.kind == "finite":
            return ~np.isfinite(array)
        whole = array == np.round(array)
        if self.kind == "labels":
            return ~(whole & (array >= 0) & (array < self.classes))
        return ~(whole & within(array, self.dtype))

    def _why(self, value: Any) -> str:
        if self.kind == "finite":
            return f"{value} is not a finite number"
        if self.kind == "labels":
            return f"label {value:g} is not a class index 0..{self.classes - 1} ({self.what})"
        low, high = _bounds(self.dtype)
        return f"{value:g} is not a whole number {low}..{high}, but {self.what} has dtype " \
               f"{self.dtype}"


def within(array: np.ndarray, dtype: str) -> np.ndarray:
    """Where ``array``'s whole numbers fit the integer (or bool) ``dtype``.  The upper test
    is ``< high + 1``: int64's largest, 2^63 - 1, is 2^63 as a float, so ``<= high`` would
    let 2.0**63 in, which the cast then wraps to -2^63; 2^63 itself is exact in float."""
    low, high = _bounds(dtype)
    return (array >= low) & (array < high + 1)


def _bounds(dtype: str) -> tuple[int, int]:
    if dtype == "bool":
        return 0, 1
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)
