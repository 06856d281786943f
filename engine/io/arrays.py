"""Reading arrays from .npy, .npz and .csv files, with errors that name the file, row and column.

Data files are user input like specs: a bad one is a DataError that says where,
never a traceback from NumPy or the csv module.
"""

from __future__ import annotations

import csv
import math
import warnings
import zipfile
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError
from typing import IO

import numpy as np

from engine.errors import DataError
from engine.graph.shapes import format_shape
from engine.io.paths import not_a_regular_file
from engine.limits import DEFAULT_MAX_BYTES, human_bytes


def load_array(path: str | Path, key: str | None = None, *,
               max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """An array from a .npy file, an .npz file (``key`` picks the array) or a numeric CSV;
    nothing larger than ``max_bytes`` is read (headers are checked first)."""
    path = Path(path)
    require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_numpy(path, max_bytes)
    if suffix == ".npz":
        return _load_npz(path, key, max_bytes)
    if suffix == ".csv":
        return load_csv(path, max_bytes=max_bytes)
    raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; use .npy, .npz "
                    "or .csv")


def require_file(path: Path, option: str = "") -> None:
    """Raise a DataError unless ``path`` is a regular file (missing, a folder, a device and a
    FIFO are told apart: reading /dev/zero never ends, a FIFO blocks); ``option``
    (``--data``) prefixes the message when the path came from the command line."""
    where = f"{option} {path}" if option else str(path)
    problem = not_a_regular_file(path)
    if problem is not None:
        raise DataError(f"{where}: {problem}")


def _load_numpy(path: Path, max_bytes: int) -> np.ndarray:
    try:
        with path.open("rb") as handle:
            shape, dtype, _ = npy_header(handle, str(path))
            within_budget(str(path), shape, dtype, max_bytes)
            return _read_npy(handle, str(path))
    except OSError as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


#: What NumPy's header parser (ast.literal_eval over tokenize) raises on a malformed header.
_MALFORMED = (ValueError, SyntaxError, TypeError, OverflowError, EOFError, TokenError,
              RecursionError, MemoryError)


def npy_header(handle: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """The shape, dtype and Fortran order a .npy stream's header declares, read before any
    data (the stream is left where the data begins)."""
    try:
        version = np.lib.format.read_magic(handle)
    except ValueError:
        raise DataError(f"{where}: not a .npy file (it lacks NumPy's header); write it with "
                        "numpy.save, or feed a .csv of numbers") from None
    try:
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(handle)
    except _MALFORMED as exc:
        raise DataError(f"{where}: the .npy header is malformed ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects, which are never unpickled; save an "
                        "array of numbers")
    return tuple(shape), dtype, fortran


def within_budget(where: str, shape: tuple[int, ...], dtype: np.dtype, max_bytes: int,
                   before: int = 0) -> int:
    """The bytes an array of ``shape`` takes, or a DataError when it and ``before`` (what the
    file's other arrays take) exceed ``max_bytes``: checked on the header, so that a file
    claiming 10**12 elements is refused before any is read."""
    size = math.prod(shape) * dtype.itemsize  # Python ints: 2**70 elements do not overflow
    if before + size > max_bytes:
        others = f" (and {human_bytes(before)} in the arrays before it)" if before else ""
        raise DataError(f"{where}: holds a {format_shape(shape)} {dtype} array, "
                        f"{human_bytes(size)}{others}, over the budget of "
                        f"{human_bytes(max_bytes)} (--max-bytes); raise --max-bytes if the "
                        "array is meant")
    return size


def _read_npy(handle: IO[bytes], where: str) -> np.ndarray:
    """The array after a header that ``npy_header`` read and checked."""
    handle.seek(0)
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:  # fewer bytes than the header declares
        raise DataError(f"{where}: not a readable .npy file ({exc})") from None


def _load_npz(path: Path, key: str | None, max_bytes: int) -> np.ndarray:
    arrays = load_npz(path, max_bytes=max_bytes, only=key)
    if key is not None and key in arrays:
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataError(f"{path}: holds arrays {', '.join(arrays) or '(none)'}; none is named "
                    f"{key!r}")


def load_npz(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, only: str | None = None
             ) -> dict[str, np.ndarray]:
    """Every array of an .npz file, by name; nothing pickled is ever loaded.

    Each member's .npy header is read first, and the arrays together must fit in
    ``max_bytes``, so a zip bomb (a small file that inflates to gigabytes) is refused
    before anything is inflated: a member is read only up to what its header declares.
    With ``only``, just the array of that name is read when the file holds it (an init
    file of engine import holds every parameter of a model, read one tensor at a time).
    """
    require_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_members(path, archive, max_bytes, only)
    except zipfile.BadZipFile:
        with path.open("rb") as handle:
            if handle.read(6) == b"\x93NUMPY":
                raise DataError(f"{path}: holds one array (.npy format), not an .npz archive of "
                                "named arrays; write it with numpy.savez") from None
        raise DataError(f"{path}: not a readable .npz file (not a zip archive)") from None
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError,
            zipfile.LargeZipFile) as exc:  # a corrupt or encrypted member
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _read_members(path: Path, archive: zipfile.ZipFile, max_bytes: int, only: str | None
                  ) -> dict[str, np.ndarray]:
    members = [info for info in archive.infolist() if not info.is_dir()]
    wanted = [info for info in members if info.filename == f"{only}.npy"]
    members = wanted or members
    total = 0
    for info in members:  # every header first: nothing is inflated past a header
        if not info.filename.endswith(".npy"):
            raise DataError(f"{path}: member {info.filename!r} is not a .npy array; an .npz "
                            "file holds arrays written by numpy.savez")
        where = f"{path}: array {info.filename.removesuffix('.npy')!r}"
        with archive.open(info) as member:
            shape, dtype, _ = npy_header(member, where)  # type: ignore[arg-type]
        total += within_budget(where, shape, dtype, max_bytes, total)
    arrays = {}
    for info in members:
        name = info.filename.removesuffix(".npy")
        with archive.open(info) as member:
            try:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
            except (ValueError, EOFError) as exc:
                raise DataError(f"{path}: array {name!r} is not readable ({exc})") from None
    return arrays


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

    def locator(self, columns: list[int]) -> Callable[[tuple[int, ...]], str]:
        """Names an index of the array of ``columns`` (1-D: of the first) by line and column."""
        return lambda index: f"{self.path}:{self.lines[index[0]]}: " \
                             f"{self.column_name(columns[index[1] if len(index) > 1 else 0])}"


def load_csv(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """A 2-D array from a CSV of numbers; a first row of non-numbers is a header.

    int64 when every value is a whole number (below 2**53, where float64 is exact), so
    that a column of class labels feeds an int64 input; float64 otherwise (an int64
    array feeds a float input as well).
    """
    data = read_csv_table(path, max_bytes=max_bytes).data
    whole = bool(np.all(np.abs(data) < 2.0 ** 53)) and bool(np.all(data == np.trunc(data)))
    return data.astype(np.int64) if whole else data


def read_csv_table(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CsvTable:
    """Read a numeric CSV; a ragged row or a non-number is an error naming its line and column.

    One streaming pass first counts the cells, so that the array's size is checked
    against ``max_bytes`` before it exists.  A plain file (no quotes, no blank lines,
    no carriage returns) is then parsed by NumPy's C reader; any other file, and any
    file that reader refuses, by the careful parser, which names the line and column
    of the first problem.
    """
    require_file(path)
    scan = _scan(path)
    cells = scan.commas + scan.lines
    if cells * 8 > max_bytes:
        raise DataError(f"{path}: holds up to {cells:,} numbers, {human_bytes(cells * 8)} as "
                        f"float64, over the budget of {human_bytes(max_bytes)} (--max-bytes); "
                        "raise --max-bytes if the data is meant")
    table = _fast_table(path, scan) if scan.plain else None
    return table if table is not None else _careful_table(path)


@dataclass(frozen=True)
class _Scan:
    """What one pass over a CSV's bytes finds: its lines and commas, and whether it is plain."""

    lines: int
    commas: int
    plain: bool


_CHUNK = 1 << 20


def _scan(path: Path) -> _Scan:
    lines = commas = 0
    plain, previous, last = True, b"\n", b""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                lines += chunk.count(b"\n")
                commas += chunk.count(b",")
                if plain and (b'"' in chunk or b"\r" in chunk or b"\n\n" in chunk
                              or (previous == b"\n" and chunk[:1] == b"\n")):
                    plain = False
                previous = last = chunk[-1:]
    except OSError as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc.strerror or exc})") from None
    if last and last != b"\n":
        lines += 1  # a last line without a newline
    return _Scan(lines, commas, plain)


def _fast_table(path: Path, scan: _Scan) -> CsvTable | None:
    """The table by NumPy's C parser, or None when it refuses the file or reads it
    differently from the careful parser (which then says what is wrong, and where)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:  # Excel's BOM: no cell
            first = next(csv.reader([handle.readline()]), [])
        header = None if any(_is_number(cell) for cell in first) else \
            [cell.strip() for cell in first]
        skip = 0 if header is None else 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the careful one says
            data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, comments=None,
                              skiprows=skip, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, OSError):
        return None
    rows = scan.lines - skip
    width = len(header) if header is not None else len(first)
    if rows < 1 or data.shape != (rows, width):
        return None
    return CsvTable(path, header, data, np.arange(skip + 1, skip + 1 + rows))


def _careful_table(path: Path) -> CsvTable:
    """Row by row with the csv module, stopping at the first problem; the numbers go into a
    flat buffer of doubles (8 bytes each, as in the array) rather than lists of cells."""
    header: list[str] | None = None
    width: int | None = None
    values = array("d")
    lines: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # as above
            reader = csv.reader(handle)
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if width is None:
                    if not any(_is_number(cell) for cell in row):
                        header = [cell.strip() for cell in row]
                        width = len(header)
                        continue
                    width = len(row)
                if len(row) != width:
                    raise DataError(f"{path}:{line}: row has {len(row)} columns, expected "
                                    f"{width}")
                for col, cell in enumerate(row):
                    try:
                        values.append(float(cell))
                    except ValueError:
                        raise DataError(f"{path}:{line}: {_column_label(header, col)}: {cell!r} "
                                        "is not a number") from None
                lines.append(line)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None
    if width is None:
        raise DataError(f"{path}: the file holds no rows")
    if not lines:
        raise DataError(f"{path}: the file holds a header but no data rows")
    data = np.frombuffer(values, dtype=np.float64).reshape(len(lines), width)
    return CsvTable(path, header, data, np.array(lines))


def _column_label(header: list[str] | None, col: int) -> str:
    name = f" ({header[col]!r})" if header is not None else ""
    return f"column {col + 1}{name}"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
