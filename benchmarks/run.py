"""Benchmark the engine against hand-written NumPy (and jax.jit and PyTorch, when installed).

    python benchmarks/run.py                  # every workload, about 5 to 10 minutes
    python benchmarks/run.py --quick          # fewer rounds and sizes, under a minute
    python benchmarks/run.py --output bench.md

Shared machines are noisy, so the sides are interleaved (engine, NumPy,
engine on jax, jax.jit, PyTorch, ..., then the same backwards) over several rounds, each
round yields one ratio side/NumPy per side, and the table reports the median
of those ratios (and the median times of the engine and NumPy).  A ratio
below 1 means that side is faster than the lesson's hand-written NumPy.  The
other sides (``benchmarks/workloads.py``: the engine on ``--backend jax``,
jax.jit, PyTorch eager and fused, fused NumPy) are columns only where their
library is installed.  Before
timing, each workload checks that every side computes the lesson's gradient.
Peak memory is measured in a fresh subprocess with tracemalloc (NumPy reports
its allocations to it).

This is a measurement, not a test: it never fails on time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import workloads as wl  # noqa: E402
from engine.io.atomic import write_atomically  # noqa: E402

MEMORY_SHAPE = (4096, 1024)


@dataclass(frozen=True)
class Settings:
    """How long to measure: ``rounds`` interleaved samples, each at least ``min_time`` s."""

    rounds: int
    min_time: float
    w1: tuple[tuple[int, int], ...]
    w2: tuple[tuple[int, int, int, int], ...]
    chain: tuple[int, ...]
    diamond: tuple[int, ...]
    memory: bool


FULL = Settings(rounds=11, min_time=0.05,
                w1=((5, 3), (64, 10), (1024, 1024), (4096, 1024)),
                w2=((10_000, 13, 10, 3), (512, 784, 256, 10)),
                chain=(10, 100, 1_000, 10_000, 100_000),
                diamond=(10, 15, 20, 25), memory=True)
QUICK = Settings(rounds=5, min_time=0.02,
                 w1=((5, 3), (64, 10), (1024, 1024), (4096, 1024)),
                 w2=((10_000, 13, 10, 3), (512, 784, 256, 10)),
                 chain=(10, 100, 1_000, 10_000, 100_000),
                 diamond=(10, 25), memory=True)
SMOKE = Settings(rounds=2, min_time=0.0, w1=((5, 3),), w2=((8, 4, 3, 2),), chain=(10,),
                 diamond=(3,), memory=False)


@dataclass
class Row:
    """One workload's medians: the engine's and NumPy's seconds per step, and each side's
    median paired ratio to NumPy (the engine's included, under ``"engine"``)."""

    group: str
    label: str
    nodes: int
    engine_s: float
    numpy_s: float
    ratios: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.ratios["engine"]


def calibrate(step: Callable[[], Any], min_time: float) -> int:
    """Calls per sample so that one sample lasts at least ``min_time`` seconds."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            step()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9)) + 1)


def sample(step: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - start) / number


def measure(work: wl.Workload, settings: Settings) -> Row:
    """Interleave the sides round by round; medians of per-round times and ratios."""
    work.check()
    sides = {"engine": work.engine, "numpy": work.numpy, **work.others}
    steps = list(sides.values())
    numbers = [calibrate(step, settings.min_time) for step in steps]
    times: list[list[float]] = [[] for _ in steps]
    for round_ in range(settings.rounds):
        order = range(len(steps)) if round_ % 2 == 0 else reversed(range(len(steps)))
        for index in order:
            times[index].append(sample(steps[index], numbers[index]))
    numpy_times = times[1]
    ratios = {name: statistics.median(t / n for t, n in zip(side, numpy_times, strict=True))
              for name, side in zip(sides, times, strict=True) if name != "numpy"}
    return Row(work.group, work.label, work.nodes, statistics.median(times[0]),
               statistics.median(numpy_times), ratios)


def workloads(settings: Settings) -> list[Callable[[], wl.Workload]]:
    """Builders, so that each workload's arrays exist only while it is measured."""
    builders: list[Callable[[], wl.Workload]] = []
    builders += [lambda s=s: wl.w1(*s) for s in settings.w1]
    builders += [lambda s=s: wl.w2(*s) for s in settings.w2]
    builders += [lambda n=n: wl.chain(n) for n in settings.chain]
    builders += [lambda d=d: wl.diamond(d) for d in settings.diamond]
    return builders


# -- peak memory, in a fresh interpreter -------------------------------------------------

def memory_probe(side: str) -> int:
    """Peak bytes allocated during the second of two W1 4096x1024 steps (the first warms up).

    Whatever the first step left behind is still counted, so memory kept between
    steps shows up.  The inputs x and y exist before tracing starts.
    """
    rows, cols = MEMORY_SHAPE
    work = wl.w1(rows, cols)
    step = work.engine if side == "engine" else work.numpy
    tracemalloc.start()
    step()
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def memory_in_subprocess(side: str) -> float:
    """Peak of one step in units of one 4096x1024 float64 array."""
    result = subprocess.run([sys.executable, __file__, "--memory-probe", side],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip()) / (MEMORY_SHAPE[0] * MEMORY_SHAPE[1] * 8)


# -- the report --------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.platform()


def version(module: str) -> str | None:
    """The installed version of ``module``'s distribution, without importing it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed(module)
    except PackageNotFoundError:
        return None


def environment() -> list[str]:
    lines = [f"- machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} cores",
             f"- Python {platform.python_version()}, NumPy {np.__version__}"]
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            lines.append(f"- BLAS: {pool.get('internal_api')} {pool.get('version')} "
                         f"({pool.get('architecture')}, {pool.get('num_threads')} threads)")
    except ImportError:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        lines.append(f"- BLAS: {blas.get('name')} {blas.get('version')}")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS", "XLA_FLAGS"):
        lines.append(f"- {name}={os.environ.get(name, '(unset)')}")
    for module, name, note in (("jax", "jax", "engine jax and jax.jit columns, float64"),
                               ("torch", "PyTorch", "PyTorch columns, 1 thread")):
        found = version(module)
        lines.append(f"- {name} {found} ({note})" if found else
                     f"- {name} not installed: no {name} column")
    return lines


def _us(seconds: float) -> str:
    micro = seconds * 1e6
    return f"{micro:,.1f}" if micro < 100 else f"{micro:,.0f}"


def table(rows: Sequence[Row]) -> list[str]:
    """The Markdown table: the engine's and NumPy's times, then every side's ratio to NumPy
    (the sides of ``workloads.SIDES`` that any row has), then the engine per node."""
    others = [side for side in wl.SIDES if any(side in row.ratios for row in rows)]
    head = ("| workload | size | engine µs | NumPy µs | **engine / NumPy** |"
            + "".join(f" {side} / NumPy |" for side in others)
            + " engine µs / node | overhead µs / node |")
    rule = "|---|---|---:|---:|---:|" + "---:|" * len(others) + "---:|---:|"
    lines = [head, rule]
    for row in rows:
        line = (f"| {row.group} | {row.label} | {_us(row.engine_s)} | {_us(row.numpy_s)} | "
                f"**{row.ratio:.2f}** |")
        line += "".join(f" {row.ratios[side]:.2f} |" if side in row.ratios else " |"
                        for side in others)
        per_node = row.engine_s / row.nodes * 1e6
        overhead = (row.engine_s - row.numpy_s) / row.nodes * 1e6
        # Where the engine is faster than NumPy there is no overhead to speak of.
        line += f" {per_node:.2f} | {f'{overhead:.2f}' if overhead >= 0 else '–'} |"
        lines.append(line)
    return lines


def report(settings: Settings, progress: Callable[[str], None]) -> str:
    rows = []
    for build in workloads(settings):
        work = build()
        progress(f"{work.group} {work.label} ...")
        rows.append(measure(work, settings))
        del work
    lines = ["# Engine vs hand-written NumPy", "",
             f"Median over {settings.rounds} interleaved rounds of the paired ratio to the "
             "lesson's hand-written NumPy; forward then backward, float64. Ratios below 1: "
             "faster than the lesson's NumPy.", "", *environment(), "", *table(rows)]
    if settings.memory:
        progress("peak memory ...")
        engine_peak, numpy_peak = memory_in_subprocess("engine"), memory_in_subprocess("numpy")
        lines += ["", "Peak memory of one W1 4096x1024 step (tracemalloc, in a fresh process; "
                      "x and y not counted), in 4096x1024 float64 arrays:", "",
                  "| side | peak arrays |", "|---|---:|",
                  f"| engine | {engine_peak:.2f} |", f"| NumPy (the lesson) | {numpy_peak:.2f} |"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer rounds: under a minute")
    mode.add_argument("--smoke", action="store_true",
                      help="tiny sizes and two rounds: checks that the benchmark runs")
    mode.add_argument("--memory-probe", choices=["engine", "numpy"], help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, metavar="FILE.md",
                        help="also write the Markdown report to FILE.md (atomically)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(memory_probe(args.memory_probe))
        return 0
    settings = SMOKE if args.smoke else QUICK if args.quick else FULL

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    text = report(settings, progress)
    if args.output is not None:
        write_atomically(args.output, lambda handle: handle.write(text.encode()))
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
