"""Large row-wise NumPy kernels, in blocks of rows split over the machine's cores.

NumPy runs a ufunc on one core, where XLA (``jax.jit``) splits large elementwise work
over all of them; on the lesson's 4096x1024 softmax the exponentials alone take
about 25 ms on one core of this machine and 15 ms on two (2026-12-01, quiet).
A kernel that treats its rows independently (CrossEntropy's forward: each row's
maximum, exponentials, sum and log)
computes the same bits in blocks of rows, so above ``PARALLEL_MIN_SIZE`` elements
``by_rows`` gives each thread a chunk of consecutive rows, the calling thread the first
and a pool of worker threads the others at the same time (NumPy lets go of the GIL inside
its loops), and each thread works through its chunk in blocks of at most about
``BLOCK_SIZE`` elements.  A kernel makes several
passes over its rows (maximum, subtraction, exp, sums, scaling); on a block those passes
read what the one before left in the cache instead of memory.  Only NumPy fast paths
call it; the rules stay one call each.

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

#: Above this many elements a kernel is split: up to it, handing chunks to other threads
#: (tens of microseconds) costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 18

#: A large kernel's rows go in blocks of about this many elements (2 MiB of float64 per
#: array).  Measured on W1's kernel without its exp (one thread, 4096 x 1024, CPU time):
#: 12.6 ms on whole arrays, 10.2 ms in blocks of 2^18, 10.6 ms of 2^17, 11.6 ms of 2^16
#: (each block costs a dozen NumPy calls, and blocks the size of L2 gained nothing).
BLOCK_SIZE = 1 << 18

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
    """``work(*block)`` for consecutive blocks of rows: each of ``arrays`` sliced alike
    along its first axis (a None stays None).  Above ``PARALLEL_MIN_SIZE`` elements
    (``size``: the elements the kernel touches) each thread takes a chunk of consecutive
    rows, cut into as few blocks of at most about ``BLOCK_SIZE`` elements as the chunk
    needs, all threads the same number.  Up to it, one call on the arrays themselves: no
    slices, no closure, which on small arrays cost as much as the kernel.  The results
    come back in the blocks' order; an exception in any block is raised here, after every
    thread has finished."""
    if size <= PARALLEL_MIN_SIZE:
        return [work(*arrays)]
    rows = len(arrays[0])
    count = min(threads(), rows)
    blocks = min(rows, count * -(-size // (count * BLOCK_SIZE)))
    bounds = [rows * i // blocks for i in range(blocks + 1)]
    spans = [slice(start, stop) for start, stop in pairwise(bounds)]

    def run(spans: list[slice]) -> list[T]:
        return [work(*(None if array is None else array[span] for array in arrays))
                for span in spans]

    if count == 1:
        return run(spans)
    chunks = [spans[blocks * i // count:blocks * (i + 1) // count] for i in range(count)]
    pool = _workers(count - 1)
    futures: list[Future[list[T]]] = [pool.submit(run, chunk) for chunk in chunks[1:]]
    try:
        first = run(chunks[0])
    finally:
        for future in futures:  # never leave a block writing after we return or raise
            future.exception()
    return [*first, *(result for future in futures for result in future.result())]


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
