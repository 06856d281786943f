"""The training data: a file's columns or arrays mapped onto the graph's inputs, split and
standardised.

Everything that can be wrong with the data is found here, before the first
step, and named by file, line and column: a missing file, a ragged row, a cell
that is not a number (engine.io.arrays), a column the header lacks, a label
that is not a class index, too few rows for the split.  Mapping problems that
are the spec's fault (an input that does not exist, a column count that does
not match the input's shape) are SpecErrors located in the ``train:`` section.

Data read lazily (a .npy or .zarr file on the Dask backend, engine.train.sources)
is never read here: its shapes and dtypes are checked here, its values inside
the task graph as each chunk is read (engine.train.checks), with the same
located errors.  Its splits keep the file's row order, and ``Dataset.batch``
gives each mini-batch the rows NumPy's batch has, read in the file's order.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError, Problems, did_you_mean
from engine.graph.model import Graph, Value
from engine.graph.shapes import format_shape
from engine.io.arrays import CsvTable
from engine.ops.base import INT_DTYPES
from engine.runtime.backends import Backend
from engine.runtime.feeds import conversion_problem, is_lazy, one_hot_rows, tensor_rng
from engine.train.checks import Locate, ValueCheck, within
from engine.train.metrics import measured
from engine.train.sources import NamedArrays, NpyTable, Source, open_source
from schemas.train import InputData, TrainConfig

Arrays = dict[str, np.ndarray]  # or Dask arrays, for data read lazily

#: Rows per block that a lazily read data set's fingerprint hashes (whatever --chunk-rows is).
FINGERPRINT_ROWS = 1 << 16


@dataclass
class Dataset:
    """Feeds for the training, validation and test rows, ready to slice into batches.

    The validation rows are a seeded split of ``file`` or, with ``val_data``, a
    file of their own; the test rows (``test_data``) are only measured.  Data read
    lazily keeps each part in the file's order; ``ranks`` then says where the rows of
    NumPy's training order are in it (None: the data is NumPy, in that order).
    """

    file: Path
    train: Arrays
    val: Arrays
    #: Per standardised input: (mean, std) over the training rows.
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    test: Arrays = field(default_factory=dict)
    val_file: Path | None = None
    test_file: Path | None = None
    ranks: np.ndarray | None = None
    #: Read lazily: the training and validation parts before standardisation, which the
    #: fingerprint hashes (the statistics' last bits depend on the chunking, --chunk-rows).
    unscaled: tuple[Arrays, Arrays] | None = None

    @property
    def lazy(self) -> bool:
        return self.ranks is not None

    def batch(self, index: np.ndarray) -> Arrays:
        """The training rows at ``index`` (positions in NumPy's training order).  Read
        lazily, the same rows in the file's order, so that each chunk is read in one
        slice (sums over them equal NumPy's to rounding); all of them: the arrays as
        they are."""
        if self.ranks is None:
            return {name: array[index] for name, array in self.train.items()}
        if len(index) == self.n_train:
            return dict(self.train)
        rows = np.sort(self.ranks[index])
        return {name: array[rows] for name, array in self.train.items()}

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint remembers of the data it was trained on, so that a resumed run
        on other data (or another split) is refused instead of mixing two runs' metrics.
        Data read lazily is hashed block by block where it is read (one pass over it), so
        its fingerprint differs from the same data's read whole (``read``)."""
        digest = hashlib.sha256()
        parts = [self.train, self.val] if self.unscaled is None else list(self.unscaled)
        if self.ranks is not None:
            digest.update(memoryview(np.ascontiguousarray(self.ranks)).cast("B"))
            blocks = list(importlib.import_module("dask").compute(
                *[_block_digests(part[name]) for part in parts for name in sorted(part)]))
        for part in parts:
            for name in sorted(part):
                array = part[name]
                digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
                data = np.ascontiguousarray(array) if self.ranks is None else blocks.pop(0)
                digest.update(memoryview(data).cast("B"))
        read = {"read": "lazily"} if self.ranks is not None else {}
        return {"sha256": digest.hexdigest(), "train_rows": self.n_train,
                "val_rows": self.n_val, **read}

    @property
    def n_train(self) -> int:
        return len(next(iter(self.train.values())))

    @property
    def n_val(self) -> int:
        return len(next(iter(self.val.values())))

    @property
    def n_test(self) -> int:
        return len(next(iter(self.test.values()))) if self.test else 0


def load_dataset(graph: Graph, config: TrainConfig, data_file: Path, seed: int, *,
                 val_file: Path | None = None, test_file: Path | None = None,
                 backend: Backend | None = None) -> Dataset:
    """Read ``data_file``, feed each mapped input, split by ``seed``, standardise on train rows.

    ``val_file`` and ``test_file`` default to ``train.val_data`` and ``train.test_data``
    (relative to the spec); with a validation file there is no split.  On ``backend``
    Dask, .npy and .zarr files are read lazily (engine.train.sources).
    """
    if val_file is None and config.val_data is not None:
        val_file = graph.base_dir / config.val_data
    if test_file is None and config.test_data is not None:
        test_file = graph.base_dir / config.test_data
    arrays = read_inputs(graph, config, data_file, backend=backend)
    rows = len(next(iter(arrays.values())))
    lazy = any(is_lazy(array) for array in arrays.values())
    if val_file is not None:
        dataset = Dataset(data_file, arrays, read_inputs(graph, config, val_file,
                                                         backend=backend),
                          val_file=val_file, ranks=np.arange(rows) if lazy else None)
    else:
        n_train, _ = split_sizes(rows, config.val_split, data_file)
        order = tensor_rng(seed, "train/split").permutation(rows)
        train_rows, val_rows = order[:n_train], order[n_train:]
        ranks = None
        if lazy:  # each part in the file's order: a chunk is read in one slice
            ranks = np.empty(n_train, np.int64)
            ranks[np.argsort(train_rows)] = np.arange(n_train)
            train_rows, val_rows = np.sort(train_rows), np.sort(val_rows)
        dataset = Dataset(data_file, {k: _take(a, train_rows) for k, a in arrays.items()},
                          {k: _take(a, val_rows) for k, a in arrays.items()}, ranks=ranks)
    if test_file is not None:
        dataset.test = read_inputs(graph, config, test_file, backend=backend)
        dataset.test_file = test_file
    if lazy:
        dataset.unscaled = (dict(dataset.train), dict(dataset.val))
    for name, entry in config.inputs.items():
        if entry.standardize:
            dataset.stats[name] = _standardize(dataset, name)
    return dataset


def _take(array: Any, rows: np.ndarray) -> Any:
    """``array[rows]``; all of a lazily read array's rows in order: the array itself."""
    if is_lazy(array) and len(rows) == len(array):
        return array
    return array[rows]


def _block_digests(array: Any) -> Any:
    """The SHA-256 of each block of FINGERPRINT_ROWS rows of Dask array ``array``, computed
    where the block is read: [blocks, 32] bytes."""
    flat = array.reshape(array.shape[0], -1).rechunk({0: FINGERPRINT_ROWS, 1: -1})
    return flat.map_blocks(_sha256, chunks=((1,) * flat.numblocks[0], (32,)), dtype=np.uint8)


def _sha256(block: np.ndarray) -> np.ndarray:
    digest = hashlib.sha256(memoryview(np.ascontiguousarray(block)).cast("B")).digest()
    return np.frombuffer(digest, np.uint8)[None, :]


def read_inputs(graph: Graph, config: TrainConfig, file: Path,
                names: Collection[str] | None = None, backend: Backend | None = None) -> Arrays:
    """The arrays that ``train.inputs`` maps from ``file``, by input name, unscaled.

    ``names`` limits them to those inputs (``predict`` reads no labels); every
    problem of the mapping is reported at once, located in the spec.  On ``backend``
    Dask a .npy or .zarr file gives Dask arrays, read where they are computed.
    """
    source = open_source(file, graph.max_bytes, backend)
    mapping = _Mapping(graph, config)
    arrays = {name: mapping.array(name, entry, source) for name, entry in config.inputs.items()
              if names is None or name in names}
    mapping.problems.raise_if_any()
    if not arrays:
        raise DataError(f"{file}: train.inputs maps none of the inputs needed "
                        f"({', '.join(sorted(names or ()))})")
    _same_rows(arrays, config, file)
    return arrays


def _same_rows(arrays: Arrays, config: TrainConfig, file: Path) -> int:
    """Every input's array has one row per sample: the same count (only .npz can differ)."""
    counts = {name: len(array) for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{config.inputs[n].array or config.inputs[n].label}: {c}"
                          for n, c in counts.items())
        raise DataError(f"{file}: the arrays that feed the inputs have different numbers of "
                        f"rows ({found}); every array needs one row per sample")
    return next(iter(counts.values()))


def split_sizes(rows: int, val_split: float, file: Path) -> tuple[int, int]:
    """Training and validation row counts; each non-empty part needs at least one row."""
    n_val = max(1, round(rows * val_split)) if val_split > 0 else 0
    if rows - n_val < 1:
        need = 1 if val_split == 0 else 2
        raise DataError(f"{file}: {rows} data row{'s' if rows != 1 else ''}, too few for a "
                        f"validation split of {val_split:g}: training needs at least one row and "
                        f"validation one more ({need} rows in all); add rows or set "
                        f"--val-split 0")
    return rows - n_val, n_val


def _standardize(dataset: Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Scale with the training rows' statistics only, so validation never leaks into training
    (data read lazily: computed in one pass over it, chunk by chunk)."""
    train = dataset.train[name]
    mean, std = train.mean(axis=0), train.std(axis=0)
    if is_lazy(train):
        mean, std = importlib.import_module("dask").compute(mean, std)
    std = np.where(std > 0, std, 1.0).astype(train.dtype)  # a constant column stays finite
    for part in (dataset.train, dataset.val, dataset.test):
        if name in part:
            part[name] = (part[name] - mean) / std
    return mean, std


class _Mapping:
    """Checks ``train.inputs`` against the graph and builds each input's array from the table."""

    def __init__(self, graph: Graph, config: TrainConfig):
        self.graph = graph
        self.config = config
        self.problems = Problems()
        inputs = {n: v for n, v in graph.values.items() if v.kind == "input"}
        for name in config.inputs:
            if name not in inputs:
                self.problem(("inputs", name), f"{name!r} is not an input of the graph"
                                               f"{did_you_mean(name, inputs)}; its inputs are: "
                                               f"{', '.join(inputs) or 'none'}")
        batch = {v.shape[0] for n, v in inputs.items() if n in config.inputs and v.shape}
        for name, value in inputs.items():
            if name not in config.inputs and value.shape and value.shape[0] in batch:
                self.problem(("inputs",), f"input {name!r} has the batch axis "
                                          f"{value.shape[0]!r} but no data: add "
                                          f"{name}: {{columns: [...]}} or {{label: COLUMN}}")
        self.problems.raise_if_any()
        self.used = {c for e in config.inputs.values() if isinstance(e.columns, list)
                     for c in e.columns} | {e.label for e in config.inputs.values()
                                            if e.label is not None}

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(self.graph.source.problem(("train", *path), message))

    def array(self, name: str, entry: InputData, source: Source) -> np.ndarray:
        """The array that feeds input ``name`` (rows on axis 0), or a placeholder after a
        problem, so that every problem of the mapping is reported at once."""
        value = self.graph.values[name]
        if isinstance(source, NamedArrays):
            if entry.columns is not None:
                self.problem(("inputs", name, "columns"),
                             f"{source.path} is {source.kind}, whose inputs take whole arrays: "
                             f"write {name}: {{array: NAME}}; its arrays are: "
                             f"{', '.join(source.arrays)}")
                return np.zeros(0)
            key = entry.array if entry.array is not None else entry.label
            path = ("inputs", name, "array" if entry.array is not None else "label")
            if not isinstance(key, str) or key not in source.arrays:
                self.problem(path, f"{source.path} has no array {key!r}"
                                   f"{did_you_mean(str(key), source.arrays)}; its arrays are: "
                                   f"{', '.join(source.arrays)}")
                return np.zeros(0)
            data = source.arrays[key]
            if data.dtype.kind not in "biuf":
                kind = "complex numbers, whose imaginary part would be lost" \
                    if data.dtype.kind == "c" else "no numbers"
                self.problem(path, f"array {key!r} of {source.path} holds {data.dtype}: "
                                   f"{kind}; feed an array of real numbers")
                return np.zeros(0)
            if entry.label is not None:
                return self._labels(name, value, data.astype(np.float64) if data.ndim == 1
                                    else None, source.locator(key, at_index=False))
            return self._whole_array(name, value, key, data, source)
        if entry.array is not None:
            kind = "a .npy table" if isinstance(source, NpyTable) else "a CSV file"
            self.problem(("inputs", name, "array"),
                         f"{source.path} is {kind}, whose inputs take columns: write "
                         f"{name}: {{columns: [...]}} (array: is for .npz or .zarr data)")
            return np.zeros(0)
        if entry.label is not None:
            col = self._index(entry.label, source, ("inputs", name, "label"))
            if col is None:  # reported
                return np.zeros(0)
            return self._labels(name, value, source.data[:, col].astype(np.float64),
                                source.locator([col]))
        return self._features(name, value, entry, source)

    def _features(self, name: str, value: Value, entry: InputData,
                  table: CsvTable | NpyTable) -> np.ndarray:
        path = ("inputs", name, "columns")
        if entry.columns == "rest":
            used = {self._index(c, table, None) for c in self.used}
            cols = [i for i in range(table.data.shape[1]) if i not in used]
        else:
            assert isinstance(entry.columns, list)
            cols = [self._index(c, table, (*path, i)) for i, c in enumerate(entry.columns)]
        if len(value.shape) != 2:
            self.problem(path, f"input {name!r} is declared {format_shape(value.shape)}; "
                               "feature columns feed a [batch, N] input")
        elif value.shape[1] != len(cols):
            self.problem(path, f"input {name!r} is declared {format_shape(value.shape)}, so it "
                               f"takes {value.shape[1]} columns; found {len(cols)}")
        valid = [c for c in cols if c is not None]
        locate = table.locator(valid)
        data = ValueCheck("finite", locate).apply(table.data[:, valid])
        return self._as_float(name, value, data, path, locate)

    def _whole_array(self, name: str, value: Value, key: str, data: np.ndarray,
                     source: NamedArrays) -> np.ndarray:
        path, file = ("inputs", name, "array"), source.path
        declared = value.shape[1:]
        fits = data.ndim == len(value.shape) and all(
            isinstance(want, str) or want == got
            for want, got in zip(declared, data.shape[1:], strict=True))
        if not fits:
            self.problem(path, f"input {name!r} is declared {format_shape(value.shape)}, but "
                               f"array {key!r} of {file} has shape {format_shape(data.shape)}")
            return np.zeros(0)
        locate = source.locator(key)
        data = ValueCheck("finite", locate).apply(data)
        return self._as_float(name, value, data, path, locate)

    def _as_float(self, name: str, value: Value, data: np.ndarray,
                  path: tuple[str | int, ...], locate: Locate) -> np.ndarray:
        if value.dtype in INT_DTYPES or value.dtype == "bool":  # tokens, indices, masks
            if is_lazy(data):  # its values are checked where each chunk is read
                return ValueCheck("integers", locate, f"input {name!r}",
                                  dtype=value.dtype).apply(data).astype(value.dtype)
            if not np.array_equal(data, np.round(data)):
                self.problem(path, f"input {name!r} has dtype {value.dtype}, but its data "
                                   "holds non-integer values")
                return data
            if data.dtype.kind == "f" and not within(data, value.dtype).all():
                # before the cast below, which would wrap 2.0**63 to -2^63 unnoticed
                self.problem(path, f"input {name!r} has dtype {value.dtype}, but its data "
                                   f"holds {data[~within(data, value.dtype)][0]:g}, which "
                                   f"{value.dtype} cannot hold")
                return data
            problem = conversion_problem(data.astype(np.int64), value.dtype)
            if problem is not None:
                self.problem(path, f"input {name!r} has dtype {value.dtype}, but its data "
                                   f"holds integers {problem}")
                return data
            return data.astype(value.dtype)
        if value.dtype not in ("float64", "float32", "float16"):
            self.problem(path, f"input {name!r} has dtype {value.dtype}; features feed "
                               "floating-point or integer inputs (a label feeds integers)")
            return data
        return data.astype(value.dtype)

    def _labels(self, name: str, value: Value, labels: np.ndarray | None,
                locate: Locate) -> np.ndarray:
        """Class indices checked against the number of classes; one-hot rows for a float input.

        ``labels`` is None when the column or array was already reported (or not 1-D);
        ``locate((row,))`` names a row for an error message.
        """
        path = ("inputs", name, "label")
        one_hot = len(value.shape) == 2 and value.dtype.startswith("float")
        if one_hot:
            classes = value.shape[1]
        elif len(value.shape) == 1 and value.dtype == "int64":
            classes = self._classes_of_loss()
        else:
            self.problem(path, f"input {name!r} is declared {format_shape(value.shape)} "
                               f"{value.dtype}; a label feeds [batch, K] float rows (one-hot) "
                               "or [batch] int64 class indices")
            return np.zeros(0)
        if not isinstance(classes, int):
            self.problem(path, f"input {name!r} takes integer class indices, but the number of "
                               "classes is unknown: the loss is not NLL over probabilities "
                               "[batch, K]; declare the input [batch, K] to feed one-hot rows")
            return np.zeros(0)
        if labels is None:
            self.problem(path, "a label is one column, or a 1-D array, of class indices")
            return np.zeros(0)
        indices = ValueCheck("labels", locate, f"input {name!r} is declared "
                                               f"{format_shape(value.shape)}",
                             classes).apply(labels).astype(np.int64)
        if not one_hot:
            return indices
        if is_lazy(indices):
            return indices.map_blocks(one_hot_rows, classes, value.dtype, new_axis=1,
                                      chunks=(indices.chunks[0], (classes,)),
                                      dtype=value.dtype)
        return one_hot_rows(indices, classes, value.dtype)

    def _classes_of_loss(self) -> int | str:
        """K for integer labels: the class axis of the measured prediction (by default the
        probabilities the NLL loss reads)."""
        ends = measured(self.graph, self.config)
        shape = () if ends is None else self.graph.values[ends.prediction].shape
        return shape[-1] if shape else "?"

    def _index(self, column: str | int, table: CsvTable | NpyTable,
               path: tuple[str | int, ...] | None) -> int | None:
        """A column's 0-based index; a name needs the header."""
        width = table.data.shape[1]
        if isinstance(column, int):
            if column < width:
                return column
            message = f"column {column} is out of range: {table.path} has {width} columns " \
                      f"(0-based indices 0..{width - 1})"
        elif isinstance(table, NpyTable):
            message = f"column {column!r} is a name, but {table.path} is a .npy table, whose " \
                      "columns have none; use 0-based indices"
        elif table.header is None:
            message = f"column {column!r} is a name, but {table.path} has no header row; use " \
                      "0-based indices, or add a header"
        elif column in table.header:
            return table.header.index(column)
        else:
            message = f"{table.path} has no column {column!r}" \
                      f"{did_you_mean(column, table.header)}; its columns are: " \
                      f"{', '.join(table.header)}"
        if path is not None:
            self.problem(path, message)
        return None
