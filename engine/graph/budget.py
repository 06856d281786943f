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
from engine.graph.shapes import format_shape

#: Default budget of ``engine.load`` and the CLI's ``--max-bytes``: 4 GiB.
DEFAULT_MAX_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Size:
    """A value's concrete shape, element count and bytes; None where a dimension is unknown."""

    shape: tuple[int, ...] | None
    elements: int | None
    bytes: int | None


def sizes(graph: Graph) -> dict[str, Size]:
    """The size of every value, with the spec's ``dims:`` defaults filling unbound names."""
    dims = graph.dims.copy()
    dims.apply_defaults(graph.spec.dims)
    result = {}
    for name, value in graph.values.items():
        shape = dims.shape(value.shape)
        if any(isinstance(d, str) for d in shape):
            result[name] = Size(None, None, None)
            continue
        concrete = tuple(int(d) for d in shape)
        elements = math.prod(concrete)
        result[name] = Size(concrete, elements, elements * np.dtype(value.dtype).itemsize)
    return result


def human_bytes(count: int) -> str:
    """``4294967296`` -> ``4.0 GiB``."""
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_budget(graph: Graph, max_bytes: int) -> Problem | None:
    """A problem at the largest value when all values together exceed ``max_bytes``."""
    known = {name: s for name, s in sizes(graph).items() if s.bytes is not None}
    total = sum(s.bytes or 0 for s in known.values())
    if total <= max_bytes:
        return None
    largest = max(known, key=lambda n: known[n].bytes or 0)
    size, value = known[largest], graph.values[largest]
    assert size.shape is not None and size.bytes is not None
    return value.loc.problem(
        f"the graph's values take {human_bytes(total)} ({total:,} bytes) at the declared "
        f"shapes, over the budget of {human_bytes(max_bytes)} (--max-bytes); the largest is "
        f"{value.kind} {largest!r}: {format_shape(size.shape)} {value.dtype}, "
        f"{human_bytes(size.bytes)}; make the shapes smaller or raise --max-bytes")


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``4GiB``, ``512MB``, ``1e9`` or ``1000000`` -> bytes; ValueError when unreadable."""
    stripped = text.strip().lower().replace("_", "")
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = stripped[len(number):].strip()
    try:
        value = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(f"expected a size such as 4GiB, 512MB or 1000000, found {text!r}"
                         ) from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"a size must be a finite number >= 0, found {text!r}")
    return int(value)
