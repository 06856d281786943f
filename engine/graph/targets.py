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


def check_labels(graph: Graph, name: str, array: np.ndarray, dims: Dims, what: str) -> None:
    """A DataError if ``array``, the value of class-index target ``name`` (``what`` says
    where it came from), holds a label outside 0..K-1; a DataWarning if ``name`` takes
    one-hot rows and one is not one-hot."""
    target = graph.targets.get(name)
    if target is None:
        return
    classes = dims.resolve(target.classes)
    if not isinstance(classes, int):
        return
    if target.one_hot:
        soft = first_soft_row(np.asarray(array))
        if soft is not None:
            index, row = soft
            warnings.warn(DataWarning(
                f"{what}: {row_name(index)} is {np.array2string(row, threshold=8)}, not one-hot "
                f"(a single 1, zeros elsewhere): {target.op} node {target.node!r} takes it as a "
                "soft target, -sum(y * log p); if labels were meant, feed class indices or one-hot "
                "rows"), stacklevel=5)
        return
    bad = first_bad_label(np.asarray(array), classes, target.ignore_index)
    if bad is not None:
        index, label = bad
        raise DataError(f"{what}: {row_name(index)} holds label {label}, but "
                        f"{target.describe(graph.values, dims, classes)}; labels count from 0")
