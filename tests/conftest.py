"""Shared test helpers: specs from text (finite differences: engine.testing.gradcheck)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import engine

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "graphs"


#: A value used twice by one node: its two gradients must be summed (Mul(x, x) -> 2x).
SQUARE_SPEC = """
    name: square
    inputs: {x: {shape: [3], requires_grad: true, init: ones}}
    nodes:
      sq: {op: Mul, inputs: [x, x]}
      loss: {op: Sum, inputs: [sq]}
    loss: loss
"""


@pytest.fixture
def build() -> Callable[[str], engine.Graph]:
    """Build a graph from spec text (dedented), as if read from ``test.yaml``."""
    import textwrap

    def _build(text: str) -> engine.Graph:
        return engine.loads(textwrap.dedent(text), file="test.yaml")

    return _build
