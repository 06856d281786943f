"""A loaded graph as an ONNX model (``engine export``).

- Inputs become graph inputs; a named size (``batch``) becomes a symbolic dimension.
- Parameters become initializers holding their init values (drawn as the executor
  draws them, from the spec's seed) or the values of a checkpoint; constants, inline
  numbers included, become initializers too.
- The outputs and the loss become graph outputs, with their dtypes and shapes.
- Function calls are already inlined by the loader: the model holds primitive ops under
  the hierarchical names (``probs/summed``), and no ONNX local functions.
- With gradients, the exported graph is ``engine grad``'s: the same outputs, then
  ``d_<tensor>`` for each tensor that gets a gradient, as ordinary nodes.

Each op is lowered by ``engine.onnx.lowering``; one that cannot be is a located error
naming the op and the node, and every such node is reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from engine.errors import EngineError, SpecError, UsageError
from engine.graph.model import Graph
from engine.graph.shapes import Shape
from engine.onnx.common import MIN_OPSET, ONNX_DTYPES, default_opset, require
from engine.onnx.emitter import Emitter, Operand
from engine.onnx.lowering import Step, Unsupported, lower

PRODUCER = "yaml-graph-engine"


@dataclass(frozen=True)
class Exported:
    """What ``export`` made: the model, and which output holds what."""

    model: Any  # onnx.ModelProto
    opset: int
    outputs: list[str]
    gradients: dict[str, str] = field(default_factory=dict)  # tensor -> d_<tensor> output


def export(graph: Graph, *, opset: int | None = None,
           params: Mapping[str, np.ndarray] | None = None,
           scaling: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
           with_gradients: bool = False,
           wrt: Sequence[str] | None = None, of: str | None = None,
           check: bool = True) -> Exported:
    """``graph`` as an ONNX model at ``opset`` (default: the newest onnxruntime runs).

    ``params`` replaces the parameters' init values (a checkpoint's, already fitted to
    the graph); ``scaling`` maps inputs to the (mean, std) they were standardised with in
    training, which the model then applies itself, as ``engine run --params`` does.
    ``with_gradients`` also computes the gradients of the loss with respect
    to ``wrt`` (default: every input and parameter that requires grad and that the loss
    reaches), as ``engine grad`` writes them; ``of`` names a node to differentiate instead of
    the loss (the sum of its elements).  ``check`` runs onnx's full checker on the
    result.
    """
    onnx = require("export")
    opset = choose_opset(onnx, opset)
    values = _parameters(graph, params)
    scaling = dict(scaling or {})
    outputs = [*graph.outputs, *([graph.loss] if graph.loss else [])]
    model, outputs = _translate(onnx, graph, opset, values, scaling, outputs)  # errors: the spec
    gradients: dict[str, str] = {}
    if with_gradients:
        from engine.spec.loader import loads
        from engine.transform.grad import grad_spec

        made = grad_spec(graph, wrt, of=of)
        backward = loads(made.text, file=f"<engine grad of {graph.file}>",
                         base_dir=graph.base_dir, import_paths=graph.import_roots)
        renamed = {made.renamed.get(name, name): value for name, value in values.items()}
        loss = [made.renamed.get(graph.loss, graph.loss)] if graph.loss else []
        kept = backward.outputs[:len(backward.outputs) - len(made.gradients)]
        outputs = [*kept, *loss, *made.gradients.values()]  # outputs, loss, then d_<tensor>
        model, outputs = _translate(onnx, backward, opset, renamed, scaling, outputs)
        gradients = dict(made.gradients)
    if check:
        _check(onnx, model)
    return Exported(model, opset, outputs, gradients)


def choose_opset(onnx: ModuleType, opset: int | None) -> int:
    """The opset asked for, if the exporter writes it and onnx knows it; else a UsageError."""
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return default_opset(onnx)
    if not MIN_OPSET <= opset <= newest:
        raise UsageError(f"--opset {opset}: engine export writes opsets {MIN_OPSET} to {newest} "
                         f"(the newest that onnx {onnx.__version__} knows); default "
                         f"{default_opset(onnx)}")
    return opset


def _parameters(graph: Graph, params: Mapping[str, np.ndarray] | None
                ) -> dict[str, np.ndarray]:
    """The parameters' values: ``params``, or the init values the executor draws."""
    if params is not None:
        return {name: np.asarray(value) for name, value in params.items()}
    if not any(v.kind == "parameter" for v in graph.values.values()):
        return {}
    from engine.runtime.executor import Executor

    return {name: np.asarray(value) for name, value in Executor(graph).parameters.items()}


def _translate(onnx: ModuleType, graph: Graph, opset: int, params: Mapping[str, np.ndarray],
               scaling: Mapping[str, tuple[np.ndarray, np.ndarray]], outputs: Sequence[str]
               ) -> tuple[Any, list[str]]:
    helper = onnx.helper
    emitter = Emitter(onnx, opset, graph.values)
    inputs = []
    alias: dict[str, str] = {}  # a standardised input -> the value its readers read
    for name, value in graph.values.items():
        if value.kind == "input":
            inputs.append(_value_info(helper, name, value.dtype, graph.dims.shape(value.shape)))
            if name in scaling:
                alias[name] = _standardise(emitter, name, value.dtype, *scaling[name])
        elif value.kind == "parameter":
            emitter.initializer(name, np.asarray(params[name], dtype=value.dtype))
        elif value.kind == "constant":
            emitter.initializer(name, np.asarray(value.literal, dtype=value.dtype))
    problems = []
    for name in graph.order:
        node = graph.nodes[name]
        step = Step(node.op, node.attrs,
                    tuple(_operand(graph, ref, alias) for ref in node.inputs),
                    _operand(graph, name, alias))
        try:
            lower(emitter, step, graph.dims)
        except Unsupported as exc:
            problems.append(node.loc.problem(
                f"node {name!r} ({node.op.name}) cannot be exported to ONNX: {exc}"))
    if problems:
        raise SpecError(problems)
    outputs = list(dict.fromkeys(outputs))  # once each, where the loss is an output too
    infos = [_value_info(helper, name, graph.values[name].dtype,
                         graph.dims.shape(graph.values[name].shape)) for name in outputs]
    body = helper.make_graph(emitter.nodes, graph.spec.name, inputs, infos,
                             initializer=emitter.initializers,
                             doc_string=graph.spec.description or "")
    imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(body, opset_imports=imports, producer_name=PRODUCER,
                              ir_version=helper.find_min_ir_version_for(imports))
    return model, outputs


def _operand(graph: Graph, name: str, alias: Mapping[str, str]) -> Operand:
    value = graph.values[name]
    return Operand(alias.get(name, name), value.dtype, graph.dims.shape(value.shape))


def _standardise(emitter: Emitter, name: str, dtype: str, mean: np.ndarray, std: np.ndarray
                 ) -> str:
    """(input - mean) / std as nodes; the name of the result, which the graph reads."""
    centred = emitter.node("Sub", [name, emitter.constant(mean, dtype, f"{name}_mean")],
                           f"{name}_centred")
    return emitter.node("Div", [centred, emitter.constant(std, dtype, f"{name}_std")],
                        f"{name}_standardised")


def _value_info(helper: Any, name: str, dtype: str, shape: Shape) -> Any:
    return helper.make_tensor_value_info(name, ONNX_DTYPES[dtype], list(shape))


def _check(onnx: ModuleType, model: Any) -> None:
    """onnx's own checker with shape inference (``full_check``); a failure is the
    exporter's bug, reported as such rather than as a traceback."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise EngineError(f"the exported model fails onnx's checker, which is a bug of engine "
                          f"export (please report it with the spec): {exc}") from None
