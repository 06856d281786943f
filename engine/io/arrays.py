"""Reading arrays from .npy, .npz and .csv files, with errors that name the file, row and column.

Data files are user input like specs: a bad one is a DataError that says where,
never a traceback from NumPy or the csv module.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import DataError


def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """An array from a .npy file, an .npz file (``key`` picks the array) or a numeric CSV."""
    path = Path(path)
    require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_numpy(path)
    if suffix == ".npz":
        return _load_npz(path, key)
    if suffix == ".csv":
        return load_csv(path)
    raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; use .npy, .npz "
                    "or .csv")


def require_file(path: Path, option: str = "") -> None:
    """Raise a DataError unless ``path`` is a file (missing and a folder are told apart);
    ``option`` (``--data``) prefixes the message when the path came from the command line."""
    where = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise DataError(f"{where}: is a folder, not a file")
    if not path.is_file():
        raise DataError(f"{where}: no such file")


def _load_numpy(path: Path) -> np.ndarray:
    try:
        with path.open("rb") as handle:
            magic = handle.read(6)
        if magic != b"\x93NUMPY":
            raise DataError(f"{path}: not a .npy file (it lacks NumPy's header); write it with "
                            "numpy.save, or feed a .csv of numbers")
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():  # NumPy suggests loading it unsafely: we never do
            raise DataError(f"{path}: holds Python objects, which are never unpickled; save an "
                            "array of numbers") from None
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    arrays = load_npz(path)
    if key is not None and key in arrays:
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataError(f"{path}: holds arrays {', '.join(arrays) or '(none)'}; none is named "
                    f"{key!r}")


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, by name; nothing pickled is ever loaded."""
    require_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file, whatever its name
        raise DataError(f"{path}: holds one array (.npy format), not an .npz archive of named "
                        "arrays; write it with numpy.savez")
    try:
        with loaded as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


@dataclass(frozen=True)
class CsvTable:
    """A numeric CSV with what error messages need: the header and each row's line number."""

    path: Path
    header: list[str] | None
    data: np.ndarray
    lines: np.ndarray
    #: Whether every cell is written as an integer (digits, maybe signed).
    integral: bool = False

    def column_name(self, col: int) -> str:
        """``column 3 ('ash')``: 1-based, as a spreadsheet shows it, with the header's name."""
        return _column_label(self.header, col)


def load_csv(path: Path) -> np.ndarray:
    """A 2-D array from a CSV of numbers; a first row of non-numbers is a header.

    int64 when every cell is written as an integer (``3``, not ``3.0``), so that a
    column of class labels feeds an int64 input; float64 otherwise.
    """
    table = read_csv_table(path)
    return table.data.astype(np.int64) if table.integral else table.data


def read_csv_table(path: Path) -> CsvTable:
    """Read a numeric CSV; a ragged row or a non-number is an error naming its line and column."""
    require_file(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    header: list[str] | None = None
    if not any(_is_number(cell) for cell in rows[0][1]):
        header, rows = [cell.strip() for cell in rows[0][1]], rows[1:]
    if not rows:
        raise DataError(f"{path}: the file holds a header but no data rows")
    width = len(header) if header is not None else len(rows[0][1])
    data = np.empty((len(rows), width))
    integral = True
    for index, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}:{line}: row has {len(row)} columns, expected {width}")
        for col, cell in enumerate(row):
            try:
                data[index, col] = float(cell)
            except ValueError:
                raise DataError(f"{path}:{line}: {_column_label(header, col)}: {cell!r} is not "
                                "a number") from None
        integral = integral and all(cell.strip().lstrip("+-").isdigit() for cell in row)
    integral = integral and bool(np.all(np.abs(data) < 2.0 ** 53))  # exact in float64
    return CsvTable(path, header, data, np.array([line for line, _ in rows]), integral)


def _column_label(header: list[str] | None, col: int) -> str:
    name = f" ({header[col]!r})" if header is not None else ""
    return f"column {col + 1}{name}"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
