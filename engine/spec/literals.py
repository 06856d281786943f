"""Numbers written in a spec, converted to their dtype without silent damage.

YAML accepts ``.nan`` and ``.inf``, a float32 literal may overflow to inf, and
NumPy truncates 1.5 to 1 when asked for an integer dtype (and fails on NaN), wraps 300
around in int8, and makes any nonzero number a true bool.  Each of
these would surface much later as a wrong number, so the graph builder asks
this module first and reports the exact element, by its index path, that
cannot be stored as declared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The key, beside ``value``, that says non-finite numbers are meant.
ALLOW_KEY = "allow_nonfinite"


def literal_problem(value: Any, dtype: str, allow_nonfinite: bool
                    ) -> tuple[tuple[int, ...], str] | None:
    """The first element of ``value`` that ``dtype`` cannot hold faithfully, and why.

    Returns ``(index, message)`` with ``index`` the position inside the nested
    list (``()`` for a bare number), or None when the literal is fine.
    """
    kind = np.dtype(dtype).kind
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if kind in "iu":
        info = np.iinfo(dtype)
        found = _first_outside(value, int(info.min), int(info.max))
        if found is not None:
            index, number = found
            return index, (f"{number} does not fit {dtype} (from {info.min} to {info.max}); use "
                           "a smaller number or a wider dtype")
    exact = np.asarray(value, dtype=np.float64)
    finite = np.isfinite(exact)
    exact_only = kind in "iub"  # integers and bools hold no fraction and no inf or NaN
    if not finite.all() and (exact_only or not allow_nonfinite):
        index = _first(~finite)
        found = exact[index]
        if exact_only:
            return index, f"{yaml_number(found)} cannot be stored in an {dtype} tensor"
        return index, (f"non-finite literal {yaml_number(found)}; if it is meant, write "
                       f"{ALLOW_KEY}: true beside value")
    if kind == "b":
        other = (exact != 0) & (exact != 1)
        if other.any():
            index = _first(other)
            return index, (f"{float(exact[index])!r} is not a bool: a bool tensor holds 0 and "
                           "1 (false and true)")
        return None
    if exact_only:
        fractional = finite & (exact != np.round(exact))
        if fractional.any():
            index = _first(fractional)
            return index, (f"{float(exact[index])!r} is not an integer, but the tensor is "
                           f"{dtype}; write a whole number or declare a float dtype")
        return None
    with np.errstate(over="ignore"):
        stored = exact.astype(dtype)
    overflow = finite & ~np.isfinite(stored)
    if overflow.any():
        index = _first(overflow)
        largest = float(np.finfo(dtype).max)
        return index, (f"{float(exact[index])!r} overflows {dtype} (largest {largest:g}) and would "
                       "become inf; use a wider dtype or a smaller number")
    return None


def _first_outside(value: Any, low: int, high: int) -> tuple[tuple[int, ...], int] | None:
    """The index and value of the first number of a nested list outside ``low..high``
    (compared as Python numbers, exact beyond float64's 2^53)."""
    stack: list[tuple[tuple[int, ...], Any]] = [((), value)]
    while stack:
        index, item = stack.pop()
        if isinstance(item, list):
            stack.extend(((*index, i), v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, int | float) and math.isfinite(item) and not low <= item <= high:
            return index, item
    return None


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def yaml_number(number: float) -> str:
    """A non-finite number as YAML spells it."""
    if np.isnan(number):
        return ".nan (not a number)"
    return ".inf" if number > 0 else "-.inf"
