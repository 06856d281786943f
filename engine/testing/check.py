"""``engine gradcheck``: a graph's first or second derivatives against central differences.

Order 1 compares the executor's backward with differences of the loss.  Order 2
compares Hessian-vector products, computed by differentiating the gradient graph
twice (``engine.transform.hvp``), with differences of the executor's gradients
along the same random direction.  Every comparison is element by element
(``engine.testing.gradcheck.compare``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.graph.model import Graph
from engine.runtime.backends import to_numpy
from engine.runtime.executor import Executor
from engine.testing.gradcheck import (
    ATOL,
    EPS,
    RTOL,
    Report,
    central_difference,
    compare,
    explicit_feeds,
    numeric_grad,
)
from engine.transform.grad import grad
from engine.transform.hvp import hvp_spec


def check_gradients(graph: Graph, feeds: Mapping[str, Any] | None = None,
                    wrt: Sequence[str] | None = None, *, order: int = 1, eps: float = EPS,
                    atol: float = ATOL, rtol: float = RTOL, seed: int | None = None,
                    backend: str | None = None, device: str | None = None,
                    chunk_rows: int | None = None) -> list[Report]:
    """One report per tensor of ``wrt`` (default: those the loss's gradient reaches).

    ``backend`` and ``device`` choose the array library the derivatives are computed on
    (``Executor``'s); the finite differences are taken in float64 all the same."""
    ex = Executor(graph, seed=seed, backend=backend, device=device, chunk_rows=chunk_rows)
    feeds = explicit_feeds(ex, feeds or {})
    if order == 1:
        return _first_order(graph, ex, feeds, wrt, eps, atol, rtol)
    return _second_order(graph, ex, feeds, wrt, eps, atol, rtol, seed)


def _like(ex: Executor, graph: Graph) -> Executor:
    """An executor of ``graph`` with ``ex``'s seed, on ``ex``'s backend and device."""
    return Executor(graph, seed=ex.seed, backend=ex.backend.name, device=ex.backend.device,
                    chunk_rows=ex.backend.chunk_rows)


def _first_order(graph: Graph, ex: Executor, feeds: dict[str, np.ndarray],
                 wrt: Sequence[str] | None, eps: float, atol: float, rtol: float
                 ) -> list[Report]:
    gradient = grad(graph, wrt)  # also validates wrt, with located messages
    names = list(gradient.gradients)
    ex.forward(feeds)
    analytic = {k: to_numpy(v) for k, v in ex.backward().items()}
    missing = [name for name in names if name not in analytic]
    if missing:  # inputs that do not require grad: the executor skips them, the graph does not
        out = _like(ex, gradient).forward(feeds)
        analytic.update({name: to_numpy(out[gradient.gradients[name]]) for name in missing})
    return [compare(name, analytic[name], numeric_grad(ex, feeds, name, eps), atol, rtol)
            for name in names]


def _second_order(graph: Graph, ex: Executor, feeds: dict[str, np.ndarray],
                  wrt: Sequence[str] | None, eps: float, atol: float, rtol: float,
                  seed: int | None) -> list[Report]:
    from engine.spec.loader import loads

    made = hvp_spec(graph, wrt)
    dot = loads(made.text, file=f"<hvp of {graph.file}>", base_dir=graph.base_dir)
    names = list(made.vectors)
    rng = np.random.default_rng(0 if seed is None else seed)
    values = {name: np.array(to_numpy(ex.parameters[name]) if name in ex.parameters
                             else feeds[name], dtype=np.float64) for name in names}
    vectors = {name: rng.normal(size=values[name].shape) for name in names}
    twice = grad(dot, names)
    second = _like(ex, twice)
    second.parameters.update({k: v for k, v in ex.parameters.items() if k in second.parameters})
    out = second.forward({**feeds, **{made.vectors[n]: vectors[n] for n in names}})
    hv = {name: to_numpy(out[twice.gradients[name]]) for name in names}
    sizes = [values[name].size for name in names]
    flat = np.concatenate([values[name].ravel() for name in names])
    direction = np.concatenate([vectors[name].ravel() for name in names])
    once = _like(ex, grad(graph, names))
    once_names = once.graph.gradients

    def gradients(point: np.ndarray) -> np.ndarray:
        """The first derivatives at ``point``: the executor's backward where it gives them
        (tensors that require grad), the gradient graph's otherwise."""
        trial = dict(feeds)
        for name, part in zip(names, np.split(point, np.cumsum(sizes)[:-1]), strict=True):
            array = part.reshape(values[name].shape)
            if name in ex.parameters:
                ex.parameters[name] = once.parameters[name] = array
            else:
                trial[name] = array
        ex.forward(trial)
        result = ex.backward()
        if any(name not in result for name in names):
            graph_out = once.forward(trial)
            result = {name: graph_out[once_names[name]] for name in names}
        return np.concatenate([np.asarray(to_numpy(result[n]), dtype=np.float64).ravel()
                               for n in names])

    try:
        numeric = central_difference(gradients, flat, eps, direction=direction)
    finally:
        for name in names:
            if name in ex.parameters:
                ex.parameters[name] = values[name]
    parts = np.split(numeric, np.cumsum(sizes)[:-1])
    return [compare(name, hv[name], part.reshape(values[name].shape), atol, rtol)
            for name, part in zip(names, parts, strict=True)]
