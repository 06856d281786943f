"""An index out of range is an error naming the node on every path, never a different number.

NumPy's ``take`` and ``add.at`` raise IndexError for such an index (the independent
reference: ``np.take`` below); without the executor's check the array-API ScatterAdd
(a one-hot product) dropped the update, JAX's gather filled in NaN, and Dask gave
gradients with rows missing.  Every op that declares ``OpDef.indexes`` is covered, on
every installed backend, optimized and plain, forward and gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.ops import REGISTRY
from engine.runtime.backends import install_hint, installed, to_numpy

INDEXING = sorted(name for name, op in REGISTRY.items() if op.indexes)

#: Each op in a graph whose loss and gradients read its result: rows of ``table``
#: (4 x 2) picked or added at ``idx``.
SPECS = {
    "Gather": """
        name: pick
        inputs: {idx: {shape: [3], dtype: int64}}
        parameters: {table: {shape: [4, 2], init: ones}}
        nodes:
          indexed: {op: Gather, inputs: [table, idx]}
          loss: {op: Sum, inputs: [indexed]}
        loss: loss
    """,
    "ScatterAdd": """
        name: scatter
        inputs:
          idx: {shape: [3], dtype: int64}
          updates: {shape: [3, 2], requires_grad: true}
        parameters: {table: {shape: [4, 2], init: ones}}
        nodes:
          indexed: {op: ScatterAdd, inputs: [updates, idx, table]}
          square: {op: Mul, inputs: [indexed, indexed]}
          loss: {op: Sum, inputs: [square]}
        loss: loss
    """,
}

BACKENDS = [pytest.param(name, id=name, marks=pytest.mark.skipif(
    not installed(name), reason=f"backend {name} is not installed: {install_hint(name)}"))
    for name in ("numpy", "torch", "jax", "dask")]


def test_every_indexing_op_has_a_case_here() -> None:
    assert sorted(SPECS) == INDEXING


def _run(graph: engine.Graph, backend: str, optimize: bool, idx: list[int]
         ) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients, brought back to NumPy (on Dask: computed)."""
    ex = engine.Executor(graph, backend=backend, optimize=optimize)
    feeds = {"idx": np.array(idx, dtype=np.int64), "updates": np.ones((3, 2))}
    ex.forward({k: v for k, v in feeds.items() if k in graph.values})
    grads = ex.backward()
    return float(to_numpy(ex.value("loss"))), {k: to_numpy(v) for k, v in grads.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "plain"])
@pytest.mark.parametrize("op", INDEXING)
@pytest.mark.parametrize("bad", [4, 9, -5])
def test_an_index_out_of_range_is_a_data_error(build, backend: str, optimize: bool, op: str,
                                               bad: int) -> None:
    with pytest.raises(IndexError):  # the reference refuses it too
        np.take(np.ones((4, 2)), [0, 1, bad], axis=0)
    graph = build(SPECS[op])
    line = next(number for number, text in enumerate(SPECS[op].splitlines(), 1)
                if "indexed:" in text)  # where the node is written
    with pytest.raises(engine.DataError, match=rf"node 'indexed' \({op}, test.yaml:{line}:3\) "
                                               rf"failed in forward.*: index {bad} is out of "
                                               "bounds for axis 0 with size 4"):
        _run(graph, backend, optimize, [0, 1, bad])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "plain"])
@pytest.mark.parametrize("op", INDEXING)
def test_indices_in_range_count_negative_ones_from_the_end(build, backend: str,
                                                           optimize: bool, op: str) -> None:
    """-4 and 3 are the edges of the range: both run, as NumPy's take counts them."""
    graph = build(SPECS[op])
    loss, grads = _run(graph, backend, optimize, [0, -4, 3])
    rows = np.take(np.arange(4), [0, -4, 3])  # rows 0, 0, 3
    if op == "Gather":  # loss = sum of the picked rows of ones; d table counts each pick
        expected = np.zeros((4, 2))
        np.add.at(expected, rows, 1.0)
        assert loss == 6.0
        np.testing.assert_array_equal(grads["table"], expected)
    else:  # row 0 gets two updates of ones, row 3 one: loss = 2*2^2 + 2*1^2
        assert loss == 10.0
        np.testing.assert_array_equal(grads["updates"], 2 * np.array([[2, 2], [2, 2], [1, 1]]))
