"""Function calls inlined into primitive nodes, before the graph is built.

A function is a small body of primitive ops (as ONNX functions are), called
like an op.  Expanding every call here, once, means the graph, the executor,
gradients and every tool downstream only ever see primitive ops.  A call's
nodes get hierarchical names: the call ``probs`` of ``softmax`` yields
``probs/raised``, ``probs/summed``... and its output takes the call's own name
``probs`` (or ``probs.out_name`` for each of several outputs).  User names
cannot contain ``/`` or ``.``, so an expansion never collides with them.

Problems that do not depend on a call (an unknown op, a name that names
nothing, recursion) are found once per function; attribute values are checked
per call, since they come from the call, and such errors point at the body
node in the function's own file and name the call site.  Expansion uses a
worklist, not recursion, and stops at ``MAX_NODES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from engine.cycles import cycle_path, find_cycles
from engine.errors import Problem, Problems, did_you_mean
from engine.ops import REGISTRY
from engine.spec.imports import Module
from engine.spec.models import NODE_MODELS
from engine.spec.source import Location, PathKey
from engine.spec.validation import located_problems
from schemas.spec import CallNode, Function

#: Upper bound on the nodes all calls expand to (calls nested in calls multiply).
MAX_NODES = 1_000_000

_ATTR_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(eq=False, slots=True)
class FlatNode:
    """One primitive node after expansion, with its inputs resolved to value names.

    Not frozen (nothing changes one after expansion): a frozen dataclass sets each field
    through ``object.__setattr__``, three times the cost, and a spec makes one per node.
    """

    name: str
    top: str  # the spec's own node it comes from: itself, or the call that inlined it
    node: BaseModel  # the op's validated node model, which holds the op's attributes
    inputs: tuple[str | int | float, ...]  # value names, or numbers (inline constants)
    loc: Location
    call: str  # the call that inlined it ('' for the spec's own nodes), as in probs/raised


@dataclass(frozen=True, eq=False)
class _Callee:
    module: Module
    name: str
    function: Function
    op: str  # how the caller wrote it: softmax, or nn.softmax


@dataclass(eq=False)
class _Body:
    """The nodes of one function, or the spec's own nodes, and what they may read."""

    module: Module
    function: str | None  # None for the spec's own nodes
    inputs: tuple[str, ...]  # the function's inputs, or the spec's tensors and constants
    nodes: dict[str, BaseModel]
    callees: dict[str, _Callee]  # node name -> the function it calls, for call nodes

    def __post_init__(self) -> None:
        #: ``inputs`` as a set: a spec may declare thousands of tensors, each read many times
        self.input_set = frozenset(self.inputs)

    def path(self, *more: str | int) -> PathKey:
        return (("functions", self.function) if self.function else ()) + tuple(more)

    def at(self, *more: str | int) -> Location:
        return Location(self.module.source, self.path(*more))


@dataclass(eq=False)
class _Instance:
    """One expansion of a body: where its names go and what its inputs are bound to."""

    body: _Body
    prefix: str  # global name prefix: '' for the spec's own nodes, else the call's name
    names: dict[str, str]  # output -> global name chosen by the caller
    bindings: dict[str, str | int | float]  # input -> global value name or number
    attrs: dict[str, Any]
    calls: str  # the call chain, for messages
    top: str | None  # the spec's node being expanded; None while expanding the spec itself

    def name(self, local: str) -> str:
        return self.names.get(local) or (f"{self.prefix}/{local}" if self.prefix else local)


class _BadRef(Exception):
    """A reference that resolves to nothing; the message says what to write instead."""


def expand(modules: list[Module]) -> tuple[list[FlatNode], dict[str, str]]:
    """Every node of the spec (``modules[0]``) as primitive nodes; raises SpecError.

    Also returns each call, by the prefix its nodes share (``probs``, ``h1/linear``),
    with the function it calls as written (``nn.softmax``): pictures group them.
    """
    plain = _without_calls(modules[0]) if len(modules) == 1 else None
    if plain is not None:
        return plain, {}
    expander = _Expander(modules)
    return expander.run(), expander.called


def _without_calls(module: Module) -> list[FlatNode] | None:
    """The spec's own nodes as they are, when nothing can be expanded: the spec defines no
    function (and imports none, checked by the caller), every node's op is an op, and every
    input names a tensor, a constant or a node.  Then each node is its own flat node, as
    ``_Expander`` would make it, without its per-call machinery (a third of a second at
    100,000 nodes).  None whenever anything is off, so that ``_Expander`` finds and words
    every problem.
    """
    spec = module.spec
    if spec.functions or len(spec.nodes) > MAX_NODES:  # the latter an error _Expander words
        return None
    known = {*spec.inputs, *spec.parameters, *spec.constants, *spec.nodes}
    source = module.source
    flat = []
    for name, node in spec.nodes.items():
        if isinstance(node, CallNode):  # an op that is not an op: a call of nothing
            return None
        inputs = tuple(node.inputs)  # type: ignore[attr-defined]
        for ref in inputs:
            # names never hold '.' or '$', so a call's output or an attribute is never known
            if ref.__class__ is str and ref not in known:
                return None
        flat.append(FlatNode(name, name, node, inputs, Location(source, ("nodes", name)), ""))
    return flat


class _Expander:
    def __init__(self, modules: list[Module]):
        self.modules = modules
        self.problems = Problems()
        self.bodies: dict[tuple[int, str], _Body] = {}
        self.calls = nx.DiGraph()  # (module id, function) -> (module id, function)
        self.call_sites: dict[tuple[Any, Any], Location] = {}
        self.called: dict[str, str] = {}  # call prefix -> function, for the spec's calls

    def run(self) -> list[FlatNode]:
        root = self.modules[0]
        spec = root.spec
        tensors = (*spec.inputs, *spec.parameters, *spec.constants)
        top = _Body(root, None, tensors, dict(spec.nodes), {})
        for module in self.modules:
            for name, function in module.spec.functions.items():
                self.bodies[(id(module), name)] = _Body(module, name, tuple(function.inputs),
                                                        dict(function.nodes), {})
        for body in (top, *self.bodies.values()):
            self.check(body)
        self.check_recursion()
        self.problems.raise_if_any()
        flat, done = self.instantiate(_Instance(top, "", {}, {t: t for t in tensors}, {}, "",
                                                None), self.called)
        self.problems.raise_if_any()
        for key, body in self.bodies.items():  # the uncalled ones, with their default attrs
            if key not in done:
                function = body.module.spec.functions[str(body.function)]
                note = (f"in function {body.function!r}, checked with its default attributes "
                        "since no node calls it")
                done.add(key)
                done |= self.instantiate(_Instance(body, f"{body.function}()", {}, {
                    x: x for x in body.inputs}, dict(function.attrs), note, None), {})[1]
        self.problems.raise_if_any()
        return flat

    # -- checks that do not depend on a call ----------------------------------------------

    def check(self, body: _Body) -> None:
        module = body.module
        function = module.spec.functions.get(body.function or "")
        for name, node in body.nodes.items():
            op = node.op  # type: ignore[attr-defined]
            if op not in REGISTRY:
                callee = self.callee(module, op)
                if callee is None:
                    self.problems.append(body.at("nodes", name).problem(
                        self.unknown_op(module, op)))
                    continue
                body.callees[name] = callee
                self.check_call(body, name, node, callee)
            if function is not None:
                for key, value in (node.model_extra or {}).items():
                    for ref in _substitute(value, function.attrs)[1]:
                        self.problems.append(body.at("nodes", name, key).problem(
                            f"${ref} names no attribute of function {body.function!r}"
                            f"{did_you_mean(ref, function.attrs)}; declare it under attrs "
                            f"(attrs: {', '.join(function.attrs) or 'none'})"))
        for name, node in body.nodes.items():
            for index, ref in enumerate(node.inputs):  # type: ignore[attr-defined]
                match = _attr_ref(ref)
                if match:
                    self.check_attr_input(body, function, name, index, match[1])
                elif isinstance(ref, str):
                    try:
                        _resolve(body, ref)
                    except _BadRef as exc:
                        self.problems.append(body.at("nodes", name, "inputs", index).problem(
                            f"node {name!r} ({node.op}){_of(body)}: input {ref!r} {exc}"))  # type: ignore[attr-defined]
        if function is not None:
            self.check_signature(body, function)

    def check_attr_input(self, body: _Body, function: Function | None, name: str, index: int,
                         attr: str) -> None:
        """``$attr`` as an input: only in a function body, and only naming its attributes."""
        where = body.at("nodes", name, "inputs", index)
        if function is None:
            self.problems.append(where.problem(
                f"node {name!r}: input '${attr}' refers to a function attribute, but this node "
                "is not in a function; write the number itself, or declare a constant"))
        elif attr not in function.attrs:
            self.problems.append(where.problem(
                f"${attr} names no attribute of function {body.function!r}"
                f"{did_you_mean(attr, function.attrs)}; declare it under attrs "
                f"(attrs: {', '.join(function.attrs) or 'none'})"))

    def check_signature(self, body: _Body, function: Function) -> None:
        name = str(body.function)  # lower_case (schemas.spec): never the name of an op
        for index, x in enumerate(function.inputs):
            if x in function.inputs[:index]:
                self.problems.append(body.at("inputs", index).problem(
                    f"input {x!r} of function {name!r} is listed twice"))
        for attr in function.attrs:
            if attr in CallNode.model_fields:
                self.problems.append(body.at("attrs", attr).problem(
                    f"attribute {attr!r} of function {name!r} has the name of a key every "
                    f"node has ({', '.join(CallNode.model_fields)}), so no call could set it; "
                    "rename it"))
        for node in body.nodes:
            if node in function.inputs:
                self.problems.append(body.at("nodes", node).problem(
                    f"{node!r} is both an input and a node of function {name!r}; rename one"))
        seen: set[str] = set()
        for index, out in enumerate(function.outputs):
            where = body.at("outputs", index)
            if out in seen:
                self.problems.append(where.problem(f"output {out!r} is listed twice"))
            seen.add(out)
            if out in function.inputs:
                self.problems.append(where.problem(
                    f"output {out!r} is an input of function {name!r}; an output must be "
                    "one of its nodes"))
            elif out not in body.nodes:
                self.problems.append(where.problem(
                    f"output {out!r} names no node of function {name!r}"
                    f"{did_you_mean(out, body.nodes)}"))
            elif out in body.callees and len(body.callees[out].function.outputs) > 1:
                callee = body.callees[out]
                self.problems.append(where.problem(
                    f"output {out!r} is a call of {callee.op!r}, which has several outputs; "
                    "an output must be one value: add a node that uses the one you want"))

    def check_call(self, body: _Body, name: str, node: BaseModel, callee: _Callee) -> None:
        function = callee.function
        inputs = node.inputs  # type: ignore[attr-defined]
        if len(inputs) != len(function.inputs):
            self.problems.append(body.at("nodes", name, "inputs").problem(
                f"node {name!r}{_of(body)} calls {callee.op!r}, which takes "
                f"{len(function.inputs)} inputs ({', '.join(function.inputs)}), found "
                f"{len(inputs)}"))
        for key in node.model_extra or {}:
            if key not in function.attrs:
                self.problems.append(body.at("nodes", name, key).problem(
                    f"unknown attribute {key!r} for function {callee.op!r}"
                    f"{did_you_mean(key, function.attrs)}; its attributes: "
                    f"{', '.join(function.attrs) or 'none'}"))
        if body.function is not None:
            edge = ((id(body.module), body.function), (id(callee.module), callee.name))
            self.calls.add_edge(*edge)
            self.call_sites.setdefault(edge, body.at("nodes", name))

    def callee(self, module: Module, op: str) -> _Callee | None:
        alias, dot, name = op.rpartition(".")
        target = module.imports.get(alias) if dot else module
        if target is None or name not in target.spec.functions:
            return None
        return _Callee(target, name, target.spec.functions[name], op)

    def unknown_op(self, module: Module, op: str) -> str:
        functions = [*module.spec.functions, *(f"{alias}.{name}" for alias, imported in
                                               module.imports.items()
                                               for name in imported.spec.functions)]
        message = (f"unknown op {op!r}{did_you_mean(op, [*REGISTRY, *functions])}; "
                   f"known ops: {', '.join(sorted(REGISTRY))}")
        alias, dot, _ = op.rpartition(".")
        if dot and alias not in module.imports:
            message += f"; {alias!r} is not an import of this file"
        return message + (f"; functions: {', '.join(functions)}" if functions else "")

    def check_recursion(self) -> None:
        sites = self.call_sites
        for cycle in find_cycles(self.calls, lambda u, v: sites[(u, v)].sort_key()):
            path = cycle_path([self.label(u) for u in cycle])
            self.problems.append(sites[(cycle[0], cycle[1 % len(cycle)])].problem(
                f"recursion: {path}; a function cannot call itself, directly or through "
                "other functions (expansion would never end)"))

    def label(self, key: tuple[int, str]) -> str:
        body = self.bodies[key]
        root = body.module is self.modules[0]
        return str(body.function) if root else f"{body.function} ({body.module.file})"

    # -- expansion --------------------------------------------------------------------------

    def instantiate(self, first: _Instance, called: dict[str, str]
                    ) -> tuple[list[FlatNode], set[tuple[int, str]]]:
        """Expand one instance and every call in it; returns the flat nodes and the functions.

        A stack of (instance, its remaining nodes) walks the calls depth first without
        recursion, so each call's nodes come in the order they were written.
        """
        flat: list[FlatNode] = []
        done: set[tuple[int, str]] = set()
        stack = [(first, iter(first.body.nodes.items()))]
        while stack:
            inst, remaining = stack[-1]
            entry = next(remaining, None)
            if entry is None:
                stack.pop()
                continue
            name, node = entry
            body = inst.body
            loc = Location(body.module.source, body.path("nodes", name), inst.calls)
            inputs = tuple(self.bind_input(inst, ref, loc, index)
                           for index, ref in enumerate(node.inputs))  # type: ignore[attr-defined]
            top = inst.top or name
            callee = body.callees.get(name)
            if callee is not None:
                child = self.call(inst, name, node, callee, inputs, loc, top)
                done.add((id(callee.module), callee.name))
                called[child.prefix] = callee.op
                stack.append((child, iter(child.body.nodes.items())))
                continue
            model = self.primitive(inst, node, loc)
            if model is not None:
                flat.append(FlatNode(inst.name(name), top, model, inputs, loc, inst.prefix))
            if len(flat) > MAX_NODES:
                self.problems.append(first.body.at().problem(
                    f"function calls expand to more than {MAX_NODES:,} nodes; refusing to "
                    "build the graph"))
                break
        return flat, done

    def bind_input(self, inst: _Instance, ref: str | int | float, loc: Location,
                   index: int) -> str | int | float:
        """The global value name (or number) an input refers to; ``$attr`` takes the value of
        the instance's attribute, which must be a number."""
        if not isinstance(ref, str):
            return ref  # an inline constant
        match = _attr_ref(ref)
        if match is None:
            return _global(inst, ref)
        value = inst.attrs[match[1]]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problems.append(loc.at("inputs", index).problem(
                f"input '${match[1]}' is {value!r}, but an input given by an attribute must "
                "be a number"))
            return 0.0
        return value

    def call(self, inst: _Instance, name: str, node: BaseModel, callee: _Callee,
             inputs: tuple[str | int | float, ...], loc: Location, top: str) -> _Instance:
        function = callee.function
        given, _ = _substitute(dict(node.model_extra or {}), inst.attrs)
        prefix = f"{inst.prefix}/{name}" if inst.prefix else name
        if len(function.outputs) == 1:
            names = {function.outputs[0]: inst.name(name)}
        else:
            names = {out: inst.name(f"{name}.{out}") for out in function.outputs}
        calls = f"in {callee.op!r} called by node {prefix!r} at {loc.where()}"
        body = self.bodies[(id(callee.module), callee.name)]
        return _Instance(body, prefix, names, dict(zip(function.inputs, inputs, strict=True)),
                         {**function.attrs, **given}, calls, top)

    def primitive(self, inst: _Instance, node: BaseModel, loc: Location) -> BaseModel | None:
        """The node's registry model; in a function body, validated with its attributes."""
        if not isinstance(node, CallNode):
            return node  # the spec's own node, validated with the spec
        data = node.model_dump(exclude_unset=True)
        inputs = data.pop("inputs")  # bound by bind_input, which checks $attr there
        data, _ = _substitute(data, inst.attrs)
        data["inputs"] = inputs
        try:
            return NODE_MODELS[node.op].model_validate(data)
        except ValidationError as exc:
            module = inst.body.module
            for problem in located_problems(exc, module.data, module.source, loc.path):
                self.problems.append(Problem(problem.file, problem.line, problem.col,
                                             problem.path, f"{problem.message} ({inst.calls})"))
            return None


def _attr_ref(ref: str | int | float) -> re.Match[str] | None:
    """``$name`` as an input: the match, whose group 1 is the attribute's name."""
    return _ATTR_REF.match(ref) if isinstance(ref, str) and ref[:1] == "$" else None


def _of(body: _Body) -> str:
    return f" of function {body.function!r}" if body.function else ""


def _resolve(body: _Body, ref: str) -> str:
    """A reference as the body's own name for it: an input, a node, or ``call.out_name``."""
    if ref in body.input_set:
        return ref
    name, dot, out = ref.partition(".")
    if name in body.input_set:
        raise _BadRef(f"reads {name!r}, which is an input, not a call; write {name!r}")
    if name not in body.nodes:
        if body.function is None:
            raise _BadRef(f"names nothing{did_you_mean(ref, [*body.inputs, *body.nodes])}; "
                          "define it under inputs, parameters, constants or nodes")
        raise _BadRef(f"names nothing{did_you_mean(ref, [*body.inputs, *body.nodes])}; a "
                      f"function's nodes read its inputs ({', '.join(body.inputs)}) and its "
                      "own nodes")
    callee = body.callees.get(name)
    if callee is None:
        if dot:
            raise _BadRef(f"reads an output of {name!r}, which is not a function call and has "
                          f"one value; write {name!r}")
        return name
    outputs = callee.function.outputs
    if not dot:
        if len(outputs) == 1:
            return name
        raise _BadRef(f"is a call of {callee.op!r}, which has several outputs; write one of "
                      f"{', '.join(f'{name}.{o}' for o in outputs)}")
    if out not in outputs:
        raise _BadRef(f"reads output {out!r}, but {callee.op!r} has no such output"
                      f"{did_you_mean(out, outputs)}; its outputs: {', '.join(outputs)}")
    return name if len(outputs) == 1 else ref


def _global(inst: _Instance, ref: str | int | float) -> str | int | float:
    if not isinstance(ref, str):
        return ref
    local = _resolve(inst.body, ref)
    return inst.bindings[local] if local in inst.body.input_set else inst.name(local)


def _substitute(value: Any, attrs: dict[str, Any]) -> tuple[Any, list[str]]:
    """``value`` with each ``$name`` string replaced by ``attrs[name]``, and the names missing.

    A copy is made of every list and mapping on the way, so the spec is never changed.
    """
    missing: list[str] = []
    holder = [value]
    stack: list[tuple[Any, Any]] = [(holder, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            match = _ATTR_REF.match(item)
            if match and match[1] in attrs:
                container[key] = attrs[match[1]]
            elif match:
                missing.append(match[1])
        elif isinstance(item, list):
            container[key] = item = list(item)
            stack.extend((item, index) for index in range(len(item)))
        elif isinstance(item, dict):
            container[key] = item = dict(item)
            stack.extend((item, k) for k in item)
    return holder[0], missing
