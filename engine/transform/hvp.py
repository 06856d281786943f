"""Hessian-vector products as graphs: the gradient graph, a dot product with ``v``, and a new loss.

``hvp_spec(graph)`` writes the recipe out: it takes ``engine.grad``'s spec, adds an
input ``v_<t>`` of each tensor's shape, ``hv = sum over t of Sum(Mul(d_t, v_t))`` and
``loss: hv``.  Differentiating that graph again with respect to the same tensors
gives ``H v`` (the gradient of ``<grad f, v>`` is ``H v`` because ``v`` is constant).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.graph.model import Graph
from engine.transform.grad import first_free, grad_spec, schema_comment, spec_text


@dataclass(frozen=True)
class HvpSpec:
    """The spec of ``<grad f, v>``; ``vectors`` maps each tensor to its input ``v_<t>``."""

    spec: dict[str, Any]
    text: str
    vectors: dict[str, str]
    gradients: dict[str, str]


def hvp_spec(graph: Graph, wrt: Sequence[str] | None = None, *, of: str | None = None,
             out_dir: Path | None = None, command: str = "") -> HvpSpec:
    """The gradient graph of ``graph`` with ``hv = <d_t, v_t>`` summed over ``wrt`` as its loss."""
    made = grad_spec(graph, wrt, of=of, out_dir=out_dir)
    spec = copy.deepcopy(made.spec)
    taken = {name for section in ("inputs", "parameters", "constants", "nodes")
             for name in spec.get(section, {})}

    inputs, nodes = spec.setdefault("inputs", {}), spec["nodes"]
    vectors, products = {}, []
    for tensor, gradient in made.gradients.items():
        decl = graph.values[tensor].decl
        assert decl is not None
        vector = vectors[tensor] = first_free(f"v_{tensor}", taken)
        entry: dict[str, Any] = {"shape": list(decl.shape), "init": {"normal": {"std": 1.0}}}
        if decl.dtype != "float64":
            entry["dtype"] = decl.dtype
        inputs[vector] = entry
        products.append(first_free(f"{gradient}_times_{vector}", taken))
        nodes[products[-1]] = {"op": "Mul", "inputs": [gradient, vector]}
    total = first_free("hv", taken)  # the loss: the last Sum, or the last Add of the Sums
    terms = [total] if len(products) == 1 else [first_free(f"{p}_sum", taken) for p in products]
    for term, product in zip(terms, products, strict=True):
        nodes[term] = {"op": "Sum", "inputs": [product]}
    partial = terms[0]
    for index, term in enumerate(terms[1:], 2):
        name = total if index == len(terms) else first_free(f"hv_partial{index}", taken)
        nodes[name] = {"op": "Add", "inputs": [partial, term]}
        partial = name
    spec["name"] = f"{graph.spec.name}_hvp"
    spec["description"] = (f"<grad, v> of {graph.spec.name}: differentiate it again with "
                           f"respect to {', '.join(made.gradients)} for the Hessian-vector "
                           "product H v.")
    spec["outputs"] = [*spec["outputs"], total]
    spec["loss"] = total
    text = spec_text(spec, [
        *schema_comment(graph, out_dir),
        f"Written by engine grad --hvp{': ' + command if command else ''}",
        f"from {graph.file} (graph {graph.spec.name!r}).",
        f"Its loss {total} = sum of <d_t, v_t> over "
        + ", ".join(f"t = {t}" for t in made.gradients) + "; engine grad on this file with the "
        "same --wrt gives the Hessian-vector products H v as its d_ outputs.",
    ])
    return HvpSpec(spec, text, vectors, made.gradients)
