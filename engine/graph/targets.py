"""Class targets of NLL: which tensors hold class indices or one-hot rows, and how many classes.

NumPy does not stop a label of 5 among 3 classes, nor -1: the one-hot comparison
gives a row of zeros, and the loss and gradient are silently 0 (PyTorch raises).
So the graph records, for every input or constant that is the target of an
NLL, the number of classes (the probabilities' last axis), and the labels are
checked wherever they come from: a literal in the spec when the graph is built
(a located SpecError), a fed array or a default before anything runs (a
DataError naming the row), and one-hot rows that are not one-hot are warned
about (a soft target is legal, so it is not an error).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import DataError, DataWarning
from engine.graph.model import ClassTarget, Graph, Node, Value
from engine.graph.shapes import Dims

#: Ops whose second input is a class target over the first input's last axis.
_CLASS_OPS = ("NLL", "CrossEntropy")


def class_targets(nodes: dict[str, Node], values: dict[str, Value]) -> dict[str, ClassTarget]:
    """Every input or constant that an NLL (or CrossEntropy) node reads as its target, by name."""
    found: dict[str, ClassTarget] = {}
    for node in nodes.values():
        if node.op.name not in _CLASS_OPS or len(node.inputs) < 2:
            continue
        probs, target = (values[ref] for ref in node.inputs[:2])
        if target.kind == "node" or not probs.shape:
            continue
        found[target.name] = ClassTarget(node.name, probs.name, probs.shape[-1],
                                         one_hot=len(target.shape) == len(probs.shape),
                                         ignore_index=getattr(node.attrs, "ignore_index", None),
                                         op=node.op.name)
    return found


def first_bad_label(labels: np.ndarray, classes: int, ignore_index: int | None = None
                    ) -> tuple[tuple[int, ...], Any] | None:
    """(index, label) of the first label outside 0..classes-1 that is not the NLL's
    ``ignore_index`` (which may lie outside: PyTorch's -100), or None."""
    bad = (labels < 0) | (labels >= classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(bad)), labels.shape)
    return tuple(int(i) for i in index), labels[index]


def first_soft_row(rows: np.ndarray) -> tuple[tuple[int, ...], np.ndarray] | None:
    """(index, row) of the first row that is not one-hot (a single 1, zeros elsewhere)."""
    if rows.ndim == 0 or rows.shape[-1] == 0 or rows.size == 0:
        return None
    zero_or_one = (rows == 0) | (rows == 1)
    bad = ~zero_or_one.all(axis=-1) | (rows.sum(axis=-1) != 1)
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return tuple(int(i) for i in index), rows[index]


def row_name(index: tuple[int, ...]) -> str:
    return f"row {index[0]}" if len(index) == 1 else f"index {list(index)}"


@dataclass(frozen=True)
class LabelCheck:
    """The label checks of one class target, holding only what their messages need, not
    the graph: small enough to travel in every task of a lazily read (Dask) feed, where
    each block is checked as it is read (``block``), indices counted in the whole array."""

    what: str
    classes: int
    one_hot: bool
    ignore_index: int | None
    op: str
    node: str
    describe: str

    def __call__(self, array: np.ndarray, start: tuple[int, ...] = ()) -> None:
        """A DataError for a label outside 0..K-1; a DataWarning for a row not one-hot.
        ``start`` is where ``array`` begins in the whole array (a block's corner)."""
        array = np.asarray(array)
        if self.one_hot:
            soft = first_soft_row(array)
            if soft is not None:
                index, row = soft
                warnings.warn(DataWarning(
                    f"{self.what}: {row_name(shifted(index, start))} is "
                    f"{np.array2string(row, threshold=8)}, not one-hot (a single 1, zeros "
                    f"elsewhere): {self.op} node {self.node!r} takes it as a soft target, "
                    "-sum(y * log p); if labels were meant, feed class indices or one-hot "
                    "rows"), stacklevel=6)
            return
        bad = first_bad_label(array, self.classes, self.ignore_index)
        if bad is not None:
            index, label = bad
            raise DataError(f"{self.what}: {row_name(shifted(index, start))} holds label "
                            f"{label}, but {self.describe}; labels count from 0")

    def block(self, block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        """``map_blocks``' function: checks ``block`` and returns it unchanged."""
        self(block, block_corner(block_info))
        return block

    def in_graph(self, array: Any) -> Any:
        """Dask array ``array`` with every block checked where it is computed; a one-hot
        target's rows are first made whole (a row split across blocks is not one-hot)."""
        if self.one_hot and array.ndim and len(array.chunks[-1]) > 1:
            array = array.rechunk({array.ndim - 1: -1})
        return array.map_blocks(self.block, dtype=array.dtype, meta=array._meta,
                                token=_CHECKED)


#: the name of a Dask array whose labels ``LabelCheck.in_graph`` checks begins with this
_CHECKED = "label-check"


def labels_checked(array: Any) -> bool:
    """Whether Dask array ``array`` has its labels checked in its graph already (with the
    message that says where it was read from), so that binding it again adds no check."""
    return str(getattr(array, "name", "")).startswith(f"{_CHECKED}-")


def block_corner(block_info: dict | None) -> tuple[int, ...]:
    """Where the block that ``map_blocks`` passes ``block_info`` of begins in its array."""
    where = block_info[0]["array-location"] if block_info else []
    return tuple(begin for begin, _ in where)


def shifted(index: tuple[int, ...], start: tuple[int, ...]) -> tuple[int, ...]:
    """``index`` within a block that begins at ``start``, as an index in the whole array."""
    return tuple(i + (start[axis] if axis < len(start) else 0) for axis, i in enumerate(index))


def label_check(graph: Graph, name: str, dims: Dims, what: str) -> LabelCheck | None:
    """The checks for target ``name`` (``what`` says where its values came from), or None
    when ``name`` is no class target or its number of classes is not known."""
    target = graph.targets.get(name)
    classes = None if target is None else dims.resolve(target.classes)
    if target is None or not isinstance(classes, int):
        return None
    return LabelCheck(what, classes, target.one_hot, target.ignore_index, target.op,
                      target.node, target.describe(graph.values, dims, classes))


def check_labels(graph: Graph, name: str, array: np.ndarray, dims: Dims, what: str) -> None:
    """A DataError if ``array``, the value of class-index target ``name`` (``what`` says
    where it came from), holds a label outside 0..K-1; a DataWarning if ``name`` takes
    one-hot rows and one is not one-hot."""
    check = label_check(graph, name, dims, what)
    if check is not None:
        check(array)
