"""A dask.distributed deployment on 127.0.0.1, started the way an operator starts one:
``dask scheduler`` and ``dask worker`` as separate processes.

Each process runs in its own session (its own process group), so that stopping it
stops what it started too (a worker's nanny and the worker process under it), and
``kill -9`` of a group is a machine lost.  ``Deployment.stop`` kills every group it
started, and the fixture calls it whatever the tests did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Seconds a process may take to come up on a busy machine before the fixture gives up
#: (a bound on a hang, not a performance check).
STARTUP = 120.0


@dataclass
class Deployment:
    """A scheduler and its workers; ``address`` is what ``dask scheduler`` wrote."""

    folder: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    address: str = ""

    def start_scheduler(self) -> str:
        file = self.folder / "scheduler.json"
        self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(file))
        self.address = json.loads(_wait_for(file, self.processes[-1]))["address"]
        return self.address

    def start_worker(self, memory: str = "256MiB") -> subprocess.Popen:
        """One ``dask worker`` (a nanny and its worker process) with one thread."""
        return self._start("worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                           "--memory-limit", memory, "--no-dashboard",
                           "--local-directory", str(self.folder / f"worker-{len(self.processes)}"))

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=STARTUP, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=STARTUP)

    def workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=STARTUP, set_as_default=False) as client:
            return len(client.scheduler_info()["workers"])

    def _start(self, *command: str) -> subprocess.Popen:
        log = open(self.folder / f"{command[0]}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        with log:
            process = subprocess.Popen([sys.executable, "-m", "dask", *command],
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=self.folder)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """SIGKILL every process group started here (workers first), then reap them."""
        for process in reversed(self.processes):
            kill_group(process)
        for process in self.processes:
            process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                         for log in sorted(self.folder.glob("*.log")))


def kill_group(process: subprocess.Popen) -> None:
    """``kill -9`` a process and everything in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_for(file: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if file.exists() and file.stat().st_size:
            try:
                text = file.read_text()
                json.loads(text)
                return text
            except ValueError:  # being written
                pass
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"dask scheduler wrote no {file.name} in {STARTUP:g} s")
