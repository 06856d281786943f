"""Pausing Python's cycle collector while a big spec is loaded and compiled.

Loading a 100,000-node spec allocates millions of small objects (YAML nodes,
dicts, pydantic models, graph records) that all survive.  Each allocation burst
triggers the cycle collector, which walks the ever-growing set of survivors
again and again: measured, it made loading ten times slower.  None of these
objects form garbage cycles, so collecting waits until the work is done.

When the work is done, the survivors are handed straight to the oldest
generation (``gc.freeze`` then ``gc.unfreeze``: two list splices, no walk)
instead of being left in the youngest, where the first allocation after the
pause would walk all of them at once (about a second after loading 100,000
nodes) only to promote them.  The oldest generation is walked as before, in the
collector's rare full collections, so any garbage cycle is still collected.
This is skipped when the program froze objects of its own (``gc.get_freeze_count``):
unfreezing would hand those back to the collector.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cycle collector inside the block; restore its previous state after,
    with what the block allocated promoted to the oldest generation."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
