"""Sample inputs that the registry-driven tests feed every op, and their generators.

Each op's ``samples`` picks from these with its own value domain (Log away from
zero, Relu away from its kink), so that a new op is tested the day it is
registered without a test of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """Inputs (float64 NumPy arrays unless integer by nature) and attributes for op tests."""

    inputs: tuple[np.ndarray, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def unary_samples(rng: np.random.Generator, low: float, high: float) -> list[Sample]:
    """Samples for elementwise unary ops over the value domain [low, high]."""
    shapes = [(), (4,), (3, 4), (2, 3, 4)]
    return [Sample((rng.uniform(low, high, size=s),), note=f"shape {s}") for s in shapes]


#: Pairs of shapes that exercise every broadcasting case, for binary ops.
BROADCAST_PAIRS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((3, 4), (3, 4)),
    ((2, 3, 4), (4,)),
    ((3, 1), (1, 4)),
    ((2, 1, 4), (3, 1)),
    ((), (3, 4)),
    ((1, 1, 3), (2, 8, 3)),
)


def binary_samples(
    rng: np.random.Generator, domains: tuple[tuple[float, float], tuple[float, float]]
) -> list[Sample]:
    """Broadcasting samples for elementwise binary ops; ``domains`` gives each input's range."""
    (lo_a, hi_a), (lo_b, hi_b) = domains
    return [
        Sample((rng.uniform(lo_a, hi_a, size=a), rng.uniform(lo_b, hi_b, size=b)),
               note=f"{a} with {b}")
        for a, b in BROADCAST_PAIRS
    ]


def integer_pairs(rng: np.random.Generator) -> list[Sample]:
    """Integer samples of several widths for binary ops that take integers: an int8 pair,
    a uint8 with an int16 (NumPy promotes to int16), an int32 with an int64, a uint16 with a
    uint32, a uint32 with an int16 (int64), and uint64s above 2^63, whose sums and products
    wrap around (and which a float64 would round)."""
    low, high = -20, 20
    return [
        Sample((rng.integers(low, high, size=(3, 4), dtype=np.int8),
                rng.integers(low, high, size=(4,), dtype=np.int8)), note="int8 with int8"),
        Sample((rng.integers(0, 40, size=(2, 3), dtype=np.uint8),
                rng.integers(low, high, size=(3,), dtype=np.int16)), note="uint8 with int16"),
        Sample((rng.integers(low, high, size=(2, 1), dtype=np.int32),
                rng.integers(low, high, size=(3,), dtype=np.int64)), note="int32 with int64"),
        Sample((rng.integers(0, 40, size=(2, 3), dtype=np.uint16),
                rng.integers(0, 40, size=(3,), dtype=np.uint32)), note="uint16 with uint32"),
        Sample((rng.integers(0, 40, size=(3,), dtype=np.uint32),
                rng.integers(low, high, size=(2, 3), dtype=np.int16)), note="uint32 with int16"),
        Sample((rng.integers(2**63, 2**64 - 1, size=(2, 3), dtype=np.uint64, endpoint=True),
                rng.integers(2**63, 2**64 - 1, size=(3,), dtype=np.uint64, endpoint=True)),
               note="uint64 above 2^63, wrapping"),
    ]


def away_from_kink(rng: np.random.Generator) -> list[Sample]:
    """Unary samples of either sign with |x| >= 0.1: finite differences are meaningless at a
    kink at 0 (Relu, Abs), so the samples stay clear of it."""
    samples = []
    for sample in unary_samples(rng, 0.1, 2.0):
        (x,) = sample.inputs
        sign = np.where(rng.uniform(size=x.shape) < 0.5, -1.0, 1.0)
        samples.append(Sample((sign * x,), note=sample.note))
    return samples
