"""Writes reverse.npz, the sequence task of graphs/attention.yaml: reverse 8 tokens.

Each row of ``tokens`` holds 8 tokens drawn uniformly from a vocabulary of 10
(0..9); the same row of ``reversed`` holds them in reverse order.  The draw is
seeded, so running this again writes the same arrays:

    python graphs/data/make_reverse.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROWS, LENGTH, VOCABULARY, SEED = 4000, 8, 10, 0


def make(rows: int = ROWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.random.default_rng(seed).integers(0, VOCABULARY, size=(rows, LENGTH))
    return tokens.astype(np.uint8), tokens[:, ::-1].astype(np.uint8)


if __name__ == "__main__":
    tokens, reversed_ = make()
    np.savez(Path(__file__).with_name("reverse.npz"), tokens=tokens, reversed=reversed_)
