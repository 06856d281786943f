"""Reading arrays from .npy, .npz and .csv files, with errors that name the file, row and column.

Data files are user input like specs: a bad one is a DataError that says where,
never a traceback from NumPy or the csv module.
"""

from __future__ import annotations

import csv
import math
import tokenize
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from engine.errors import DataError
from engine.graph.budget import human_bytes
from engine.io.paths import not_a_regular_file

#: The check a caller may make of an array's shape and dtype, read from its header, before
#: any of its data is read (or decompressed).
HeaderCheck = Callable[[tuple[int, ...], np.dtype], None]


def load_array(path: str | Path, key: str | None = None, check: HeaderCheck | None = None
               ) -> np.ndarray:
    """An array from a .npy file, an .npz file (``key`` picks the array) or a numeric CSV.

    ``check`` sees the shape and dtype of a .npy or .npz array before its data is read.
    """
    path = Path(path)
    require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_numpy(path, check)
    if suffix == ".npz":
        return _load_npz(path, key, check)
    if suffix == ".csv":
        return load_csv(path)
    raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; use .npy, .npz "
                    "or .csv")


def require_file(path: Path, option: str = "") -> None:
    """Raise a DataError unless ``path`` is a regular file (missing, a folder and a device or
    pipe are told apart); ``option`` (``--data``) prefixes the message when the path came from
    the command line."""
    where = f"{option} {path}" if option else str(path)
    problem = not_a_regular_file(path)
    if problem:
        raise DataError(f"{where}: {problem}")


def _load_numpy(path: Path, check: HeaderCheck | None) -> np.ndarray:
    try:
        with path.open("rb") as handle:
            _read_header(handle, str(path), path.stat().st_size, check)
            handle.seek(0)
            return np.lib.format.read_array(handle, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


def _read_header(handle: IO[bytes], where: str, size: int, check: HeaderCheck | None,
                 numbers: bool = True) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a .npy stream's header claims, checked against the ``size`` of the
    whole stream before any data is read: a header may claim 10^12 elements over a few bytes.
    ``numbers`` refuses strings and other non-numbers (data must be numbers; a checkpoint's
    metadata is text)."""
    if handle.read(6) != b"\x93NUMPY":
        raise DataError(f"{where}: not a .npy file (it lacks NumPy's header); write it with "
                        "numpy.save, or feed a .csv of numbers")
    handle.seek(0)
    try:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
    except (ValueError, SyntaxError, TypeError, OverflowError, tokenize.TokenError) as exc:
        raise DataError(f"{where}: the .npy header is malformed ({exc})") from None
    if dtype.hasobject:  # reading it would unpickle: never
        raise DataError(f"{where}: holds Python objects, which are never unpickled; save an "
                        "array of numbers")
    if numbers and dtype.kind not in "biufc":
        raise DataError(f"{where}: holds {_dtype_words(dtype)}, not numbers; class labels are "
                        "integers 0 .. K-1 (map names to indices first)")
    claimed = math.prod(shape) * dtype.itemsize
    held = size - handle.tell()
    if claimed != held:
        raise DataError(f"{where}: the header says shape {_shape(shape)} of {dtype} "
                        f"({human_bytes(claimed)}), but the file holds {held:,} bytes of data; "
                        "the file is damaged or was not written by numpy.save")
    if check is not None:
        check(tuple(shape), dtype)
    return tuple(shape), dtype


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def _dtype_words(dtype: np.dtype) -> str:
    return {"U": "strings", "S": "byte strings", "V": "records",
            "M": "dates", "m": "time spans"}.get(dtype.kind, f"values of type {dtype}")


def _load_npz(path: Path, key: str | None, check: HeaderCheck | None) -> np.ndarray:
    with _open_npz(path) as archive:
        names = _members(path, archive)
        if key is not None and key in names:
            chosen = key
        elif len(names) == 1:
            chosen = next(iter(names))
        else:
            raise DataError(f"{path}: holds arrays {', '.join(names) or '(none)'}; none is named "
                            f"{key!r}")
        return _read_member(path, archive, chosen, names[chosen], check)


def load_npz(path: Path, numbers: bool = True) -> dict[str, np.ndarray]:
    """Every array of an .npz file, by name; nothing pickled is ever loaded, and each member's
    header is checked before the member is decompressed (``numbers``: as in ``_read_header``)."""
    require_file(path)
    with _open_npz(path) as archive:
        names = _members(path, archive)
        return {name: _read_member(path, archive, name, member, None, numbers)
                for name, member in names.items()}


def _open_npz(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        try:
            with path.open("rb") as handle:
                npy = handle.read(6) == b"\x93NUMPY"
        except OSError:
            npy = False
        if npy:
            raise DataError(f"{path}: holds one array (.npy format), not an .npz archive of "
                            "named arrays; write it with numpy.savez") from None
        raise DataError(f"{path}: not a readable .npz file (not a zip archive); write it with "
                        "numpy.savez") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Array name -> archive member; a member that is not a .npy array is an error."""
    names: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise DataError(f"{path}: member {info.filename!r} is not a .npy array; an .npz "
                            "file holds only arrays (write it with numpy.savez)")
        names[info.filename.removesuffix(".npy")] = info
    return names


def _read_member(path: Path, archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo,
                 check: HeaderCheck | None, numbers: bool = True) -> np.ndarray:
    where = f"{path}: array {name!r}"
    try:
        with archive.open(info) as member:  # the header only: nothing else is decompressed
            _read_header(member, where, info.file_size, check, numbers)
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DataError(f"{where}: not readable ({exc})") from None


@dataclass(frozen=True)
class CsvTable:
    """A numeric CSV with what error messages need: the header and each row's line number."""

    path: Path
    header: list[str] | None
    data: np.ndarray
    lines: np.ndarray

    def column_name(self, col: int) -> str:
        """``column 3 ('ash')``: 1-based, as a spreadsheet shows it, with the header's name."""
        return _column_label(self.header, col)


def load_csv(path: Path) -> np.ndarray:
    """A 2-D float array from a CSV of numbers; a first row of non-numbers is a header."""
    return read_csv_table(path).data


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
    for index, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}:{line}: row has {len(row)} columns, expected {width}")
        for col, cell in enumerate(row):
            try:
                data[index, col] = float(cell)
            except ValueError:
                raise DataError(f"{path}:{line}: {_column_label(header, col)}: {cell!r} is not "
                                "a number") from None
    return CsvTable(path, header, data, np.array([line for line, _ in rows]))


def _column_label(header: list[str] | None, col: int) -> str:
    name = f" ({header[col]!r})" if header is not None else ""
    return f"column {col + 1}{name}"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
