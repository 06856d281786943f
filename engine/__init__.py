"""A declarative computational-graph engine driven by YAML specs.

    graph = engine.load("graphs/softmax.yaml")   # validated; raises engine.SpecError
    ex = engine.Executor(graph)                  # compiles the plan once
    out = ex.forward({"x": x})                   # {output name: array}
    grads = ex.backward()                        # {tensor name: d loss / d tensor}

The public names are imported on first use (PEP 562), not when the package is:
``python -m engine`` and the ``engine`` script import ``engine`` before anything
else, and only in ``engine.cli.entry`` can Ctrl-C during the imports of NumPy and
the ops (the first second) end as an interrupt (exit 130) rather than a traceback.
``schemas`` imports nothing from the engine, so either can be imported first.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ArgumentError": "engine.errors", "DataError": "engine.errors",
    "DataWarning": "engine.errors", "EngineError": "engine.errors",
    "NonFiniteError": "engine.errors", "Problem": "engine.errors", "SpecError": "engine.errors",
    "Executor": "engine.runtime.executor", "Graph": "engine.graph.model",
    "REGISTRY": "engine.ops", "grad": "engine.transform.grad",
    "load": "engine.spec.loader", "loads": "engine.spec.loader",
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
