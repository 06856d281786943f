"""A declarative computational-graph engine driven by YAML specs.

    graph = engine.load("graphs/softmax.yaml")   # validated; raises engine.SpecError
    ex = engine.Executor(graph)                  # compiles the plan once
    out = ex.forward({"x": x})                   # {output name: array}
    grads = ex.backward()                        # {tensor name: d loss / d tensor}

The public API, imported eagerly: ``schemas`` imports nothing from the engine,
so either can be imported first.
"""

from __future__ import annotations

from engine.errors import (
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

__all__ = ["REGISTRY", "DataError", "DataWarning", "EngineError", "Executor", "Graph",
           "NonFiniteError", "Problem", "SpecError", "grad", "load", "loads"]
