"""Large row-wise NumPy kernels, split over the machine's cores.

NumPy runs a ufunc on one core, where XLA (``jax.jit``) splits large elementwise work
over all of them; on the lesson's 4096x1024 softmax the exponentials alone take 21 ms
on one core of this machine and 12.5 ms on two.  A kernel that treats its rows
independently (CrossEntropy's forward: each row's maximum, exponentials, sum and log)
computes the same bits in chunks of rows, so from ``PARALLEL_MIN_SIZE`` elements
``by_rows`` runs one chunk on the calling thread and the others on a pool of worker
threads at the same time (NumPy lets go of the GIL inside its loops).  Only NumPy fast
paths call it; the rules stay one call each.

``ENGINE_NUM_THREADS`` sets how many threads share a kernel (1: the calling thread
alone); the default is the number of cores this process may run on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from itertools import pairwise
from typing import Any, TypeVar

T = TypeVar("T")

#: From this many elements a kernel is split: below it, handing chunks to other threads
#: (tens of microseconds) costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 18

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@lru_cache(maxsize=1)
def threads() -> int:
    """How many threads share a large kernel: ``ENGINE_NUM_THREADS``, else the cores this
    process may run on."""
    setting = os.environ.get("ENGINE_NUM_THREADS", "").strip()
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def by_rows(work: Callable[..., T], arrays: Sequence[Any], size: int) -> list[T]:
    """``work(*chunks)`` for consecutive chunks of rows: each of ``arrays`` sliced alike
    along its first axis (a None stays None), each chunk on its own thread when ``size``
    (the elements the kernel touches) is large enough.  Otherwise one call on the arrays
    themselves: no slices, no closure, which on small arrays cost as much as the kernel.
    The results come back in the chunks' order; an exception in any chunk is raised here,
    after every chunk has finished."""
    rows = len(arrays[0])
    count = min(threads(), rows) if size >= PARALLEL_MIN_SIZE else 1
    if count <= 1:
        return [work(*arrays)]
    bounds = [rows * i // count for i in range(count + 1)]

    def chunk(rows: slice) -> T:
        return work(*(None if array is None else array[rows] for array in arrays))

    chunks = [slice(start, stop) for start, stop in pairwise(bounds)]
    pool = _workers(count - 1)
    futures: list[Future[T]] = [pool.submit(chunk, rows) for rows in chunks[1:]]
    try:
        first = chunk(chunks[0])
    finally:
        for future in futures:  # never leave a chunk writing after we return or raise
            future.exception()
    return [first, *(future.result() for future in futures)]


def _workers(count: int) -> ThreadPoolExecutor:
    """The process's pool of kernel threads (made on first use, enlarged when asked for
    more)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < count:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="engine-kernel")
        return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
