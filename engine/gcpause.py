"""Pausing Python's cycle collector while a big spec is loaded and compiled.

Loading a 100,000-node spec allocates millions of small objects (YAML nodes,
dicts, pydantic models, graph records) that all survive.  Each allocation burst
triggers the cycle collector, which walks the ever-growing set of survivors
again and again: measured, it made loading ten times slower.  None of these
objects form garbage cycles, so collecting waits until the work is done.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cycle collector inside the block; restore its previous state after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
