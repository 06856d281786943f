"""Writes sort.npz, the sequence task of graphs/attention.yaml: sort 8 tokens.

Each row of ``tokens`` holds 8 tokens drawn uniformly from a vocabulary of 10
(0..9); the same row of ``sorted`` holds them in ascending order.  Sorting needs
attention that compares every token with every other (a token's place is the
count of smaller ones), unlike reversal, which only moves positions.  The draw
is seeded, so running this again writes the same arrays:

    python graphs/data/make_sort.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROWS, LENGTH, VOCABULARY, SEED = 4000, 8, 10, 0


def make(rows: int = ROWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, sorted tokens) as uint8 arrays of shape [rows, 8]."""
    tokens = np.random.default_rng(seed).integers(0, VOCABULARY, size=(rows, LENGTH))
    return tokens.astype(np.uint8), np.sort(tokens, axis=1).astype(np.uint8)


if __name__ == "__main__":
    tokens, ordered = make()
    np.savez(Path(__file__).with_name("sort.npz"), tokens=tokens, sorted=ordered)
