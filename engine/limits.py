"""Byte limits: the default memory budget, and sizes read from and written for people.

Every stage that reads or makes something large checks it against one budget
(``--max-bytes``): the spec text, data files, the graph's values
(``engine.graph.budget``) and fed arrays.  The numbers live here, apart from the
graph, so that readers of files need not import the graph model.
"""

from __future__ import annotations

#: Default budget of ``engine.load`` and the CLI's ``--max-bytes``: 4 GiB.
DEFAULT_MAX_BYTES = 4 * 2**30

#: Parsing YAML into positioned data takes about 100 times the text's size (measured: 96
#: for a 20,000-node spec, 131 for a long list of numbers), so a spec file may take this
#: fraction of the budget: 32 MiB of text by default.
SPEC_TEXT_SHARE = 128


def spec_text_limit(max_bytes: int) -> int:
    """The largest spec file, in bytes, that ``max_bytes`` allows to parse."""
    return max_bytes // SPEC_TEXT_SHARE


def human_bytes(count: int) -> str:
    """``4294967296`` -> ``4.0 GiB``; exact integer steps, so a header's 10**400 elements
    are still printed (in PiB) rather than overflowing a float."""
    if count < 1024:
        return f"{count} bytes"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    step = min(len(units), (count.bit_length() - 1) // 10)
    whole, rest = divmod(count, 1024 ** step)
    if step == len(units) and whole >= 10**15:
        return f"about 2^{count.bit_length() - 1} bytes"
    return f"{whole + rest / 1024 ** step:.1f} {units[step - 1]}"


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
