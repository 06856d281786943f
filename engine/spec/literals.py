"""Numbers written in a spec, converted to their dtype without silent damage.

YAML accepts ``.nan`` and ``.inf``, a float32 literal may overflow to inf, and
NumPy truncates 1.5 to 1 when asked for int64 (and fails on NaN).  Each of
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
    if dtype == "int64":
        found = _first_outside_int64(value)
        if found is not None:
            index, number = found
            return index, (f"{number} does not fit int64 (from -2^63 to 2^63 - 1); use a smaller "
                           "number or a float dtype")
    exact = np.asarray(value, dtype=np.float64)
    finite = np.isfinite(exact)
    if not finite.all() and (dtype == "int64" or not allow_nonfinite):
        index = _first(~finite)
        found = exact[index]
        if dtype == "int64":
            return index, f"{yaml_number(found)} cannot be stored in an int64 tensor"
        return index, (f"non-finite literal {yaml_number(found)}; if it is meant, write "
                       f"{ALLOW_KEY}: true beside value")
    if dtype == "int64":
        fractional = finite & (exact != np.round(exact))
        if fractional.any():
            index = _first(fractional)
            return index, (f"{float(exact[index])!r} is not an integer, but the tensor is int64; "
                           "write a whole number or declare a float dtype")
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


def _first_outside_int64(value: Any) -> tuple[tuple[int, ...], int] | None:
    """The index and value of the first integer of a nested list that int64 cannot hold."""
    stack: list[tuple[tuple[int, ...], Any]] = [((), value)]
    while stack:
        index, item = stack.pop()
        if isinstance(item, list):
            stack.extend(((*index, i), v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, int | float) and math.isfinite(item) and \
                not _INT64_MIN <= item <= _INT64_MAX:
            return index, item
    return None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def yaml_number(number: float) -> str:
    """A non-finite number as YAML spells it."""
    if np.isnan(number):
        return ".nan (not a number)"
    return ".inf" if number > 0 else "-.inf"
