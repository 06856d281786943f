"""A declarative computational-graph engine driven by YAML specs.

    graph = engine.load("graphs/softmax.yaml")   # validated; raises engine.SpecError
    ex = engine.Executor(graph)                  # compiles the plan once
    out = ex.forward({"x": x})                   # {output name: array}
    grads = ex.backward()                        # {tensor name: d loss / d tensor}

The public names are imported on first use (PEP 562), so that ``schemas.spec``,
which needs the op registry, can be imported before or after ``engine`` without
a circular import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataError": "engine.errors", "EngineError": "engine.errors",
    "NonFiniteError": "engine.errors", "Problem": "engine.errors", "SpecError": "engine.errors",
    "DataWarning": "engine.errors",
    "Executor": "engine.runtime.executor", "Graph": "engine.graph.model",
    "load": "engine.spec.loader", "grad": "engine.transform.grad",
    "loads": "engine.spec.loader", "REGISTRY": "engine.ops",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
