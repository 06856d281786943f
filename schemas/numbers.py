"""Integer fields that every part of a spec bounds the same way.

A bound here is what the engine can actually run: NumPy sizes and indices are
int64, arrays have at most 64 axes, and a seed is at most 64 bits.  Refusing the
rest when the spec is checked keeps ``engine check`` and ``engine run`` in
agreement (a check that passes must not be followed by a crash).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: The largest size or count NumPy can index (int64).
LARGEST_SIZE = 2**63 - 1
#: NumPy arrays have at most 64 axes.
MAX_RANK = 64

Size = Annotated[int, Field(ge=0, le=LARGEST_SIZE)]
Seed = Annotated[int, Field(ge=0, le=2**64 - 1, description="A seed: a whole number from 0 to "
                                                              "2^64 - 1.")]
