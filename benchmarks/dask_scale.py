"""Full-batch training steps of graphs/mlp.yaml on a data set larger than a worker's memory.

A Wine-like data set (13 features, 3 classes: class-conditional Gaussians with a
fixed seed) is written to an ``.npy`` file block by block, never whole in memory:
columns 0..12 the features, column 13 the class.  A local Dask cluster of
``--workers`` processes with ``--worker-memory`` each (on 127.0.0.1) then runs
``--steps`` full-batch gradient steps with ``--backend dask``: each step's forward
and backward over every row is one Dask graph, computed once, whose chunks each
worker reads from the file itself (a memory map, one block of rows at a time).

Reported: the time per step, rows per second, the peak memory of each worker
process (its peak resident set, ``VmHWM``, read on the worker), whether a worker was
killed (restarted by its nanny) or spilled to disk.  Checked: the loss and the
gradients of every step against an independent NumPy computation (the network's
forward and its hand-derived backward, as in the lesson), which streams the
same file in blocks and sums the gradients; equal to ``--rtol`` (1e-9) or the
script exits 1.

    python -m benchmarks.dask_scale                      # 3 GiB, 2 workers x 512 MiB
    python -m benchmarks.dask_scale --size 32MiB --steps 2 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.io.lazy import lazy_npy  # noqa: E402
from engine.limits import human_bytes, parse_bytes  # noqa: E402
from engine.runtime.executor import Executor  # noqa: E402
from engine.spec.loader import load  # noqa: E402

FEATURES, CLASSES = 13, 3
COLUMNS = FEATURES + 1  # the features, then the class
BLOCK_ROWS = 1 << 20  # rows written, and read by the NumPy check, at a time (112 MiB)


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` Wine-like rows into ``path`` (.npy, float64), one block at a time: each class
    a Gaussian around its own mean in 13 dimensions, the features roughly standardised."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (CLASSES, FEATURES))
    scales = rng.uniform(0.6, 1.2, (CLASSES, FEATURES))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, COLUMNS))
    for start in range(0, rows, BLOCK_ROWS):
        n = min(BLOCK_ROWS, rows - start)
        labels = rng.integers(0, CLASSES, n)
        block = out[start:start + n]
        block[:, :FEATURES] = means[labels] + scales[labels] * rng.standard_normal((n, FEATURES))
        block[:, FEATURES] = labels
        out.flush()
    del out


def dask_data(path: Path, chunk_rows: int) -> tuple[Any, Any]:
    """``x`` [rows, 13] and one-hot ``y`` [rows, 3] as Dask arrays read from ``path`` by the
    engine's reader (engine.io.lazy: each task reads its own rows through a memory map)."""
    data = lazy_npy(path, chunk_rows)
    x = data[:, :FEATURES]
    y = (data[:, FEATURES:] == np.arange(CLASSES)).astype(np.float64)
    return x, y


def numpy_loss_and_gradients(path: Path, p: dict[str, np.ndarray]
                             ) -> tuple[float, dict[str, np.ndarray]]:
    """The mean NLL of softmax(relu(x w1 + b1) w2 + b2) and its gradients, by hand, summed
    over blocks of the file: d loss / d logits = (p - y) / rows (one-hot y)."""
    data = np.load(path, mmap_mode="r")
    rows = data.shape[0]
    loss = 0.0
    grads = {name: np.zeros_like(value) for name, value in p.items()}
    for start in range(0, rows, BLOCK_ROWS):
        block = np.array(data[start:start + BLOCK_ROWS])
        x, labels = block[:, :FEATURES], block[:, FEATURES].astype(np.int64)
        y = np.zeros((len(x), CLASSES))
        y[np.arange(len(x)), labels] = 1.0
        z1 = x @ p["w1"] + p["b1"]
        a1 = np.maximum(z1, 0.0)
        logits = a1 @ p["w2"] + p["b2"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        loss -= float(np.sum(y * np.log(probs)))
        dlogits = (probs - y) / rows
        grads["w2"] += a1.T @ dlogits
        grads["b2"] += dlogits.sum(axis=0)
        dz1 = (dlogits @ p["w2"].T) * (z1 > 0)
        grads["w1"] += x.T @ dz1
        grads["b1"] += dz1.sum(axis=0, keepdims=True)
    return loss / rows, grads


def _peak_rss() -> int:
    """This process's peak resident memory: ``VmHWM`` on Linux.  Not ``ru_maxrss``, which a
    spawned worker inherits from the parent it was forked from before its exec."""
    import psutil

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return psutil.Process().memory_info().rss


def _probe(dask_worker: Any) -> dict[str, Any]:
    """Run on each worker: its peak and current memory, what it has spilled to disk."""
    import psutil

    spilled = getattr(dask_worker.data, "spilled_total", None)
    return {"pid": os.getpid(),
            "peak_rss": _peak_rss(),
            "rss": psutil.Process().memory_info().rss,
            "spilled_disk": int(spilled.disk) if spilled is not None else 0,
            "memory_limit": dask_worker.memory_manager.memory_limit,
            "status": str(dask_worker.status)}


class Monitor(threading.Thread):
    """Polls the workers while the steps run: the largest memory and spill each reached,
    and every worker process seen (a new pid is a worker restarted after being killed)."""

    def __init__(self, client: Any, every: float = 0.25):
        super().__init__(daemon=True)
        self.client, self.every = client, every
        self.seen: dict[str, dict[str, Any]] = {}
        self.pids: dict[str, set[int]] = {}
        self.paused = False
        self.stopping = threading.Event()

    def poll(self) -> None:
        for address, probe in self.client.run(_probe, on_error="return").items():
            if isinstance(probe, BaseException):
                continue
            self.pids.setdefault(address, set()).add(probe["pid"])
            best = self.seen.setdefault(address, dict(probe))
            for key in ("peak_rss", "rss", "spilled_disk"):
                best[key] = max(best[key], probe[key])
            self.paused |= "paused" in probe["status"]

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            with contextlib.suppress(Exception):  # a worker between lives: the next poll sees it
                self.poll()


def run_benchmark(path: Path, *, workers: int, worker_memory: int, steps: int, chunk_rows: int,
                  lr: float, rtol: float, timeout: float) -> dict[str, Any]:
    from engine.runtime.cluster import ClusterOptions, session

    graph = load(ROOT / "graphs" / "mlp.yaml")
    rows = int(np.load(path, mmap_mode="r").shape[0])
    options = ClusterOptions("dask", None, workers, worker_memory, timeout)
    with session(options) as client:
        start_workers = set(client.scheduler_info()["workers"])
        monitor = Monitor(client)
        monitor.poll()
        monitor.start()
        x, y = dask_data(path, chunk_rows)
        ex = Executor(graph, backend="dask", chunk_rows=chunk_rows)
        params = {name: np.array(v.compute()) for name, v in ex.parameters.items()}
        checks, times = [], []
        for step in range(steps):
            began = time.perf_counter()
            ex.parameters.update(params)
            ex.forward({"x": x, "y": y})
            (grads,) = ex.compute(ex.backward())
            times.append(time.perf_counter() - began)
            loss = ex.loss
            assert loss is not None
            reference_loss, reference = numpy_loss_and_gradients(path, params)
            checks.append(_compare(step, loss, grads, reference_loss, reference))
            print(f"step {step + 1}/{steps}: {times[-1]:.1f} s, loss {loss:.12f}, largest "
                  f"relative difference from NumPy {checks[-1]['max_rel']:.1e}", file=sys.stderr)
            params = {name: params[name] - lr * grads[name] for name in params}
        monitor.stopping.set()
        monitor.join()
        monitor.poll()
        end_workers = set(client.scheduler_info()["workers"])
    per_worker = [{"address": a, "peak_rss": s["peak_rss"], "polled_rss": s["rss"],
                   "spilled_disk": s["spilled_disk"],
                   "memory_limit": s["memory_limit"], "processes": len(monitor.pids[a])}
                  for a, s in sorted(monitor.seen.items())]
    killed = end_workers != start_workers or any(w["processes"] > 1 for w in per_worker)
    return {
        "file": str(path), "bytes": path.stat().st_size, "rows": rows,
        "workers": workers, "worker_memory": worker_memory, "chunk_rows": chunk_rows,
        "chunks": -(-rows // chunk_rows), "steps": steps,
        "seconds_per_step": times, "rows_per_second": rows * steps / sum(times),
        "per_worker": per_worker, "killed": killed,
        "spilled": any(w["spilled_disk"] for w in per_worker), "paused": monitor.paused,
        "checks": checks, "rtol": rtol,
        "equal": all(c["max_rel"] <= rtol for c in checks),
    }


def _compare(step: int, loss: float, grads: dict[str, np.ndarray], reference_loss: float,
             reference: dict[str, np.ndarray]) -> dict[str, Any]:
    """Relative differences: of the loss, and of each gradient in the max norm."""
    rel = {"loss": abs(loss - reference_loss) / abs(reference_loss)}
    for name, want in reference.items():
        rel[name] = float(np.max(np.abs(grads[name] - want)) / np.max(np.abs(want)))
    return {"step": step + 1, "loss": loss, "numpy_loss": reference_loss, "rel": rel,
            "max_rel": max(rel.values())}


def _report(result: dict[str, Any]) -> str:
    lines = [f"{human_bytes(result['bytes'])} .npy, {result['rows']:,} rows x {COLUMNS} "
             f"float64, {result['chunks']} chunks of {result['chunk_rows']:,} rows; "
             f"{result['workers']} workers x {human_bytes(result['worker_memory'])}",
             "seconds per step: " + ", ".join(f"{s:.1f}" for s in result["seconds_per_step"]),
             f"rows per second: {result['rows_per_second']:,.0f}"]
    for w in result["per_worker"]:
        lines.append(f"worker {w['address']}: peak memory {human_bytes(w['peak_rss'])} of "
                     f"{human_bytes(w['memory_limit'])}, spilled {human_bytes(w['spilled_disk'])}"
                     f", processes {w['processes']}")
    lines.append(f"killed: {'yes' if result['killed'] else 'no'}; spilled: "
                 f"{'yes' if result['spilled'] else 'no'}; paused: "
                 f"{'yes' if result['paused'] else 'no'}")
    worst = max(c["max_rel"] for c in result["checks"])
    lines.append(f"loss and gradients vs NumPy: largest relative difference {worst:.1e} "
                 f"({'within' if result['equal'] else 'NOT within'} {result['rtol']:g})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_bytes, default=3 * 2**30,
                        help="size of the generated .npy (default 3GiB)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", type=parse_bytes, default=512 * 2**20)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=200_000,
                        help="rows per chunk (default 200,000: 21 MiB of the file)")
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--rtol", type=float, default=1e-9)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the .npy is written (default: a temporary folder), and "
                             "deleted afterwards")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = max(1, args.size // (COLUMNS * 8))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="dask_scale-") as folder:
        path = Path(folder) / "wine_like.npy"
        began = time.perf_counter()
        generate(path, rows)
        print(f"wrote {human_bytes(path.stat().st_size)} in {time.perf_counter() - began:.1f} s",
              file=sys.stderr)
        result = run_benchmark(path, workers=args.workers, worker_memory=args.worker_memory,
                               steps=args.steps, chunk_rows=args.chunk_rows, lr=args.lr,
                               rtol=args.rtol, timeout=args.timeout)
    print(json.dumps(result) if args.json else _report(result))
    return 0 if result["equal"] and not result["killed"] else 1


if __name__ == "__main__":
    sys.exit(main())
