"""A declarative computational-graph engine driven by YAML specs.

    graph = engine.load("graphs/softmax.yaml")   # validated; raises engine.SpecError
    ex = engine.Executor(graph)                  # compiles the plan once
    out = ex.forward({"x": x})                   # {output name: array}
    grads = ex.backward()                        # {tensor name: d loss / d tensor}
"""

from engine.errors import DataError, EngineError, NonFiniteError, Problem, SpecError
from engine.executor import Executor
from engine.graph import Graph
from engine.loader import load, loads
from engine.ops import REGISTRY

__all__ = ["REGISTRY", "DataError", "EngineError", "Executor", "Graph", "NonFiniteError", "Problem",
           "SpecError", "load", "loads"]
