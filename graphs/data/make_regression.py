"""Writes regression_train.csv and regression_test.csv: a known smooth function plus noise.

Run once (``python graphs/data/make_regression.py``); the files are committed, and
nothing is generated at run or test time.  The noise is Gaussian with standard
deviation NOISE, so no model can do better than a test MSE of about NOISE**2
(0.01) or a test MAE of about NOISE * sqrt(2 / pi) (0.080): the example's test
compares its errors with these floors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NOISE = 0.1
ROWS = {"regression_train.csv": 800, "regression_test.csv": 200}


def target(x: np.ndarray) -> np.ndarray:
    """The noiseless truth: smooth, non-linear, with an interaction between features."""
    return np.sin(2.0 * x[:, 0]) + 0.5 * x[:, 1] ** 2 - x[:, 0] * x[:, 2]


def main() -> None:
    rng = np.random.default_rng(2026)
    folder = Path(__file__).parent
    for name, rows in ROWS.items():
        x = rng.uniform(-1.5, 1.5, size=(rows, 3))
        y = target(x) + rng.normal(0.0, NOISE, size=rows)
        np.savetxt(folder / name, np.column_stack([x, y]), fmt="%.6f", delimiter=",",
                   header="x0,x1,x2,y", comments="")


if __name__ == "__main__":
    main()
