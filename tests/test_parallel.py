"""Row-wise kernels in blocks of rows split over threads (``engine.runtime.parallel``): the
same numbers as one call, every row once and in order, errors raised after every block is
done."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.runtime import parallel


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setenv("ENGINE_NUM_THREADS", "3")
    parallel.threads.cache_clear()
    yield
    parallel.threads.cache_clear()


def test_a_large_kernel_is_split_and_gives_the_same_bits(two_threads) -> None:
    x = np.random.default_rng(0).normal(size=(1000, 300))
    out = np.empty_like(x)
    seen: list[tuple[range, str]] = []

    def work(rows: range, x: np.ndarray, none: None, out: np.ndarray) -> float:
        assert none is None and len(x) == len(out) == len(rows)
        seen.append((rows, threading.current_thread().name))
        np.exp(x, out=out)
        return float(np.add.reduce(out, axis=None))

    parts = parallel.by_rows(work, (range(len(x)), x, None, out), x.size)
    assert parallel.threads() == 3 and x.size >= parallel.PARALLEL_MIN_SIZE
    assert sorted((s.start, s.stop) for s, _ in seen) == [(0, 333), (333, 666), (666, 1000)]
    names = dict((s.start, name) for s, name in seen)
    assert names[0] == threading.current_thread().name  # the caller takes the first chunk
    assert names[333].startswith("engine-kernel") and names[666].startswith("engine-kernel")
    np.testing.assert_array_equal(out, np.exp(x))
    assert parts == [float(np.add.reduce(np.exp(x[s]), axis=None))
                     for s in (slice(0, 333), slice(333, 666), slice(666, 1000))]


def test_a_small_kernel_runs_once_on_the_calling_thread_on_the_arrays_themselves(
        two_threads) -> None:
    x = np.ones((10, 10))
    calls: list[tuple[np.ndarray, str]] = []
    parallel.by_rows(lambda rows: calls.append((rows, threading.current_thread().name)),
                     (x,), x.size)
    assert len(calls) == 1 and calls[0][0] is x  # not a slice of it
    assert calls[0][1] == threading.current_thread().name


def test_one_thread_when_the_setting_says_so(monkeypatch) -> None:
    monkeypatch.setenv("ENGINE_NUM_THREADS", "1")
    parallel.threads.cache_clear()
    try:
        seen: list[tuple[range, str]] = []
        parts = parallel.by_rows(
            lambda rows: seen.append((rows, threading.current_thread().name)) or len(rows),
            (range(1000),), 3 * parallel.BLOCK_SIZE)
    finally:
        parallel.threads.cache_clear()
    # 3 blocks on the calling thread, in order
    assert [rows for rows, _ in seen] == [range(0, 333), range(333, 666), range(666, 1000)]
    assert {name for _, name in seen} == {threading.current_thread().name}
    assert parts == [333, 333, 334]


def test_each_thread_works_through_its_chunk_in_blocks(monkeypatch) -> None:
    """2 threads, 5 blocks' worth of elements: each chunk of 500 rows needs 3 blocks, so
    6 blocks of 166 or 167 rows, the first three on the calling thread."""
    monkeypatch.setenv("ENGINE_NUM_THREADS", "2")
    parallel.threads.cache_clear()
    try:
        seen: list[tuple[range, str]] = []
        parts = parallel.by_rows(
            lambda rows: seen.append((rows, threading.current_thread().name)) or rows.start,
            (range(1000),), 5 * parallel.BLOCK_SIZE)
    finally:
        parallel.threads.cache_clear()
    assert parts == [0, 166, 333, 500, 666, 833]  # the blocks' order, whichever ran first
    names = dict((rows.start, name) for rows, name in seen)
    assert {names[0], names[166], names[333]} == {threading.current_thread().name}
    assert len({names[500], names[666], names[833]}) == 1
    assert names[500].startswith("engine-kernel")


def test_no_more_blocks_than_rows_and_no_split_up_to_the_threshold(two_threads) -> None:
    assert parallel.by_rows(lambda rows: rows, (range(2),), 10**9) == [range(0, 1), range(1, 2)]
    x = np.ones((512, 512))
    assert x.size == parallel.PARALLEL_MIN_SIZE
    assert parallel.by_rows(lambda rows: rows, (x,), x.size)[0] is x  # one call, no slice


def test_an_error_in_a_block_is_raised_after_all_threads_finish(two_threads) -> None:
    finished: list[int] = []

    def work(rows: range) -> None:
        if rows.start == 0:
            raise ValueError("block 0 failed")
        time.sleep(0.05)
        finished.append(rows.start)

    with pytest.raises(ValueError, match="block 0 failed"):
        parallel.by_rows(work, (range(30),), 3 * parallel.BLOCK_SIZE)  # a block per thread
    assert sorted(finished) == [10, 20]  # the others were waited for, not left running
