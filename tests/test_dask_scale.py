"""benchmarks/dask_scale.py, small: a generated Wine-like .npy of 16 MiB, two local workers
of 512 MiB each, full-batch steps of graphs/mlp.yaml on Dask, each step's loss and
gradients checked against the benchmark's independent NumPy computation (a hand-written
forward and backward streaming the file).  The 3 GiB run is in README "Scaling out"."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

from benchmarks.dask_scale import FEATURES, NpyRows, generate, run_benchmark

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
