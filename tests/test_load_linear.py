"""Loading and compiling stay linear in the size of the spec: counted, never timed.

Every function call made while loading and compiling a chain of N nodes is counted
(Python's profiling hook sees each one, C functions too); twice the nodes must cost
about twice the calls.  A stage that scanned all earlier nodes for each node would
make four times as many.
"""

from __future__ import annotations

import sys
from typing import Any

import engine
from benchmarks.workloads import chain_spec


def _calls(text: str) -> int:
    count = 0

    def hook(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(hook)
    try:
        engine.Executor(engine.loads(text))
    finally:
        sys.setprofile(None)
    return count


def test_loading_and_compiling_a_chain_costs_calls_in_proportion_to_its_nodes() -> None:
    _calls(chain_spec(10))  # first use: caches, lazy imports
    small, large = _calls(chain_spec(2_000)), _calls(chain_spec(4_000))
    assert large < 2.2 * small, (small, large)
