"""What ``check_finite`` and ``trace`` cost: off (the default) should cost nothing.

    python benchmarks/instrument.py            # mlp.yaml at batch 10 and 4096

Each configuration is an ``Executor`` of ``graphs/mlp.yaml``; one forward plus one
backward is timed.  The machine may be shared, so configurations are interleaved
over several rounds and each reports its best round.  "default" and
"check_finite=False" run the very same plan (the ops are not wrapped), so any gap
between them is noise.  This is a measurement, not a test: it never fails on time.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import engine  # noqa: E402

CONFIGS = (("default", {}), ("check_finite=False", {"check_finite": False}),
           ("check_finite=True", {"check_finite": True}), ("trace=True", {"trace": True}))


def main() -> None:
    graph = engine.load(ROOT / "graphs" / "mlp.yaml")
    print("| batch | configuration | µs per forward+backward | vs default |")
    print("|---:|---|---:|---:|")
    for batch, number in ((10, 500), (4096, 20)):
        rng = np.random.default_rng(0)
        feeds = {"x": rng.normal(size=(batch, 13)), "y": np.eye(3)[rng.integers(0, 3, batch)]}
        executors = {label: engine.Executor(graph, **kw) for label, kw in CONFIGS}
        best = dict.fromkeys(executors, float("inf"))
        for _ in range(15):
            for label, ex in executors.items():
                def step(ex: engine.Executor = ex, feeds: dict = feeds) -> None:
                    ex.forward(feeds)
                    ex.backward()
                seconds = timeit.timeit(step, number=number) / number
                best[label] = min(best[label], seconds)
        for label, seconds in best.items():
            print(f"| {batch} | {label} | {seconds * 1e6:.1f} | "
                  f"{seconds / best['default']:.2f} |")


if __name__ == "__main__":
    main()
