"""Tensors at run time: fed arrays checked against their declarations, defaults made from init.

A feed is checked before anything runs: its name must be an input, its dtype
must cast safely to the declared one, and its shape must match, binding named
dimensions (``batch``) consistently across all feeds.  Defaults are drawn from
a generator seeded by the spec's seed and the tensor's name, so adding a tensor
never changes the values of the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from engine.errors import ArgumentError, DataError, did_you_mean
from engine.graph.budget import fed_over_budget
from engine.graph.model import Graph, Value
from engine.graph.shapes import Dims, ShapeError, format_shape
from engine.graph.targets import check_labels, label_check, labels_checked
from engine.io.arrays import load_array


def check_seed(seed: Any) -> int:
    """A seed as the spec's ``seed`` takes it: a whole number from 0 to 2^64 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ArgumentError(f"a seed is a whole number from 0 to 2^64 - 1, found "
                            f"{type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**64:
        raise ArgumentError(f"a seed is a whole number from 0 to 2^64 - 1, found {seed}")
    return int(seed)


def names_mapping(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping whose keys are names, else an ArgumentError that says so."""
    if not isinstance(value, Mapping):
        raise ArgumentError(f"{what} is a mapping of names to arrays, such as "
                            f"{{'x': array}}; found {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ArgumentError(f"{what}: every key is a name (a string); found "
                                f"{type(key).__name__} {key!r}")
    return value


def is_lazy(data: Any) -> bool:
    """A Dask array: its chunks are read where Dask computes them (on the workers), so a feed
    of one is checked by dtype and shape here, and its labels inside its own task graph
    (each block as it is read, a located DataError), never read into this process."""
    return hasattr(data, "__dask_graph__")


def as_array(data: Any, where: str) -> np.ndarray:
    """``np.asarray(data)``, with a ragged nested list reported as such."""
    try:
        return np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: not a rectangular array of numbers (ragged nested lists? "
                        f"every row needs the same length): {exc}") from None


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    """A generator for one tensor's init, independent of every other tensor's."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def bind_feeds(graph: Graph, feeds: Mapping[str, Any], origin: str = ""
               ) -> tuple[dict[str, np.ndarray], Dims]:
    """Check feeds against the spec; returns them as NumPy arrays and the bound dimensions.

    ``origin`` (``--feed y=FILE``) begins the messages of the checks that run later, in
    the task graph of a lazily read feed; errors raised now the caller locates itself."""
    names_mapping(feeds, "feeds")
    dims = graph.dims.copy()
    checked: dict[str, np.ndarray] = {}
    for name, data in feeds.items():
        value = graph.values.get(name)
        if value is None or value.kind != "input":
            what = "is not declared" if value is None else f"is {value.a_kind}"
            inputs = [v.name for v in graph.values.values() if v.kind == "input"]
            raise DataError(f"cannot feed {name!r}: it {what}{did_you_mean(name, inputs)}; the "
                            f"inputs are: {', '.join(inputs) or 'none'}")
        checked[name] = _check(graph, value, data, dims)
    dims.apply_defaults(graph.spec.dims)  # defaults only for names no feed bound
    if checked and not any(is_lazy(a) for a in checked.values()):  # lazy: not held here
        over = fed_over_budget(graph, dims, {name: a.shape for name, a in checked.items()})
        if over is not None:
            raise DataError(over)
    for name, array in checked.items():
        if name not in graph.targets:
            continue
        if not is_lazy(array):
            check_labels(graph, name, array, dims, fed_as(graph, name))
            continue
        if labels_checked(array):  # bound before, with where it was read from
            continue
        what = f"{origin}: {fed_as(graph, name)}" if origin else fed_as(graph, name)
        check = label_check(graph, name, dims, what)
        if check is not None:  # in the graph: each block is checked where it is read
            checked[name] = check.in_graph(array)
    return checked, dims


def fed_as(graph: Graph, name: str) -> str:
    """How a message names the fed array of input ``name``."""
    return f"input {name!r} ({graph.where(name)}), as fed"


_FIX = "feed data of the declared shape, or change the shape in the spec"


def _check(graph: Graph, value: Value, data: Any, dims: Dims) -> np.ndarray:
    array = data if is_lazy(data) else as_array(data, _where(graph, value))
    if array.dtype.kind not in "biufc":  # runs every forward: cheap checks first
        raise DataError(f"{_where(graph, value)}: expected numbers, found an array of "
                        f"{array.dtype}")
    problem = conversion_problem(array, value.dtype)
    if problem is not None:
        raise DataError(f"{_where(graph, value)}: declared dtype {value.dtype}, fed "
                        f"{array.dtype}, {problem}; convert the data or change the declared "
                        "dtype")
    # The shape as declared, names kept, so a conflict says which name and where it was bound.
    declared = tuple(value.decl.shape) if value.decl is not None else value.shape
    if array.ndim != len(declared):
        raise DataError(f"{_where(graph, value)}: expected shape {format_shape(declared)}, fed "
                        f"{format_shape(array.shape)} (rank {array.ndim}, not {len(declared)}); "
                        f"{_FIX}")
    dims.site = f"by the feed of {value.name!r} {format_shape(array.shape)}"
    for axis, (want, got) in enumerate(zip(declared, array.shape, strict=True)):
        if want == got:
            continue
        try:
            dims.unify(want, int(got), "")
        except ShapeError:
            why = dims.explain(want).removeprefix("; ")
            raise DataError(f"{_where(graph, value)}: expected shape {format_shape(declared)}"
                            f"{f' ({why})' if why else ''}, fed {format_shape(array.shape)}: "
                            f"axis {axis} differs; {_FIX}") from None
    return array if array.dtype == value.dtype else array.astype(value.dtype)


def _where(graph: Graph, value: Value) -> str:
    return f"input {value.name!r} ({graph.where(value.name)})"


@lru_cache(maxsize=256)
def _converts(fed: np.dtype, declared: str) -> bool:
    """Whether every value of dtype ``fed`` converts to ``declared`` (remembered: a feed is
    checked every forward)."""
    return bool(np.can_cast(fed, np.dtype(declared), casting="safe"))


def checks_values(graph: Graph, name: str, fed: np.dtype) -> bool:
    """Whether an array of dtype ``fed`` fed to ``name`` is checked value by value (an int64
    array into uint8): a later array of the same dtype and shape may hold a value that does
    not fit, so such a check is never skipped."""
    value = graph.values.get(name)
    return value is not None and not _converts(fed, value.dtype)


def conversion_problem(array: np.ndarray, declared: str) -> str | None:
    """Why ``array`` cannot become ``declared`` without a silent change, or None.

    A safe cast is fine, and so is a narrower float (float64 data into float32, as
    training in float32 wants) when no finite value is beyond the narrower float's range
    (1e300 would become inf: refused, and named; values are rounded, tiny ones to 0).
    Integers and bools into a narrower integer or a bool are
    fine when every value fits (an int64 column of a CSV into int8, 0/1 into bool): the
    values are checked, and the first that does not fit is named.  A float into an integer
    or bool, or a number into nothing it can hold, is refused."""
    if _converts(array.dtype, declared):
        return None
    fed, target = array.dtype, np.dtype(declared)
    if fed.kind == target.kind == "f":  # rounds, but a finite value must not become inf
        largest = np.finfo(target).max
        bad = (np.abs(array) > largest) & np.isfinite(array)
        if not bad.any():
            return None
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" (index {list(index)})" if index else ""
        return (f"whose value {array[index]}{where} is beyond {declared}'s largest "
                f"{float(largest):.6g} and would become inf")
    if target.kind in "iub" and fed.kind in "iub":
        if target.kind == "b":
            bad, holds = (array != 0) & (array != 1), "0 and 1 only"
        else:
            info = np.iinfo(target)
            bad, holds = (array < info.min) | (array > info.max), f"{info.min}..{info.max}"
        if not bad.any():
            return None
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" (index {list(index)})" if index else ""
        return f"whose value {array[index]}{where} {declared} cannot hold ({holds})"
    return f"which does not convert safely to {declared}"


def initial_value(graph: Graph, value: Value, dims: Dims, seed: int) -> np.ndarray:
    """A tensor's default from its init, at the shape the bound dimensions give it; the
    labels of an NLL target are checked (an init file may hold any numbers)."""
    array = _initial(graph, value, dims, seed)
    if value.name in graph.targets:
        check_labels(graph, value.name, array, dims,
                     f"{value.kind} {value.name!r} ({graph.where(value.name)}): its init")
    return array


def _initial(graph: Graph, value: Value, dims: Dims, seed: int) -> np.ndarray:
    decl = value.decl
    where = f"{value.kind} {value.name!r} ({graph.where(value.name)})"
    if decl is None or decl.init is None:
        raise DataError(f"{where} was not fed and has no init; give it an init in the spec, "
                        f"or feed it (engine run --feed {value.name}=FILE.npy; engine train: "
                        f"an entry under train.inputs)")
    shape = dims.shape(value.shape)
    unbound = [d for d in shape if isinstance(d, str)]
    if unbound:
        raise DataError(f"{where}: cannot make its default: dimension {unbound[0]!r} of "
                        f"{format_shape(value.shape)} is bound by no feed; feed a tensor that "
                        f"has it, or give it a default size under dims: in the spec")
    size = tuple(int(d) for d in shape)
    init, dtype, rng = decl.init, value.dtype, tensor_rng(seed, value.name)
    form = init.form
    if form == "zeros":
        return np.zeros(size, dtype)
    if form == "ones":
        return np.ones(size, dtype)
    if form == "uniform":
        return rng.uniform(init.uniform.low, init.uniform.high, size).astype(dtype)
    if form == "normal":
        return rng.normal(init.normal.mean, init.normal.std, size).astype(dtype)
    if form == "labels":
        return rng.integers(0, init.labels.classes, size=size, dtype=np.int64).astype(dtype)
    if form == "one_hot":
        if size[-1] == 0:
            raise DataError(f"{where}: one_hot needs at least one class, but its class axis "
                            f"has size 0 ({format_shape(size)})")
        return one_hot_rows(rng.integers(0, size[-1], size=size[:-1]), size[-1], dtype)
    if form == "value":
        literal = np.asarray(init.value, dtype=dtype)
        return _same_shape(where, "value", literal, size)
    return _same_shape(where, str(init.file),
                       _load_file(value, where, dtype, graph.max_bytes), size)


def one_hot_rows(labels: np.ndarray, classes: int, dtype: str) -> np.ndarray:
    """Rows with a 1 at each label's index: the size of the result, never ``eye(classes)``
    (a [classes, classes] matrix: 74.5 GiB for 10**5 classes)."""
    rows = np.zeros((*labels.shape, classes), dtype)
    np.put_along_axis(rows, labels[..., None], 1, axis=-1)
    return rows


def _same_shape(where: str, origin: str, array: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    if array.shape != size:
        raise DataError(f"{where}: {origin} has shape {format_shape(array.shape)}, expected "
                        f"{format_shape(size)}")
    return array


def _load_file(value: Value, where: str, dtype: str, max_bytes: int) -> np.ndarray:
    """An init file's array: a .npy file, or the array named after the tensor in an .npz."""
    path = value.file
    assert path is not None  # resolved (and confined) when the graph was built
    try:
        array = load_array(path, value.name, max_bytes=max_bytes)
    except DataError as exc:
        raise DataError(f"{where}: cannot read init file: {exc}") from None
    problem = conversion_problem(array, dtype)
    if problem is not None:
        raise DataError(f"{where}: init file {str(path)!r} holds {array.dtype}, {problem}")
    return array.astype(dtype, copy=False)
