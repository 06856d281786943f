"""How long loading and compiling a spec takes, against its size (the chain workload).

    python benchmarks/load.py                        # 1,000, 10,000 and 100,000 nodes
    python benchmarks/load.py --sizes 1000 100000 --rounds 5

Each size's chain spec (``benchmarks.workloads.chain_spec``: N alternating Mul and
Exp nodes) is written to a temporary folder, then loaded with ``engine.load``
(YAML with positions, validation, build, budget, lint) and compiled with
``engine.Executor``, ``--rounds`` times; the table shows the median seconds of
each part, the total per node, which stays flat when every stage is linear, and
the CPU seconds of both (the steadier number on a shared machine).
This is a measurement, not a test: it never fails on time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from benchmarks.workloads import chain_spec  # noqa: E402


def measure(path: Path) -> tuple[float, float, float]:
    """Seconds to load ``path`` and to compile the graph (wall clock), and the CPU seconds of
    both (steadier than the wall clock where other processes share the cores), one round."""
    gc.collect()  # the last round's garbage is not this round's cost
    cpu = time.process_time()
    start = time.perf_counter()
    graph = engine.load(path)
    loaded = time.perf_counter()
    engine.Executor(graph)
    return loaded - start, time.perf_counter() - loaded, time.process_time() - cpu


def table(sizes: Sequence[int], rounds: int) -> str:
    lines = ["| nodes | load (s) | compile (s) | total (s) | per node (us) | CPU (s) |",
             "|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"chain{size}.yaml"
            path.write_text(chain_spec(size))
            runs = [measure(path) for _ in range(rounds)]
            load = statistics.median(r[0] for r in runs)
            compile_ = statistics.median(r[1] for r in runs)
            total = statistics.median(r[0] + r[1] for r in runs)
            cpu = statistics.median(r[2] for r in runs)
            nodes = size + 1  # the chain and its Sum
            lines.append(f"| {nodes:,} | {load:.3f} | {compile_:.3f} | {total:.3f} | "
                         f"{total / nodes * 1e6:.1f} | {cpu:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000],
                        help="chain lengths to load (default: 1000 10000 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (median shown)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or any(size < 1 for size in args.sizes):
        parser.error("--rounds and --sizes take whole numbers >= 1")
    print(table(args.sizes, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
