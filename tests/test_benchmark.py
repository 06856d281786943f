"""The benchmark is a measurement, not a test; this only checks that it runs and reports."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

from engine.runtime.backends import installed


def test_benchmark_runs_in_smoke_mode_and_writes_its_table(tmp_path) -> None:
    report = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--quiet",
         "--output", str(report)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert text == result.stdout
    assert "| workload | size | engine µs | NumPy µs | **engine / NumPy** |" in text
    for group in ("W1", "W2", "Chain", "Diamond"):
        row = re.search(rf"^\| {group} \| .*\| \*\*(\d+\.\d\d)\*\* \|", text, flags=re.M)
        assert row is not None, f"no {group} row in:\n{text}"
        assert float(row.group(1)) > 0
    assert "OPENBLAS_CORETYPE=" in text and "NumPy" in text
    if installed("jax"):  # the engine on --backend jax, compiled, beside jax.jit
        assert "| engine jax / NumPy | jax.jit / NumPy |" in text


def test_benchmark_refuses_unknown_options() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--fast"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unrecognized arguments: --fast" in result.stderr
