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


def _started_as_the_command() -> bool:
    """Whether this process is the ``engine`` command (``python -m engine`` or the installed
    script) rather than a program that imports the engine, judged from the interpreter's own
    command line: while a ``-m`` package is being imported, ``sys.argv[0]`` is ``-m``
    whichever module was named, and the script is ``engine.exe`` on Windows."""
    args = sys.orig_argv[1:]
    while args and args[0].startswith("-") and args[0] != "-":
        option = args.pop(0)
        if option == "--":
            break
        if option == "-c":
            return False
        if option.startswith("-m"):  # -m engine, or -mengine
            return (option[2:] or next(iter(args), "")) == "engine"
        if option in ("-W", "-X", "--check-hash-based-pycs"):
            del args[:1]  # the option's value
    return bool(args) and Path(args[0]).stem in ("engine", "engine-script")


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
    if _started_as_the_command():
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    raise

__all__ = ["REGISTRY", "ArgumentError", "DataError", "DataWarning", "EngineError", "Executor",
           "Graph", "NonFiniteError", "Problem", "SpecError", "grad", "load", "loads"]
