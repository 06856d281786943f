"""The backward pass as a graph: ``grad(graph, wrt)`` returns an ordinary graph of primitive ops.

The result computes the original outputs, then, last and in ``wrt`` order, the
gradient of the loss with respect to each tensor named ``d_<tensor>``.  It is
built as a spec (plain data: inputs, parameters, constants, nodes, outputs; no
loss), written as YAML and loaded by the normal loader, so it checks, draws, runs
and can be differentiated again like any spec.  Everything the executor's
backward does implicitly becomes a node: the seed 1 at the loss, an ``Add`` where
the gradients of a value used twice meet, a ``SumTo`` where a gradient comes in a
broadcast shape, and each op's derivative, traced from the same vjp rule the
executor runs (``engine.transform.symbolic``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from engine.errors import EngineError, UsageError, did_you_mean
from engine.graph.model import Graph, Value
from engine.transform.symbolic import SymbolicArray, TraceError, Tracer, trace_vjp

_WORD = re.compile(r"[^A-Za-z0-9_]+")


@dataclass(frozen=True)
class GradSpec:
    """What ``grad_spec`` makes: the spec as plain data, its YAML text, and the gradient names.

    ``gradients`` maps each tensor of ``wrt`` to the output that holds its gradient:
    ``d_<tensor>``, or ``d_<tensor>_2`` (and so on) when that name is taken.
    ``renamed`` maps values whose names are no spec names (``h1/linear`` from a
    function call) to the names they have in the written spec (``h1_linear``).
    """

    spec: dict[str, Any]
    text: str
    gradients: dict[str, str]
    renamed: dict[str, str]


def grad(graph: Graph, wrt: Sequence[str] | None = None, *, of: str | None = None) -> Graph:
    """The graph's outputs and the gradients of its loss (or of node ``of``) w.r.t. ``wrt``.

    ``wrt`` defaults to every input and parameter that requires grad and that the loss's
    gradient reaches.  The result's ``gradients`` attribute maps each tensor to the
    name of its gradient output (``d_x``).
    """
    from engine.spec.loader import loads

    made = grad_spec(graph, wrt, of=of)
    result = loads(made.text, file=f"<grad of {graph.file}>", base_dir=graph.base_dir)
    result.gradients = dict(made.gradients)
    return result


def reached(graph: Graph, of: str | None = None) -> set[str]:
    """The values from which a differentiable path leads to the loss (or to node ``of``):
    those whose gradient ``grad`` can give; any other's is zero."""
    return _GradBuilder(graph, of, None, "").reached


def grad_spec(graph: Graph, wrt: Sequence[str] | None = None, *, of: str | None = None,
              out_dir: Path | None = None, command: str = "") -> GradSpec:
    """The spec of ``grad(graph, wrt, of=of)``.  ``out_dir`` is where it will be written
    (init files are named relative to it); ``command`` goes into the header comment."""
    return _GradBuilder(graph, of, out_dir, command).build(wrt)


class _GradBuilder:
    def __init__(self, graph: Graph, of: str | None, out_dir: Path | None, command: str):
        self.graph = graph
        self.target = self._target(of)
        self.out_dir = out_dir
        self.command = command
        self.import_path_needed = False  # an init file is outside the written file's folder
        self.pinned: list[str] = []  # stochastic nodes written with training: false
        self.tracer = Tracer(graph.dims.copy())
        self.arrays = {name: self._array(value) for name, value in graph.values.items()}
        self.reached = self._reached()

    # -- what to differentiate -------------------------------------------------------------

    def _target(self, of: str | None) -> str:
        graph = self.graph
        if of is not None:
            if of not in graph.nodes:
                what = f"is {graph.values[of].a_kind}" if of in graph.values else "names nothing"
                raise UsageError(f"--of {of}: {what}; it must name a node of {graph.file}"
                                 f"{did_you_mean(of, graph.nodes)}")
            return of
        if graph.loss is None:
            raise UsageError(f"{graph.file}: the spec declares no loss; name the node to "
                             f"differentiate with --of NODE (its nodes: "
                             f"{', '.join(graph.nodes) or 'none'})")
        return graph.loss

    def _reached(self) -> set[str]:
        """Values from which a differentiable path leads to the target."""
        graph, reached = self.graph, {self.target}
        for name in reversed(graph.order):
            if name in reached:
                node = graph.nodes[name]
                reached.update(ref for i, ref in enumerate(node.inputs)
                               if node.op.is_differentiable(i))
        return reached

    def _wrt(self, wrt: Sequence[str] | None) -> list[str]:
        graph = self.graph
        if wrt is None:
            chosen = [name for name in graph.grad_tensors() if name in self.reached]
            if not chosen:
                raise UsageError(f"{graph.file}: the gradient of {self.target!r} reaches no "
                                 "input or parameter that requires grad; name one with --wrt")
            return chosen
        tensors = [n for n, v in graph.values.items() if v.kind in ("input", "parameter")]
        for name in wrt:
            value = graph.values.get(name)
            if value is None or value.kind not in ("input", "parameter"):
                what = "names nothing" if value is None else \
                    f"is {value.a_kind} ({graph.where(name)})"
                raise UsageError(f"--wrt {name}: {what}; gradients are taken with respect to "
                                 f"inputs and parameters{did_you_mean(name, tensors)}; "
                                 f"here: {', '.join(tensors) or 'none'}")
            if value.dtype not in ("float16", "float32", "float64"):
                raise UsageError(f"--wrt {name}: {value.kind} {name!r} ({graph.where(name)}) is "
                                 f"{value.dtype}; only floating-point tensors have gradients")
            if name not in self.reached:
                raise UsageError(f"--wrt {name}: the gradient of {self.target!r} does not reach "
                                 f"{value.kind} {name!r} ({graph.where(name)}): no path from it "
                                 "to the loss passes through differentiable inputs")
        if len(set(wrt)) != len(wrt):
            twice = sorted({n for n in wrt if list(wrt).count(n) > 1})
            raise UsageError(f"--wrt {', '.join(twice)}: named more than once")
        return list(wrt)

    def _array(self, value: Value) -> SymbolicArray:
        array = SymbolicArray(self.tracer, tuple(value.shape), value.dtype, label=value.name)
        if _is_inline(value):
            array.literal = value.literal.item()  # an int stays one (weak_dtype)
        return array

    # -- the backward walk -----------------------------------------------------------------

    def build(self, wrt: Sequence[str] | None) -> GradSpec:
        graph, tracer = self.graph, self.tracer
        wrt = self._wrt(wrt)
        active = set(wrt)  # values a gradient of wrt flows through
        for name in graph.order:
            node = graph.nodes[name]
            if any(ref in active and node.op.is_differentiable(i)
                   for i, ref in enumerate(node.inputs)):
                active.add(name)
        seed = self._seed()
        pending: dict[str, list[SymbolicArray]] = {self.target: [seed]}
        totals: dict[str, SymbolicArray] = {}
        for name in reversed(graph.order):
            parts = pending.pop(name, None)
            if parts is None or name not in active:
                continue
            tracer.hint = name
            g = totals[name] = self._sum(parts)
            self._differentiate(name, g, active, pending)
        for name in wrt:
            tracer.hint = name
            totals[name] = self._sum(pending[name])
        return self._write(wrt, totals, seed)

    def _seed(self) -> SymbolicArray:
        """d target / d target = 1: a constant, or ones of the target's shape."""
        target = self.arrays[self.target]
        self.tracer.hint = self.target
        if target.shape_ == ():
            return self.tracer.array_constant(1.0, target.dtype)
        return self.tracer.emit("BroadcastTo", [self.tracer.constant(1.0), target])

    def _sum(self, parts: list[SymbolicArray]) -> SymbolicArray:
        """Where a value feeds several nodes, its gradients meet in Add nodes."""
        total = parts[0]
        for part in parts[1:]:
            total = self.tracer.emit("Add", [total, part])
        return total

    def _differentiate(self, name: str, g: SymbolicArray, active: set[str],
                       pending: dict[str, list[SymbolicArray]]) -> None:
        graph, arrays = self.graph, self.arrays
        node = graph.nodes[name]
        needs = tuple(ref in active and ref in self.reached and node.op.is_differentiable(i)
                      for i, ref in enumerate(node.inputs))
        inputs = [arrays[ref] for ref in node.inputs]
        if node.op.stochastic and getattr(node.attrs, "training", None):
            raise EngineError(
                f"node {name!r} ({node.op.name}, {graph.where(name)}) has training: true: its "
                "random mask is drawn when it runs, so its derivative cannot be written as a "
                "graph; engine grad differentiates the evaluation pass (training: null or "
                "false), where it is the identity")
        try:
            parts = trace_vjp(self.tracer, node.op.vjp, node.attrs, g, arrays[name], inputs,
                              needs)
        except TraceError as exc:
            raise EngineError(
                f"node {name!r} ({node.op.name}, {graph.where(name)}): its derivative cannot be "
                f"written as a graph, so engine grad cannot differentiate through it (nor give "
                f"a second derivative of a graph that holds it): {exc}") from None
        for i, part in enumerate(parts):
            if not needs[i] or part is None:
                continue
            x = inputs[i]
            if part.literal is not None or tuple(part.shape_) != tuple(x.shape_):
                # the executor's implicit sum back over broadcast axes, as a node
                part = self.tracer.emit("SumTo" if part.literal is None else "BroadcastTo",
                                        [part, x])
            pending.setdefault(node.inputs[i], []).append(part)

    # -- the spec --------------------------------------------------------------------------

    def _write(self, wrt: list[str], totals: dict[str, SymbolicArray],
               seed: SymbolicArray) -> GradSpec:
        graph = self.graph
        names = UniqueNames()
        renamed = {}
        for name in graph.values:
            if not _is_inline(graph.values[name]):
                self.arrays[name].label = names.take(name)
                if self.arrays[name].label != name:
                    renamed[name] = self.arrays[name].label
        emitted = {id(a) for a in self.tracer.nodes}
        named: set[int] = set()
        gradients: dict[str, str] = {}
        for tensor in wrt:
            total = totals[tensor]
            if id(total) not in emitted or id(total) in named:
                # another gradient's name already (Add passes g on twice): name a copy
                self.tracer.hint = tensor
                total = self.tracer.emit("Identity", [total])
                emitted.add(id(total))
            total.label = gradients[tensor] = names.take(f"d_{tensor}")
            named.add(id(total))
        totals[self.target] = seed
        for name in reversed(graph.order):  # the gradients of intermediate values: d_raised
            total = totals.get(name)
            if total is not None and id(total) in emitted and id(total) not in named:
                total.label = names.take(f"d_{self.arrays[name].label}")
                named.add(id(total))
        counters: dict[str, int] = {}
        for array in self.tracer.nodes:
            if id(array) not in named and array.literal is None:
                hint = self.arrays[array.node.hint].label if array.node.hint in self.arrays \
                    else _WORD.sub("_", array.node.hint)
                counters[hint] = counters.get(hint, 0) + 1
                array.label = names.take(f"{hint}_grad{counters[hint]}")
        spec = self._spec(wrt, gradients)
        return GradSpec(spec, self._text(spec, gradients), gradients, renamed)

    def _spec(self, wrt: list[str], gradients: dict[str, str]) -> dict[str, Any]:
        graph, source = self.graph, self.graph.spec
        spec: dict[str, Any] = {"name": f"{source.name}_grad"}
        spec["description"] = (
            f"The gradients of {self.target!r} in {source.name} with respect to "
            f"{', '.join(wrt)}, as a graph (written by engine grad; outputs "
            f"{', '.join(gradients.values())}).")
        if source.seed is not None:
            spec["seed"] = source.seed
        if source.dims:
            spec["dims"] = dict(source.dims)
        sections: dict[str, dict[str, Any]] = {"inputs": {}, "parameters": {}, "constants": {}}
        for name, value in graph.values.items():
            if value.kind in ("input", "parameter"):
                sections[f"{value.kind}s"][self.arrays[name].label] = \
                    self._tensor(value, name in wrt)
            elif value.kind == "constant" and not _is_inline(value):
                sections["constants"][self.arrays[name].label] = _constant(value)
        for array in self.tracer.nodes:
            if array.node is not None and array.node.op == "Constant":
                sections["constants"][array.label] = array.node.extra
        nodes: dict[str, Any] = {}
        for name in graph.order:
            node = graph.nodes[name]
            entry: dict[str, Any] = {"op": node.op.name,
                                     "inputs": [self._ref(self.arrays[r]) for r in node.inputs]}
            entry.update(node.attrs.model_dump(include=set(node.op.attrs.model_fields),
                                               exclude_unset=True))
            if node.op.stochastic:  # the evaluation pass, whose derivative this graph is
                entry["training"] = False
                self.pinned.append(self.arrays[name].label)
            nodes[self.arrays[name].label] = entry
        for array in self.tracer.nodes:
            emitted = array.node
            assert emitted is not None
            if emitted.op == "Constant":
                continue
            nodes[array.label] = {"op": emitted.op,
                                  "inputs": [self._ref(x) for x in emitted.inputs],
                                  **emitted.attrs}
        spec.update({k: v for k, v in sections.items() if v})
        spec["nodes"] = nodes
        spec["outputs"] = [*[self.arrays[o].label for o in graph.outputs], *gradients.values()]
        return spec

    @staticmethod
    def _ref(array: SymbolicArray) -> str | float:
        return array.literal if array.literal is not None else array.label

    def _tensor(self, value: Value, in_wrt: bool) -> dict[str, Any]:
        assert value.decl is not None
        decl = value.decl.model_dump(exclude_none=True)
        init = decl.get("init")
        if init is not None:
            if not init.get("allow_nonfinite"):
                init.pop("allow_nonfinite", None)
            if "file" in init and self.out_dir is not None:
                moved = os.path.relpath(self.graph.base_dir / init["file"], self.out_dir)
                if ".." in Path(moved).parts:  # a spec may not name it so: keep the name
                    self.import_path_needed = True
                else:
                    init["file"] = moved
            for word in ("zeros", "ones", "one_hot"):
                if init == {word: True}:
                    decl["init"] = word
        if decl.get("dtype") == "float64":
            del decl["dtype"]
        if value.kind == "input" and (in_wrt or value.requires_grad):
            decl["requires_grad"] = True
        return decl

    # -- the text --------------------------------------------------------------------------

    def _text(self, spec: dict[str, Any], gradients: dict[str, str]) -> str:
        graph = self.graph
        return spec_text(spec, [
            *schema_comment(graph, self.out_dir),
            f"Written by engine grad{': ' + self.command if self.command else ''}",
            f"from {graph.file} (graph {graph.spec.name!r}).",
            f"Its outputs are the original outputs, then the gradients of {self.target!r}: "
            + ", ".join(f"{out} = d {self.target} / d {t}" for t, out in gradients.items()) + ".",
            "Functions are inlined, and the seed, the sums at fan-out and the reductions of "
            "broadcast gradients are nodes.",
            *([f"{', '.join(self.pinned)}: training: false, as differentiated (the evaluation "
               "pass; a random mask has no derivative as a graph)."] if self.pinned else []),
            *([f"Its init files are named as in {graph.file}: run it with --import-path "
               f"{graph.base_dir}."] if self.import_path_needed else []),
        ])


_SCHEMA = "yaml-language-server: $schema="


def schema_comment(graph: Graph, out_dir: Path | None) -> list[str]:
    """The editor's schema line of the spec's file, pointed at the same schema from
    ``out_dir`` (default: the spec's folder), or nothing."""
    try:
        with open(graph.file, encoding="utf-8") as handle:
            first = handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return []
    if not first.startswith(f"# {_SCHEMA}"):
        return []
    target = first.removeprefix(f"# {_SCHEMA}")
    if "://" not in target and not os.path.isabs(target):
        target = os.path.relpath(graph.base_dir / target, out_dir or graph.base_dir)
    return [_SCHEMA + target]


def spec_text(spec: dict[str, Any], header: Sequence[str]) -> str:
    """A spec as YAML, one line per tensor and node (as the example specs are written),
    under a header comment; a name YAML 1.1 reads as a boolean (``on``) is quoted."""
    body = []
    for key, value in spec.items():
        if isinstance(value, dict) and value:
            body.append(f"{key}:")
            body += [f"  {_key(name)}: {_flow(entry)}" for name, entry in value.items()]
        else:
            body.append(f"{key}: {_flow(value)}")
    return "\n".join([*(f"# {line}" for line in header), "", *body]) + "\n"


class UniqueNames:
    """Spec names, unique: ``h1/linear`` becomes ``h1_linear``, a taken ``d_x`` ``d_x_2``."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        base = _WORD.sub("_", wanted).strip("_") or "value"
        if base[0].isdigit():
            base = f"v_{base}"
        return first_free(base, self.used)


def first_free(base: str, used: set[str]) -> str:
    """``base``, or else ``base_2``, ``base_3``, ... : the first that ``used`` lacks, added to
    it.  The one numbering of fresh names: spec names here, ONNX names in the export."""
    name, index = base, 1
    while name in used:
        index += 1
        name = f"{base}_{index}"
    used.add(name)
    return name


def _is_inline(value: Value) -> bool:
    """An inline number of a node's inputs (``{op: Mul, inputs: [x, 2]}``)."""
    return value.kind == "constant" and ".inputs[" in value.name


def _constant(value: Value) -> Any:
    literal = np.asarray(value.literal)
    if value.weak and literal.ndim == 0:
        return literal.item()
    entry: dict[str, Any] = {"value": literal.tolist(), "dtype": value.dtype}
    if literal.dtype.kind == "f" and not np.isfinite(literal).all():
        entry["allow_nonfinite"] = True
    return entry


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESOLVER = yaml.resolver.Resolver()


def _key(name: str) -> str:
    """A mapping key that reads back as the same text: a name such as ``no``, ``on`` or
    ``null`` is quoted, since YAML reads it bare as a boolean or null (one call of the
    resolver, not a dump, per name: a spec may have 100,000)."""
    plain = _PLAIN_KEY.match(name) is not None and _RESOLVER.resolve(
        yaml.ScalarNode, name, (True, False)) == "tag:yaml.org,2002:str"
    return name if plain else _flow(name)


def _flow(value: Any) -> str:
    """One YAML line (flow style), as the example specs write nodes."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False)
    return text.removesuffix("\n...\n").strip()
