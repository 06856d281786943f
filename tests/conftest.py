"""Shared helpers: building specs from text and checking whole graphs by finite differences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
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


def numeric_grad(ex: engine.Executor, feeds: dict[str, np.ndarray], name: str,
                 eps: float = 1e-6) -> np.ndarray:
    """d loss / d name by central differences, perturbing a feed or a parameter."""
    is_param = name in ex.parameters
    base = np.array(ex.parameters[name] if is_param else feeds[name], dtype=np.float64)
    grad = np.zeros_like(base)
    for pos in np.ndindex(base.shape):
        losses = []
        for step in (eps, -eps):
            trial = base.copy()
            trial[pos] += step
            if is_param:
                ex.parameters[name] = trial
                ex.forward(feeds)
            else:
                ex.forward({**feeds, name: trial})
            losses.append(ex.loss)
        grad[pos] = (losses[0] - losses[1]) / (2 * eps)
    if is_param:
        ex.parameters[name] = base
    ex.forward(feeds)
    return grad
