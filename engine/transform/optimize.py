"""``engine optimize``: engine grad's joint forward and backward graph, after the passes.

The gradient graph is built as a spec (``engine.transform.grad``), the passes of
``engine.transform.passes`` rewrite it, and the result is written as a spec again,
which ``engine run`` runs: its outputs are the original outputs, then the
gradients ``d_<tensor>``, as in ``engine grad``'s spec.  This does not change how
``Executor(graph)`` runs a graph; it is a separate, inspectable step.
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
    made = grad_spec(graph, wrt, of=of)
    places = _places(graph, made)
    forward = [p for p in passes if p in FORWARD_PASSES]
    reports: list[PassReport] = []
    if forward:
        stage = Stage.load(_forward_spec(graph, made, of), graph.base_dir, places,
                           file=f"<forward of {graph.file}>", import_paths=graph.import_roots)
        stage, reports = run_passes(stage, forward)
        made = grad_spec(stage.graph, list(made.gradients), of=_label(graph, made, of))
        places = stage.origins
    description = made.spec["description"].replace("written by engine grad",
                                                   "written by engine optimize")
    renamed = {**made.spec, "name": f"{graph.spec.name}_optimized", "description": description}
    stage = Stage.load(renamed, graph.base_dir, _origins(made, places),
                       file=f"<engine grad {graph.file}>", import_paths=graph.import_roots)
    stage, joint = run_passes(stage, [p for p in passes if p not in FORWARD_PASSES])
    reports += joint
    placed = made if out_dir is None else grad_spec(graph, wrt, of=of, out_dir=out_dir)
    spec = _written(stage.spec, placed)
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


def _label(graph: Graph, made: GradSpec, name: str | None) -> str:
    """The spec name of the graph's loss (or of node ``name``)."""
    target = graph.loss if name is None else name
    assert target is not None  # grad_spec has refused a graph without one
    return made.renamed.get(target, target)


def _forward_spec(graph: Graph, made: GradSpec, of: str | None) -> dict[str, Any]:
    """The forward graph as plain data: engine grad's spec without the derivative's nodes,
    its outputs the graph's outputs and the node differentiated (the loss)."""
    forward = {made.renamed.get(n, n) for n in graph.order}
    spec = {k: v for k, v in made.spec.items() if k != "outputs"}
    spec["name"] = graph.spec.name
    spec["nodes"] = {n: e for n, e in made.spec["nodes"].items() if n in forward}
    outputs = made.spec["outputs"][:len(graph.outputs)]
    target = _label(graph, made, of)
    spec["outputs"] = outputs if target in outputs else [*outputs, target]
    return spec


def optimize(graph: Graph, passes: Sequence[str] = tuple(PASSES),
             wrt: Sequence[str] | None = None, *, of: str | None = None) -> Graph:
    """The optimized forward and backward graph of ``graph``; its ``gradients`` attribute
    maps each tensor to its gradient output, as ``engine.grad``'s does."""
    made = optimize_spec(graph, passes, wrt, of=of)
    result = made.graph
    result.gradients = dict(made.gradients)
    return result


def _written(spec: dict[str, Any], placed: GradSpec) -> dict[str, Any]:
    """The optimized spec with the tensors as they are written beside ``out_dir``."""
    written = dict(spec)
    for section in ("inputs", "parameters"):
        if section in placed.spec:
            written[section] = placed.spec[section]
    order = ["name", "description", "seed", "dims", "inputs", "parameters", "constants",
             "nodes", "outputs"]
    return {k: written[k] for k in order if k in written}


def _places(graph: Graph, made: GradSpec) -> dict[str, str]:
    """Each value's spec name and the line of the user's file that defines it."""
    places = {}
    for name, value in graph.values.items():
        file, line, _ = value.loc.sort_key()
        places[made.renamed.get(name, name)] = f"{file}:{line}"
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
