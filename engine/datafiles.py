"""Reading arrays from .npy, .npz and .csv files, with errors that name the file, row and column.

Writing is atomic: data goes to a temporary file in the target's folder, which
then replaces the target in one step, so a reader sees the old file or the new
one, never half of one.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from engine.errors import DataError


def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """An array from a .npy file, an .npz file (``key`` picks the array) or a numeric CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_numpy(path)
    if suffix == ".npz":
        return _load_npz(path, key)
    if suffix == ".csv":
        return load_csv(path)
    raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; use .npy, .npz "
                    "or .csv")


def _load_numpy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is not None and key in names:
                return archive[key]
            if len(names) == 1:
                return archive[names[0]]
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    raise DataError(f"{path}: holds arrays {', '.join(names) or '(none)'}; none is named "
                    f"{key!r}")


def load_csv(path: Path) -> np.ndarray:
    """A 2-D float array from a CSV of numbers; a first row of non-numbers is a header."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    header: list[str] | None = None
    first_line = 1
    if not any(_is_number(cell) for cell in rows[0]):
        header, rows, first_line = rows[0], rows[1:], 2
    if not rows:
        raise DataError(f"{path}: the file holds a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    data = np.empty((len(rows), width))
    for index, row in enumerate(rows):
        line = first_line + index
        if len(row) != width:
            raise DataError(f"{path}:{line}: row has {len(row)} columns, expected {width}")
        for col, cell in enumerate(row):
            try:
                data[index, col] = float(cell)
            except ValueError:
                name = f" ({header[col]!r})" if header is not None else ""
                raise DataError(f"{path}:{line}: column {col + 1}{name}: {cell!r} is not a "
                                "number") from None
    return data


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(f"{path}: folder {str(folder)!r} does not exist")
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, before the rename
        dir=folder, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
