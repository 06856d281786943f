"""The load benchmark is a measurement, not a test; this only checks that it runs and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_load_benchmark_reports_a_row_per_size() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load.py"), "--sizes",
                             "10", "20", "--rounds", "1"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["11", "21"]
