"""Where Dask runs the work: a running ``dask.distributed`` scheduler, a local cluster, or
Dask's threaded scheduler in this process.

``--scheduler tcp://HOST:PORT`` connects to a scheduler an operator started
(``dask scheduler``, with ``dask worker`` processes on the machines); ``--workers N``
starts a ``LocalCluster`` of N worker processes bound to 127.0.0.1 for one command and
closes it whatever happens; with neither, Dask's threaded scheduler runs in-process
(``engine.runtime.backends.Backend.compute``).  A client made here becomes Dask's
default, so every ``dask.compute`` of the command, ``Backend.compute`` included, runs
on it, with no client passed around.

``distributed`` is imported only when one of these options is given: it takes a
second to import, and it is an optional extra.  Every wait (connecting, the first
worker, starting the local cluster) is bounded by ``--cluster-timeout``, and a
scheduler that cannot be used is a usage error (exit 2) saying what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ClusterError, UsageError
from engine.limits import human_bytes

#: The protocols of a ``dask.distributed`` address an operator would give.
PROTOCOLS = ("tcp", "tls")


@dataclass(frozen=True)
class ClusterOptions:
    """What the command line asked for: ``scheduler`` or ``workers`` (never both)."""

    backend: str
    scheduler: str | None
    workers: int | None
    worker_memory: int | None
    #: Seconds to wait for the scheduler, its first worker, or a local cluster to start.
    timeout: float

    @classmethod
    def from_args(cls, args: Any) -> ClusterOptions:
        return cls(args.backend, args.scheduler, args.workers, args.worker_memory,
                   args.cluster_timeout)

    @property
    def distributed(self) -> bool:
        """Whether a ``dask.distributed`` cluster is used (else nothing to start)."""
        return self.scheduler is not None or self.workers is not None

    def check(self) -> None:
        """Usage errors for options that do not fit together, before anything starts."""
        chosen = [option for option, value in (("--scheduler", self.scheduler),
                                               ("--workers", self.workers),
                                               ("--worker-memory", self.worker_memory))
                  if value is not None]
        if chosen and self.backend != "dask":
            raise UsageError(f"{' and '.join(chosen)}: only with --backend dask (where Dask "
                             f"computes), but the backend is {self.backend!r}; add --backend "
                             "dask")
        if self.scheduler is not None and self.workers is not None:
            raise UsageError("--scheduler and --workers: give one: --scheduler ADDRESS uses a "
                             "running cluster, --workers N starts one on this machine")
        if self.worker_memory is not None and self.workers is None:
            raise UsageError("--worker-memory sets the memory of the workers that --workers N "
                             "starts; a running cluster's workers have theirs already "
                             "(dask worker --memory-limit)")
        if self.scheduler is not None:
            check_address(self.scheduler)


def check_address(address: str) -> None:
    """A usage error unless ``address`` reads as ``tcp://HOST:PORT`` (or ``tls://``)."""
    parts = urlsplit(address)
    expected = ("expected tcp://HOST:PORT, such as tcp://127.0.0.1:8786 (the address "
                "`dask scheduler` prints as 'Scheduler at:')")
    if parts.scheme not in PROTOCOLS or not parts.netloc:
        bare = "://" not in address and ":" in address
        hint = f" (did you mean tcp://{address}?)" if bare else ""
        raise UsageError(f"--scheduler {address!r}: not a scheduler address{hint}; {expected}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port is None or not 0 < port < 65536 or \
            parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"--scheduler {address!r}: not a scheduler address; {expected}")


@contextmanager
def session(options: ClusterOptions) -> Iterator[Any]:
    """Inside: Dask computes on the cluster ``options`` ask for (yields its client, or None
    when Dask's threaded scheduler is used).  The client is closed, and a local cluster shut
    down, however the block ends: an error, Ctrl-C, a worker lost."""
    options.check()
    if not options.distributed:
        yield None
        return
    distributed = _import_distributed()
    with ExitStack() as stack:
        stack.enter_context(_quiet_dask_logs())
        if options.scheduler is not None:
            client = stack.enter_context(_connect(distributed, options))
        else:
            client = stack.enter_context(_local_cluster(distributed, options))
        _say_where(client, options)
        watch = _NoWorkers(client, options.timeout)
        if options.scheduler is not None:  # a local cluster's nannies restart their workers
            watch.start()
        try:
            yield client
        except (distributed.KilledWorker, CancelledError, distributed.comm.CommClosedError
                ) as exc:
            if watch.gave_up:
                raise ClusterError(_lost_all(options)) from None
            raise ClusterError(_lost(exc)) from None
        finally:
            watch.stopping.set()


class _NoWorkers(threading.Thread):
    """Ends the wait when a running cluster has had no worker for ``timeout`` seconds: Dask
    itself would wait for workers to come back for ever.  It closes the client, which
    cancels the computation in progress; ``session`` then says why."""

    def __init__(self, client: Any, timeout: float):
        super().__init__(daemon=True, name="engine-no-workers")
        self.client, self.timeout = client, timeout
        self.stopping = threading.Event()
        self.gave_up = False

    def run(self) -> None:
        since: float | None = None
        while not self.stopping.wait(0.5):
            try:
                workers = len(self.client.scheduler_info()["workers"])
            except Exception:  # the scheduler gone: the computation fails on its own
                return
            if workers:
                since = None
                continue
            since = time.monotonic() if since is None else since
            if time.monotonic() - since >= self.timeout:
                self.gave_up = True
                self.client.close()
                return


def _lost_all(options: ClusterOptions) -> str:
    return (f"the Dask cluster could not finish the computation: the scheduler at "
            f"{options.scheduler} has had no workers for {options.timeout:g} s (all of them "
            "died or left); start workers with `dask worker ADDRESS` and run again, or wait "
            "longer with --cluster-timeout SECONDS. Files written before this are whole "
            "(engine train --save writes its checkpoint after every epoch, atomically): "
            "continue with --resume FILE")


def _lost(exc: BaseException) -> str:
    """Why the cluster could not go on, and that what was saved is whole.  A worker that
    dies is not such a case: Dask computes its lost pieces again on the others; only a
    task whose workers died ``distributed.scheduler.allowed-failures`` times (3), or the
    scheduler gone, ends the run."""
    text = str(exc).strip()
    if type(exc).__name__ == "KilledWorker":
        why = f"a task's workers kept dying ({text.splitlines()[0] if text else 'KilledWorker'})"
    else:
        reason = text.partition("reason: ")[2].split()[:1]  # "... cancelled for reason: X."
        why = "the scheduler went away" + (f" ({reason[0].rstrip('.')})" if reason else "")
    return (f"the Dask cluster could not finish the computation: {why}. Files "
            "written before this are whole (engine train --save writes its checkpoint after "
            "every epoch, atomically): once the cluster runs again, continue with --resume "
            "FILE")


#: The loggers through which dask.distributed (and tornado, its event loop) report a lost
#: connection, with the library's traceback, from this process.
_DASK_LOGGERS = ("distributed", "tornado", "asyncio")


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Silence the cluster libraries' own logging in this process while the session lasts.

    When a worker or the scheduler dies, the client's background threads log the broken
    connection with a Python traceback, at a moment that depends on timing; the engine
    reports what went wrong itself (``ClusterError``: one line saying what to do), so the
    user never sees a library traceback.  Loggers with a level of their own (Dask's
    configuration sets some) are silenced one by one; the levels come back afterwards."""
    names = [name for name in logging.root.manager.loggerDict
             if name.startswith(tuple(f"{root}." for root in _DASK_LOGGERS))]
    loggers = [logging.getLogger(name) for name in (*_DASK_LOGGERS, *names)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _import_distributed() -> Any:
    if importlib.util.find_spec("distributed") is None:
        raise UsageError('--scheduler and --workers need dask.distributed, which is not '
                         'installed: pip install -e ".[dask]"')
    return importlib.import_module("distributed")


@contextmanager
def _connect(distributed: Any, options: ClusterOptions) -> Iterator[Any]:
    address, seconds = options.scheduler, options.timeout
    try:
        client = distributed.Client(address, timeout=seconds, set_as_default=True)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--scheduler {address}: no Dask scheduler answered within "
                         f"{seconds:g} s ({_reason(exc)}); check the address that "
                         "`dask scheduler` printed and that it still runs, or wait longer "
                         "with --cluster-timeout SECONDS") from None
    try:
        _wait_for_a_worker(client, address, seconds)
        yield client
    finally:
        client.close()


def _wait_for_a_worker(client: Any, address: str, seconds: float) -> None:
    """A scheduler without workers would make the first compute wait forever."""
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError:
        raise UsageError(f"--scheduler {address}: the scheduler has no workers (none joined "
                         f"within {seconds:g} s); start some with `dask worker {address}`, "
                         "or wait longer with --cluster-timeout SECONDS") from None


@contextmanager
def _local_cluster(distributed: Any, options: ClusterOptions) -> Iterator[Any]:
    """``workers`` processes of one thread each on 127.0.0.1 (never another interface), each
    with ``worker_memory`` bytes, or Dask's default: the machine's memory shared out."""
    memory: int | str = options.worker_memory if options.worker_memory is not None else "auto"
    try:
        cluster = distributed.LocalCluster(
            n_workers=options.workers, threads_per_worker=1, processes=True,
            host="127.0.0.1", scheduler_port=0, dashboard_address="127.0.0.1:0",
            memory_limit=memory, timeout=options.timeout,
            # the workers print to this terminal: a task's error (a bad label found where
            # its chunk is read) would show there with a traceback, before the engine's own
            # one-line report of it
            silence_logs=logging.CRITICAL)
    except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: a worker did not start
        raise UsageError(f"--workers {options.workers}: the local Dask cluster did not start "
                         f"within {options.timeout:g} s ({_reason(exc)}); wait longer with "
                         "--cluster-timeout SECONDS, or start fewer workers") from None
    try:
        client = distributed.Client(cluster, timeout=options.timeout, set_as_default=True)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _say_where(client: Any, options: ClusterOptions) -> None:
    """One line on stderr: the scheduler, its workers and the dashboard's address."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    memory = [w.get("memory_limit") for w in workers.values()]
    each = ""
    if memory and memory[0] and all(m == memory[0] for m in memory):
        each = f" of {human_bytes(memory[0])}" if len(memory) == 1 else \
            f", {human_bytes(memory[0])} each"
    kind = "local cluster" if options.workers is not None else "scheduler"
    dashboard = client.dashboard_link if "dashboard" in info.get("services", {}) else None
    where = f"dashboard {dashboard}" if dashboard else "no dashboard"
    if dashboard and importlib.util.find_spec("bokeh") is None:
        where += " (its pages need bokeh: pip install bokeh)"
    print(f"dask: {kind} {info.get('address', options.scheduler)}, {len(workers)} worker"
          f"{'' if len(workers) == 1 else 's'}{each}; {where}", file=sys.stderr)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.rstrip(".")
