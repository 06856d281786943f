"""benchmarks/dask_scale.py, small: a generated Wine-like .npy of 16 MiB, two local workers
of 512 MiB each, full-batch steps of graphs/mlp.yaml on Dask, each step's loss and
gradients checked against the benchmark's independent NumPy computation (a hand-written
forward and backward streaming the file).  The 3 GiB run is in README "Scaling out"."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

from benchmarks.dask_scale import FEATURES, generate, run_benchmark
from engine.io.lazy import NpyRows

pytestmark = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason='dask.distributed is not installed: pip install -e '
                                       '".[dask]"')


def test_the_file_is_wine_like_and_its_reader_pickles_without_the_data(tmp_path) -> None:
    path = tmp_path / "d.npy"
    generate(path, 5000)
    data = np.load(path)
    assert data.shape == (5000, FEATURES + 1) and data.dtype == np.float64
    assert set(np.unique(data[:, FEATURES])) == {0.0, 1.0, 2.0}
    reader = NpyRows.open(path)
    assert len(pickle.dumps(reader)) < 1000  # a path, an offset, a shape: no rows
    np.testing.assert_array_equal(reader[1000:1010], data[1000:1010])


def test_small_run_equals_numpy_and_stays_within_worker_memory(tmp_path) -> None:
    path = tmp_path / "wine_like.npy"
    generate(path, (16 << 20) // ((FEATURES + 1) * 8))
    result = run_benchmark(path, workers=2, worker_memory=512 << 20, steps=2,
                           chunk_rows=40_000, lr=0.5, rtol=1e-9, timeout=120)
    assert result["chunks"] == 4
    assert result["equal"], result["checks"]
    assert result["checks"][1]["loss"] < result["checks"][0]["loss"]  # it trains
    assert not result["killed"] and not result["spilled"]
    assert len(result["per_worker"]) == 2
    for worker in result["per_worker"]:
        assert 0 < worker["peak_rss"] < worker["memory_limit"] == 512 << 20


def test_a_dask_array_feed_is_not_read_before_the_compute() -> None:
    """Forward and backward with Dask-array feeds compute nothing (the feed checks read
    dtype and shape only); the one compute then gives NumPy's loss and gradients."""
    da = pytest.importorskip("dask.array")
    from dask.callbacks import Callback

    from engine import load
    from engine.runtime.executor import Executor

    graph = load("graphs/mlp.yaml")
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(90, 13)), rng.integers(0, 3, 90)
    y = np.eye(3)[labels]
    numpy = Executor(graph)
    numpy.forward({"x": x, "y": y})
    want = numpy.backward()
    lazy = Executor(graph, backend="dask", chunk_rows=20)
    computes = []
    with Callback(start=lambda dsk: computes.append(1)):
        lazy.forward({"x": da.from_array(x, chunks=45),
                      "y": (da.from_array(labels, chunks=45)[:, None] == np.arange(3))})
        grads = lazy.backward()
        assert computes == []
        (got,) = lazy.compute(grads)
    assert len(computes) == 1
    assert lazy.loss == pytest.approx(numpy.loss, rel=1e-12)
    for name, array in want.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-10, atol=1e-15)
