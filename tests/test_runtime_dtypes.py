"""The dtype ``engine check`` infers for every value is the dtype that runs, for every graph
in graphs/: as written, and with every float tensor declared float32.  A float32 spec stays
float32 end to end: no value of it is float64 (a bare number, or a node of bare numbers only
such as attention's Sqrt($head_dim), takes the dtype of what it meets, as a Python scalar does
in NumPy 2 and a weakly typed value in JAX, instead of widening its users to float64)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GRAPHS

import engine
from engine.ops.base import FLOAT_DTYPES

EXAMPLES = sorted(GRAPHS.glob("*.yaml"))


def declared(path: Path, dtype: str | None) -> engine.Graph:
    """The spec, with every float64 tensor and constant declared ``dtype`` (None: as written)."""
    if dtype is None:
        return engine.load(path)
    spec = yaml.safe_load(path.read_text())
    for section in ("inputs", "parameters", "constants"):
        for decl in (spec.get(section) or {}).values():
            if isinstance(decl, dict) and decl.get("dtype", "float64") == "float64":
                decl["dtype"] = dtype
    return engine.loads(yaml.safe_dump(spec), file=f"{path.stem}_{dtype}.yaml",
                        base_dir=path.parent)


def _run(graph: engine.Graph, optimize: bool) -> engine.Executor:
    ex = engine.Executor(graph, optimize=optimize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", engine.DataWarning)  # random inits: meant
        ex.forward()
    return ex


@pytest.mark.parametrize("dtype", [None, "float32"], ids=["as written", "float32"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_value_runs_in_the_dtype_check_infers(path: Path, dtype: str | None) -> None:
    graph = declared(path, dtype)
    inferred = {name: value.dtype for name, value in graph.values.items()}
    if dtype is not None:
        wider = {n: d for n, d in inferred.items() if d in FLOAT_DTYPES and d != dtype}
        assert not wider, f"a {dtype} spec infers other float dtypes: {wider}"
    plain = _run(graph, optimize=False)  # keeps every value
    ran = {name: str(np.asarray(plain.value(name)).dtype) for name in graph.values}
    assert ran == inferred
    grads = plain.backward() if graph.loss is not None else {}
    assert {t: str(g.dtype) for t, g in grads.items()} == {t: inferred[t] for t in grads}
    fast = _run(graph, optimize=True)  # the default path: what it keeps
    for name in [*graph.outputs, *([graph.loss] if graph.loss else [])]:
        assert str(np.asarray(fast.value(name)).dtype) == inferred[name], name
    if graph.loss is not None:
        assert {t: str(g.dtype) for t, g in fast.backward().items()} == \
            {t: inferred[t] for t in grads}
