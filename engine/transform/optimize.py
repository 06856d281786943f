"""``engine optimize``: engine grad's joint forward and backward graph, after the passes.

Fusion runs on the forward graph in memory (so the backward is the fused ops'
derivatives), engine grad writes the joint graph of the result as a spec, which is
loaded once, and the other passes rewrite that graph in memory.  The result is
written as a spec again, which ``engine run`` runs: its outputs are the original
outputs, then the gradients ``d_<tensor>``, as in ``engine grad``'s spec.
``Executor(graph)`` runs the same passes on the forward graph alone
(``engine.transform.passes.optimized``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.graph.model import Graph
from engine.transform.grad import GradSpec, grad_spec, schema_comment, spec_text
from engine.transform.passes import FORWARD_PASSES, PASSES, PassReport, run_passes
from engine.transform.passes.stage import Stage
from engine.transform.passes.written import written_nodes

_GRADIENT = re.compile(r"d_(?P<of>.+?)(_\d+)?|(?P<hint>.+)_grad\d+")


@dataclass(frozen=True)
class Optimized:
    """The optimized spec (plain data and text), its graph, and each pass's report."""

    stage: Stage
    reports: list[PassReport]
    text: str
    gradients: dict[str, str]

    @property
    def graph(self) -> Graph:
        return self.stage.graph


def optimize_spec(graph: Graph, passes: Sequence[str] = tuple(PASSES),
                  wrt: Sequence[str] | None = None, *, of: str | None = None,
                  out_dir: Path | None = None, command: str = "") -> Optimized:
    """engine grad's spec of ``graph`` after ``passes``; ``out_dir`` is where it will be
    written (init files are named relative to it)."""
    places = _places(graph)
    forward = [p for p in passes if p in FORWARD_PASSES]
    stage, reports = run_passes(Stage.of(graph, [of] if of is not None else [], places),
                                forward)
    fused = stage.graph
    made = grad_spec(fused, wrt, of=of)
    description = made.spec["description"].replace("written by engine grad",
                                                   "written by engine optimize")
    renamed = {**made.spec, "name": f"{graph.spec.name}_optimized", "description": description}
    stage = Stage.load(renamed, graph.base_dir, _origins(made, {
        made.renamed.get(name, name): place for name, place in places.items()}),
                       file=f"<engine grad {graph.file}>", import_paths=graph.import_roots)
    stage, joint = run_passes(stage, [p for p in passes if p not in FORWARD_PASSES])
    reports += joint
    placed = made if out_dir is None else grad_spec(fused, wrt, of=of, out_dir=out_dir)
    spec = _written(stage.graph, placed)
    target = of if of is not None else graph.loss
    header = [
        *schema_comment(graph, out_dir),
        f"Written by engine optimize{': ' + command if command else ''}",
        f"from {graph.file} (graph {graph.spec.name!r}): engine grad's forward and backward "
        f"graph after the passes {', '.join(passes)}.",
        f"Its outputs are the original outputs, then the gradients of {target!r}: "
        + ", ".join(f"{out} = d {target} / d {t}" for t, out in made.gradients.items()) + ".",
        *[line.removeprefix("# ") for line in placed.text.splitlines()
          if line.startswith("# Its init files are named as in")],
    ]
    return Optimized(stage, reports, spec_text(spec, header), dict(made.gradients))


def optimize(graph: Graph, passes: Sequence[str] = tuple(PASSES),
             wrt: Sequence[str] | None = None, *, of: str | None = None) -> Graph:
    """The optimized forward and backward graph of ``graph``; its ``gradients`` attribute
    maps each tensor to its gradient output, as ``engine.grad``'s does."""
    made = optimize_spec(graph, passes, wrt, of=of)
    result = made.graph
    result.gradients = dict(made.gradients)
    return result


def _written(graph: Graph, placed: GradSpec) -> dict[str, Any]:
    """The optimized graph as a spec, with the tensors as they are written beside ``out_dir``."""
    spec = {k: placed.spec[k] for k in ("name", "description", "seed", "dims", "inputs",
                                        "parameters") if k in placed.spec}
    spec["name"] = f"{placed.spec['name'].removesuffix('_grad')}_optimized"
    spec["description"] = spec["description"].replace("written by engine grad",
                                                      "written by engine optimize")
    constants, nodes = written_nodes(graph)
    if constants:
        spec["constants"] = constants
    spec["nodes"] = nodes
    spec["outputs"] = list(graph.outputs)
    return spec


def _places(graph: Graph) -> dict[str, str]:
    """Each value's name and the line of the user's file that defines it."""
    places = {}
    for name, value in graph.values.items():
        file, line, _ = value.loc.sort_key()
        places[name] = f"{file}:{line}"
    return places


def _origins(made: GradSpec, places: dict[str, str]) -> dict[str, str]:
    """Each spec name's place in the user's files: a value of the forward graph, its
    definition; a gradient node, the definition of the value whose derivative made it."""
    origins = dict(places)
    for label in [*made.spec["nodes"], *made.spec.get("constants", {})]:
        if label in origins:
            continue
        found = _GRADIENT.fullmatch(label)
        of = found and (found["of"] or found["hint"])
        if of in places:
            origins[label] = f"{places[of]}, in the derivative of {of}"
    return origins
