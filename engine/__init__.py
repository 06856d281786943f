"""A declarative computational-graph engine driven by YAML specs.

    graph = engine.load("graphs/softmax.yaml")   # validated; raises engine.SpecError
    ex = engine.Executor(graph)                  # compiles the plan once
    out = ex.forward({"x": x})                   # {output name: array}
    grads = ex.backward()                        # {tensor name: d loss / d tensor}

The public API, imported eagerly: ``schemas`` imports nothing from the engine,
so either can be imported first.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from engine.errors import (
        ArgumentError,
        DataError,
        DataWarning,
        EngineError,
        NonFiniteError,
        Problem,
        SpecError,
    )
    from engine.graph.model import Graph
    from engine.ops import REGISTRY
    from engine.runtime.executor import Executor
    from engine.spec.loader import load, loads
    from engine.transform.grad import grad
except KeyboardInterrupt:  # Ctrl-C in the first second of `engine ...` (NumPy and the ops
    # are being imported): for the command an interrupt, exit 130, not a traceback
    if sys.argv[:1] == ["-m"] or Path(sys.argv[0]).name == "engine":
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    raise

__all__ = ["REGISTRY", "ArgumentError", "DataError", "DataWarning", "EngineError", "Executor",
           "Graph", "NonFiniteError", "Problem", "SpecError", "grad", "load", "loads"]
