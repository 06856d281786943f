"""The memory a graph's values take at their declared shapes, checked before anything exists.

A typo such as ``shape: [100000, 100000]`` would otherwise be found by the
allocator (or the OOM killer) at run time.  Sizes use the dimensions the graph
fixes, then the defaults under ``dims:``; a value whose size depends on a
dimension neither fixes is counted as unknown rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import Problem
from engine.graph.model import Graph
from engine.graph.shapes import Dims, format_shape
from engine.limits import human_bytes


@dataclass(frozen=True)
class Size:
    """A value's concrete shape, element count and bytes; None where a dimension is unknown."""

    shape: tuple[int, ...] | None
    elements: int | None
    bytes: int | None


def sizes(graph: Graph, dims: Dims | None = None) -> dict[str, Size]:
    """The size of every value, with the spec's ``dims:`` defaults filling unbound names,
    or with ``dims`` (names bound by fed arrays, then the defaults)."""
    if dims is None:
        dims = graph.dims.copy()
        dims.apply_defaults(graph.spec.dims)
    result = {}
    known: dict[tuple[tuple[int | str, ...], str], Size] = {}  # most values share a few
    for name, value in graph.values.items():
        key = (dims.shape(value.shape), value.dtype)
        size = known.get(key)
        if size is None:
            size = known[key] = _size(*key)
        result[name] = size
    return result


def _size(shape: tuple[int | str, ...], dtype: str) -> Size:
    if any(isinstance(d, str) for d in shape):
        return Size(None, None, None)
    concrete = tuple(int(d) for d in shape)
    elements = math.prod(concrete)
    return Size(concrete, elements, elements * np.dtype(dtype).itemsize)


def _over(graph: Graph, max_bytes: int, dims: Dims | None = None) -> tuple[str, str] | None:
    """(name of the largest value, what the values take and the largest is) when all values
    together exceed ``max_bytes``, else None."""
    total, largest, size = 0, "", None  # the first of the largest, in the values' order
    for name, each in sizes(graph, dims).items():
        if each.bytes is not None:
            total += each.bytes
            if size is None or each.bytes > (size.bytes or 0):
                largest, size = name, each
    if total <= max_bytes or size is None:
        return None
    value = graph.values[largest]
    assert size.shape is not None and size.bytes is not None
    return largest, (
        f"the graph's values take {human_bytes(total)} ({total:,} bytes){{at}}, over the budget "
        f"of {human_bytes(max_bytes)} (--max-bytes); the largest is {value.kind} {largest!r}: "
        f"{format_shape(size.shape)} {value.dtype}, {human_bytes(size.bytes)}")


def check_budget(graph: Graph, max_bytes: int) -> Problem | None:
    """A problem at the largest value when all values together exceed ``max_bytes``."""
    over = _over(graph, max_bytes)
    if over is None:
        return None
    largest, message = over
    return graph.values[largest].loc.problem(
        message.format(at=" at the declared shapes") +
        "; make the shapes smaller or raise --max-bytes")


def fed_over_budget(graph: Graph, dims: Dims, fed: dict[str, tuple[int, ...]]) -> str | None:
    """Why the shapes that fed arrays bind make the values exceed the graph's budget, or None.

    An 8 MB feed into ``Add([n, 1], [1, n])`` binds n = 10**6, and the sum is a
    [10**6, 10**6] array: this is checked before anything runs.
    """
    over = _over(graph, graph.max_bytes, dims)
    if over is None:
        return None
    bound = sorted({d for v in graph.values.values() for d in v.shape if isinstance(d, str)})
    names = ", ".join(f"{d} = {dims.resolve(d)}" for d in bound if isinstance(dims.resolve(d),
                                                                                int))
    feeds = ", ".join(f"{name} {format_shape(shape)}" for name, shape in fed.items())
    at = f" at the shapes the feeds bind ({names})" if names else " at the fed shapes"
    return (f"fed {feeds}: " + over[1].format(at=at) + "; feed smaller arrays, or raise the "
            "budget (--max-bytes, or engine.load(..., max_bytes=...))")
