"""A validated spec as a DAG: names resolved, order fixed, shapes and dtypes inferred.

Everything that can be checked without data is checked here, and every problem
found is reported at once with its location: a name that names nothing, a name
defined twice, a cycle, a shape or dtype mismatch, a loss that is not a scalar,
a literal its dtype cannot hold.  The byte budget (``engine.graph.budget``) and
what is legal but probably not meant (``engine.graph.lint``) are the stages after
this one; the loader runs them on the graph built here.
Function calls have already been expanded (``engine.spec.inline``) into primitive
nodes, each with its own location, which may be in an imported file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from engine.cycles import cycle_path, find_cycles
from engine.errors import Problems, did_you_mean
from engine.graph.model import ClassTarget, Graph, Kind, Node, Value, value_dag
from engine.graph.shapes import Dims, Shape, ShapeError, format_shape
from engine.graph.targets import class_targets, first_bad_label, row_name
from engine.limits import DEFAULT_MAX_BYTES
from engine.ops import REGISTRY, OpDef
from engine.ops.base import FLOAT_DTYPES, INT_DTYPES, weak_dtype
from engine.spec.inline import FlatNode
from engine.spec.literals import literal_problem, yaml_number
from engine.spec.paths import Refused, confine
from engine.spec.source import Location, PathKey, SourceMap
from schemas.spec import Constant, Spec, TensorDecl

#: Ops whose keepdims: false drops the reduced axes.
_REDUCTIONS = ("Sum", "Mean", "Max")

_SECTIONS: tuple[tuple[str, Kind], ...] = (
    ("inputs", "input"), ("parameters", "parameter"), ("constants", "constant"), ("nodes", "node"),
)


def _bare_number(number: float) -> np.ndarray:
    """A bare number as a 0-d array: int64 if written as an integer int64 holds, else float64."""
    if isinstance(number, int) and -(2**63) <= number < 2**63:
        return np.asarray(number, dtype=np.int64)
    return np.asarray(float(number))


def _label(node: Node) -> str:
    """How messages name a node: ``node 'z1' (Mul)``."""
    return f"node {node.name!r} ({node.op.name})"


class _Site:
    """Where a node binds a named dimension, as ``Dims.explain`` completes its sentence
    ("at FILE:L:C by node 'z1' (Mul)"); written out only when a message needs it."""

    __slots__ = ("node",)

    def __init__(self, node: Node):
        self.node = node

    def __str__(self) -> str:
        return f"at {self.node.loc.where()} by {_label(self.node)}"


def _pure(op: OpDef, shapes: tuple[Shape, ...]) -> bool:
    """Whether ``op``'s rules give the same shape and dtype for these input shapes and any
    dtypes wherever they are asked, so that a node can take them from an earlier one's
    (``_Builder.known``): the op has no attributes (no node's differ), and every size is
    a number, so no rule binds a named dimension (``Dims.unify`` of two numbers binds
    nothing) or makes a new one (``Dims.fresh``, only for an unknown size)."""
    return not op.attrs.model_fields and all(d.__class__ is int for s in shapes for d in s)


class _Builder:
    """Collects problems while building, so that all of them are reported together."""

    def __init__(self, spec: Spec, source: SourceMap, base_dir: Path, roots: list[Path]):
        self.spec = spec
        self.source = source
        self.base_dir = base_dir
        self.roots = roots
        self.problems = Problems()
        self.duplicates: set[str] = set()
        self.values: dict[str, Value] = {}
        self.nodes: dict[str, Node] = {}
        self.dims = Dims()
        #: binding site -> (node, keepdims hint): a binding a lost axis may have caused
        self.hints: dict[str, tuple[str, str]] = {}
        self.weak_typed: set[str] = set()  # bare constants whose dtype a use has fixed
        self.reductions: set[str] = set()  # nodes of _REDUCTIONS, set by infer
        self.folded: dict[str, Node] = {}  # nodes of bare numbers only, as written (_fold)
        self.folded_numbers: dict[str, Value] = {}  # the numbers written in them
        #: (op, (shape, dtype) of each input) -> (shape, dtype) the op's rules gave, where
        #: they give it wherever asked (``_pure``): a 100,000-node chain asks for a handful
        self.known: dict[tuple[Any, ...], tuple[Shape, str]] = {}
        #: (constant, dtype) -> what ``literal_problem`` found, for bare constants
        self.weak_checked: dict[tuple[str, str], tuple[tuple[int, ...], str] | None] = {}

    def problem(self, path: PathKey, message: str) -> None:
        self.problems.append(self.source.problem(path, message))

    def check_literal(self, loc: Location, value: Any, dtype: str, allow_nonfinite: bool) -> None:
        """Report the first number of a literal that its dtype cannot hold, at that number."""
        found = literal_problem(value, dtype, allow_nonfinite)
        if found is not None:
            index, message = found
            self.problems.append(loc.at(*index).problem(message))

    # -- names -----------------------------------------------------------------------------

    def declare(self) -> None:
        """Tensors and constants become values; nodes become values in ``connect``."""
        spec = self.spec
        for section, kind in _SECTIONS:
            for name, decl in getattr(spec, section).items():
                path = (section, name)
                if name in self.values:
                    first = self.values[name]
                    line, _ = first.loc.source.position(first.loc.path)
                    self.problem(path, f"name {name!r} is defined twice: it is already "
                                       f"{first.a_kind} (line {line}); rename one of them")
                    self.duplicates.add(name)
                    continue
                if kind == "node":
                    continue  # its values come from the expanded nodes, in connect()
                value = Value(name, kind, Location(self.source, path))
                if isinstance(decl, TensorDecl):
                    self._tensor(value, decl)
                elif isinstance(decl, Constant):
                    self._constant(value, decl)
                self.values[name] = value

    def _tensor(self, value: Value, decl: TensorDecl) -> None:
        value.decl = decl
        value.shape = tuple(decl.shape)
        value.dtype = decl.dtype
        default_grad = value.kind == "parameter"
        value.requires_grad = default_grad if decl.requires_grad is None else decl.requires_grad
        if value.kind == "parameter" and decl.requires_grad is False:
            self.problem((*value.loc.path, "requires_grad"),
                         "a parameter always gets a gradient; declare a fixed tensor under "
                         "constants or inputs instead")
        if value.kind == "parameter" and decl.dtype not in FLOAT_DTYPES:
            self.problem((*value.loc.path, "dtype"),
                         f"a parameter gets a gradient, so it is floating point, but this one "
                         f"is {decl.dtype}: gradients never flow into integers or bools; "
                         "declare it under inputs or constants")
        elif value.requires_grad and decl.dtype not in FLOAT_DTYPES:
            self.problem((*value.loc.path, "requires_grad"),
                         f"only floating-point tensors can require grad, this one is {decl.dtype}")
        if decl.init is None:
            if value.kind == "parameter":
                self.problem(value.loc.path, "a parameter needs an init, for example "
                                         "init: {normal: {mean: 0, std: 0.1}}")
            return
        self._check_init(value, decl)

    def _check_init(self, value: Value, decl: TensorDecl) -> None:
        init = decl.init
        assert init is not None
        path = (*value.loc.path, "init")
        form = init.form
        if form == "one_hot" and (not decl.shape or decl.dtype not in FLOAT_DTYPES):
            self.problem(path, "one_hot needs a floating-point tensor with a class axis; for "
                               "integer class indices use init: {labels: {classes: N}}")
        elif form == "one_hot" and self._size(decl.shape[-1]) == 0:
            self.problem(path, f"one_hot needs at least one class, but the class axis of "
                               f"{format_shape(decl.shape)} has size 0")
        if form == "labels" and decl.dtype not in INT_DTYPES:
            self.problem(path, f"labels are integer class indices: declare dtype: int64 "
                               f"(found {decl.dtype}), or use one_hot for float rows")
        elif form == "labels" and init.labels.classes - 1 > np.iinfo(decl.dtype).max:
            self.problem((*path, "labels", "classes"),
                         f"labels up to {init.labels.classes - 1} do not fit {decl.dtype} "
                         f"(largest {np.iinfo(decl.dtype).max}); declare a wider integer dtype")
        if form in ("uniform", "normal") and decl.dtype not in FLOAT_DTYPES:
            self.problem(path, f"{form} draws floating-point numbers, but the tensor is "
                               f"{decl.dtype}; an integer or bool tensor takes zeros, ones, "
                               "labels, value or file")
        if form == "value":
            self.check_literal(value.loc.at("init", "value"), init.value, decl.dtype,
                               init.allow_nonfinite)
            literal = np.asarray(init.value, dtype=np.float64)
            named = any(isinstance(d, str) for d in decl.shape)
            if not named and literal.shape != tuple(decl.shape):
                self.problem(path, f"value has shape {format_shape(literal.shape)} but the "
                                   f"tensor is declared {format_shape(decl.shape)}")
        if form == "file":
            text = str(init.file)
            if not text.endswith((".npy", ".npz")):
                self.problem((*path, "file"), f"init file must be a .npy file, or an .npz "
                                              f"file holding an array named {value.name!r}, "
                                              f"found {text!r}")
                return
            try:
                _, value.file = confine(text, self.base_dir, self.roots)
            except Refused as exc:
                self.problem((*path, "file"), f"init file: {exc}")

    def _size(self, dim: int | str) -> int | None:
        """A declared dimension's size: the number, or a named one's default under dims:."""
        return self.spec.dims.get(dim) if isinstance(dim, str) else dim

    def _constant(self, value: Value, decl: Constant) -> None:
        value.weak = decl.dtype is None and not isinstance(decl.value, list)
        value.dtype = decl.dtype or "float64"
        problems = len(self.problems)
        self.check_literal(value.loc.at("value"), decl.value, value.dtype, decl.allow_nonfinite)
        if len(self.problems) == problems:
            # a bare number keeps whether it was written as an integer, which decides the
            # dtype its uses give it (weak_dtype)
            value.literal = _bare_number(decl.value) if value.weak else \
                np.asarray(decl.value, dtype=value.dtype)
        value.shape = np.shape(decl.value)

    # -- edges -----------------------------------------------------------------------------

    def connect(self, flat: list[FlatNode]) -> None:
        """Nodes as values; ``flat`` has every reference resolved to a value."""
        if self.duplicates:
            flat = [node for node in flat if node.top not in self.duplicates]  # reported
        values, nodes = self.values, self.nodes
        for node in flat:
            values[node.name] = Value(node.name, "node", node.loc, call=node.call)
        arities: dict[str, tuple[int, int | None]] = {}  # op -> op.arity, asked once per op
        for node in flat:
            name = node.name
            op = REGISTRY[node.node.op]  # type: ignore[attr-defined]
            refs = node.inputs
            for ref in refs:
                if ref.__class__ is not str:  # a number: each one becomes a constant
                    refs = tuple(ref if isinstance(ref, str) else
                                 self._inline_constant(node, index, ref)
                                 for index, ref in enumerate(node.inputs))
                    break
            arity = arities.get(op.name)
            if arity is None:
                arity = arities[op.name] = op.arity
            fewest, most = arity
            if len(refs) < fewest or (most is not None and len(refs) > most):
                expected = (f"{fewest} or more" if most is None else
                            str(most) if fewest == most else f"{fewest} to {most}")
                inputs = "input" if expected == "1" else "inputs"
                self.problems.append(node.loc.at("inputs").problem(
                    f"node {name!r} ({op.name}): takes {expected} {inputs} "
                    f"({', '.join(op.input_names)}), found {len(refs)}"))
            nodes[name] = Node(name, op, node.node, refs, node.loc)  # type: ignore[arg-type]

    def _inline_constant(self, node: FlatNode, index: int, number: float) -> str:
        name = f"{node.name}.inputs[{index}]"
        value = Value(name, "constant", node.loc.at("inputs", index), weak=True, call=node.call)
        if not np.isfinite(number):
            self.problems.append(value.loc.problem(
                f"non-finite inline constant {yaml_number(number)}; declare it under constants "
                "with allow_nonfinite: true if it is meant"))
        value.literal = _bare_number(number)
        self.values[name] = value
        return name

    def order(self) -> list[str]:
        """The topological order that takes, of the values ready, the one written first, so
        that inference (and its messages) follows the spec as written."""
        keys = _sort_keys(self.values, self.source)
        order = _written_order(keys, self.nodes)
        if order is None:  # some node reads a value written after it: sort the DAG
            dag = value_dag(self.values, self.nodes)
            try:
                order = list(nx.lexicographical_topological_sort(dag, key=keys.__getitem__))
            except nx.NetworkXUnfeasible:  # only then look for the cycles, to report every one
                self._report_cycles(dag)
                order = []
        self.problems.raise_if_any()
        return [n for n in order if n in self.nodes]

    def _report_cycles(self, dag: nx.DiGraph) -> None:
        for cycle in find_cycles(dag, lambda u, _next: self.values[u].loc.sort_key()):
            self.problems.append(self.values[cycle[0]].loc.problem(
                f"cycle: {cycle_path(cycle)}; a graph must be acyclic"))

    # -- shapes and dtypes -----------------------------------------------------------------

    def infer(self, order: list[str]) -> None:
        failed: set[str] = set()
        values, nodes = self.values, self.nodes
        #: the reductions' names, for _keepdims_hint; a superset once one is folded, which
        #: its loop then finds gone from ``nodes``
        self.reductions = {name for name, node in nodes.items() if node.op.name in _REDUCTIONS}
        for name in order:
            node = nodes[name]
            if failed and not failed.isdisjoint(node.inputs):
                failed.add(name)
                continue
            ins = [values[ref] for ref in node.inputs]
            op = node.op
            # bare numbers only: a number itself (_fold), or their dtypes stay as they are
            weak = [v for v in ins if v.weak]
            numbers_only = len(weak) == len(ins) > 0 and not op.stochastic
            if weak and not numbers_only:
                node = self._type_weak_inputs(node, ins)
            hint = "" if len(ins) < 2 or self.reductions.isdisjoint(node.inputs) else \
                self._keepdims_hint(node, ins)  # nearly every node: no reduction feeds it
            site = None
            if hint:
                site = self.dims.site = _Site(node)
                self.hints[site] = (name, hint)
            key = (op.name, *[(v.shape, v.dtype) for v in ins])
            known = self.known.get(key)
            if known is None:
                if site is None:
                    self.dims.site = _Site(node)
                shapes = tuple([v.shape for v in ins])
                known = self._rules(node, ins, shapes, hint)
                if known is None:
                    failed.add(name)
                    continue
                if _pure(op, shapes):
                    self.known[key] = known
            shape, dtype = known
            value = values[name]
            value.shape = shape  # names kept for messages; resolved once inference is done
            value.dtype = dtype
            if numbers_only and shape == () and dtype in FLOAT_DTYPES:
                if not self._fold(node, ins):
                    failed.add(name)
                continue
            if numbers_only:  # not a float number (Greater of numbers): inputs as they are
                for v in ins:
                    self._settle(v, node)
            # gradients never flow into integers or bools (a Cast to int64 cuts the path)
            if dtype in FLOAT_DTYPES:
                for i, v in enumerate(ins):
                    if v.requires_grad and op.is_differentiable(i):
                        value.requires_grad = True
                        break

    def _rules(self, node: Node, ins: list[Value], shapes: tuple[Shape, ...], hint: str
               ) -> tuple[Shape, str] | None:
        """The shape and dtype ``node``'s op rules give for ``ins``; None (reported) where
        a rule refuses them."""
        try:
            shape = node.op.shape(node.attrs, self.dims, *shapes)
        except ShapeError as exc:
            self.problems.append(node.loc.problem(f"{_label(node)}: {exc}{hint}"))
            return None
        try:
            dtype = node.op.result_dtype(node.attrs, [v.dtype for v in ins])
        except ShapeError as exc:
            found = ", ".join(f"{ref} is {v.dtype}" for ref, v in zip(node.inputs, ins,
                                                                      strict=True))
            # the usual fix for an op that wants floats; other rules say what they want
            fix = ("; declare the input with a float dtype (float64, float32, float16), or "
                   "Cast it to one"
                   if "floating-point" in str(exc) else "")
            self.problems.append(node.loc.problem(f"{_label(node)}: {exc} ({found}){fix}"))
            return None
        return shape, dtype

    def _type_weak_inputs(self, node: Node, ins: list[Value]) -> Node:
        """Give the bare numbers ``node`` reads (in ``ins``, updated) the dtype of the
        values they meet (weak_dtype); ``node``, rewired where a number needs a copy."""
        strong = [v.dtype for v in ins if not v.weak]
        refs = None  # the inputs, once a number needs a copy
        for i, v in enumerate(ins):
            if not v.weak:
                continue
            dtype = weak_dtype(strong, v.literal is not None and v.literal.dtype.kind == "i")
            if v.name in self.weak_typed and v.dtype != dtype:
                ins[i] = self._weak_as(v, dtype, node)  # each use its own dtype
                refs = refs or list(node.inputs)
                refs[i] = ins[i].name
                continue
            v.dtype = dtype
            self.weak_typed.add(v.name)
            self._check_weak(v, node)
        return node if refs is None else self._rewire(node, refs)

    def _settle(self, value: Value, user: Node) -> None:
        """A bare number keeps the dtype it has now, its inference's."""
        if value.weak and value.name not in self.weak_typed:
            self.weak_typed.add(value.name)
            self._check_weak(value, user)

    def _fold(self, node: Node, ins: list[Value]) -> bool:
        """Make a node of bare numbers only (``root: {op: Sqrt, inputs: [$head_dim]}``) the
        bare number it computes, computed once here in float64 (JAX's weak-type rule; NumPy
        2's for Python scalars).  Each use then reads that number in its own dtype, checked
        to fit it, as a bare number written in the spec is: a float32 spec stays float32,
        and no use sees the number computed in a narrower dtype (Sqrt(Mul(300, 300)) in
        float16 would be inf) or in another use's.  The node becomes a constant, so what
        ``check`` shows is what runs; False (reported) where no number comes out."""
        if any(v.literal is None for v in ins):  # a number already refused
            return False
        with np.errstate(all="ignore"):
            number = np.asarray(node.op.forward(
                np, node.attrs, *[np.asarray(v.literal, dtype=np.float64) for v in ins]),
                dtype=np.float64)
        if not np.isfinite(number):
            self.problems.append(node.loc.problem(
                f"{_label(node)}: of bare numbers only, gives {yaml_number(float(number))}; "
                "declare the number under constants with allow_nonfinite: true if it is meant"))
            return False
        value = self.values[node.name]
        value.kind, value.weak, value.literal = "constant", True, number
        value.dtype = "float64"  # its own, until a use gives it one (_type_weak_inputs)
        self.folded[node.name] = self.nodes.pop(node.name)
        for ref in node.inputs:
            if ref.startswith(f"{node.name}.inputs["):  # written in this node: no other reads
                self.folded_numbers[ref] = self.values.pop(ref)
        return True

    def _keepdims_hint(self, node: Node, ins: list[Value]) -> str:
        """Why broadcasting may pair the wrong axes: an input that a reduction made without
        keepdims lost an axis, so NumPy aligns what is left with the other input's last axes
        (the softmax mistake: x / Sum(x, axis: -1)).  Asked only where a reduction feeds
        a node of two inputs or more."""
        rank = max((len(v.shape) for v in ins), default=0)
        for ref, value in zip(node.inputs, ins, strict=True):
            producer = self.nodes.get(ref)
            attrs = producer.attrs if producer is not None else None
            if producer is not None and producer.op.name in _REDUCTIONS and \
                    not attrs.keepdims and attrs.axis is not None and len(value.shape) < rank:
                return (f"; {ref!r} is {producer.op.name} over axis {attrs.axis} without "
                        f"keepdims, so that axis is gone and broadcasting pairs its axes with "
                        f"the last ones of the other input; keepdims: true on {ref!r} keeps it")
        return ""

    def _weak_as(self, value: Value, dtype: str, user: Node) -> Value:
        """The bare constant ``value`` at ``dtype``, for a use that needs another dtype than
        the one an earlier use gave it: ``k: 2.0`` used by a float32 node and a float64 node
        is two values, ``k`` and ``k.float32`` (a name no spec can write), so that what
        ``check`` infers is what runs.  One value had one dtype, the last use's."""
        name = f"{value.name}.{dtype}"
        clone = self.values.get(name)
        if clone is None:
            clone = Value(name, "constant", value.loc, shape=value.shape, dtype=dtype,
                          literal=value.literal, weak=True, call=value.call)
            self.values[name] = clone
            self.weak_typed.add(name)
            self._check_weak(clone, user)
        return clone

    def _rewire(self, node: Node, refs: list[str]) -> Node:
        """``node`` reading ``refs`` instead of its inputs, in the node table."""
        node = replace(node, inputs=tuple(refs))
        self.nodes[node.name] = node
        return node

    def _check_weak(self, value: Value, user: Node) -> None:
        """A bare number takes its user's dtype, which may be too narrow for it (1e5 in float16)."""
        if value.literal is None:  # refused already
            return
        key = (value.name, value.dtype)  # a constant used by 50,000 nodes is checked once
        if key not in self.weak_checked:
            self.weak_checked[key] = literal_problem(value.literal, value.dtype,
                                                     allow_nonfinite=True)
        found = self.weak_checked[key]
        if found is not None:
            index, message = found
            self.problems.append(value.loc.at(*index).problem(
                f"{message} (a bare number takes the dtype of its use, here {_label(user)})"))

    def check_ends(self) -> tuple[list[str], str | None]:
        """Outputs and loss must name values (and the loss a node); found with the names."""
        outputs = []
        for index, name in enumerate(self.spec.outputs):
            if name not in self.values:
                self.problem(("outputs", index), f"output {name!r} names nothing"
                                                 f"{did_you_mean(name, self.values)}")
            else:
                outputs.append(name)
        loss = self.spec.loss
        if loss is not None and loss not in self.nodes:
            what = "names nothing" if loss not in self.values else \
                f"is {self.values[loss].a_kind}, not a node"
            self.problem(("loss",), f"loss {loss!r} {what}{did_you_mean(loss, self.nodes)}")
        return outputs, loss

    def check_dim_defaults(self) -> None:
        """A default under ``dims:`` must agree with sizes the shapes already fix."""
        for name, size in self.spec.dims.items():
            bound = self.dims.resolve(name)
            if not isinstance(bound, int) or bound == size:
                continue
            culprit = self.hints.get(self.dims.origins.get(name, ""))
            if culprit is not None:  # the binding is the mistake, not the default
                node, hint = culprit
                self.problems.append(self.nodes[node].loc.problem(
                    f"node {node!r} ({self.nodes[node].op.name}): broadcasting binds {name} = "
                    f"{bound}, but dims: gives {name} = {size}{hint}"))
            else:
                self.problem(("dims", name), f"default size {size} of dimension {name!r} "
                                             f"disagrees with the graph{self.dims.explain(name)}; "
                                             "change the default or the shapes")

    def check_class_literals(self) -> dict[str, ClassTarget]:
        """NLL's class-index targets written in the spec: each label must be 0..K-1 (a label
        of 5 among 3 classes, or -1, would make a silent loss and gradient of 0)."""
        targets = class_targets(self.nodes, self.values)
        for name, target in targets.items():
            value = self.values[name]
            classes = self.dims.resolve(target.classes)
            if target.one_hot or not isinstance(classes, int):
                continue
            about = target.describe(self.values, self.dims, classes)
            init = value.decl.init if value.decl is not None else None
            if init is not None and init.form == "labels" and init.labels.classes > classes:
                self.problems.append(value.loc.at("init", "labels", "classes").problem(
                    f"labels: {{classes: {init.labels.classes}}} draws labels up to "
                    f"{init.labels.classes - 1}, but {about}; set classes: {classes}"))
            literal, loc = None, value.loc
            if init is not None and init.form == "value":
                literal, loc = np.asarray(init.value), value.loc.at("init", "value")
            elif value.kind == "constant":
                literal, loc = value.literal, value.loc.at("value")
            bad = None if literal is None else first_bad_label(np.asarray(literal), classes,
                                                               target.ignore_index)
            if bad is not None:
                index, label = bad
                self.problems.append(loc.at(*index).problem(
                    f"label {label:g} ({row_name(index)}) is not a class index: {about}; "
                    "labels count from 0"))
        return targets

    def check_loss_is_scalar(self) -> None:
        loss = self.spec.loss
        if loss is None or loss not in self.nodes:
            return
        shape = self.dims.shape(self.values[loss].shape)
        if shape != ():
            self.problem(("loss",), f"loss {loss!r} must be a scalar (shape []) so backward can "
                                    f"start from 1, but it has shape {format_shape(shape)}; "
                                    "reduce it with Sum or Mean")


def _sort_keys(values: dict[str, Value], source: SourceMap) -> dict[str, Any]:
    """Each value's ``loc.sort_key()`` (file, line, column), or, when every value was
    written in ``source`` at a place it recorded, that place's packed position
    (``engine.spec.source.packed``), which sorts the same way within one file: an int per
    value instead of a tuple (a fifth of a second at 100,000 nodes)."""
    positions = source.positions
    keys: dict[str, Any] = {}
    for name, value in values.items():
        loc = value.loc
        key = positions.get(loc.path) if loc.source is source else None
        if key is None:  # another file, or a place only an ancestor's position covers
            return {name: value.loc.sort_key() for name, value in values.items()}
        keys[name] = key
    return keys


def _written_order(keys: dict[str, Any], nodes: dict[str, Node]) -> list[str] | None:
    """The values in the order they were written, when that order is topological (every
    node reads only values written before it, as specs are usually written); else None.

    Taking the first-written ready value at each step then always takes the first-written
    value left, so this is the lexicographical topological order, found in a sort and one
    pass instead of a heap of every value.
    """
    names = sorted(keys, key=keys.__getitem__)  # stable, and linear on names already in order
    seen: set[str] = set()
    for name in names:
        node = nodes.get(name)
        if node is not None and not seen.issuperset(node.inputs):
            return None
        seen.add(name)
    return names


def build_graph(spec: Spec, source: SourceMap, base_dir: Path,
                expanded: tuple[list[FlatNode], dict[str, str]],
                max_bytes: int = DEFAULT_MAX_BYTES, import_roots: list[Path] | None = None
                ) -> Graph:
    """Order the DAG of the spec's nodes, calls expanded (``engine.spec.inline.expand``),
    infer shapes.  Raises SpecError with every problem found.

    ``max_bytes`` is kept on the graph, as the budget of fed shapes too; the budget and
    the warnings themselves are later stages (``engine.graph.budget``,
    ``engine.graph.lint``), which the loader runs on the graph built here.
    ``import_roots`` are the resolved ``--import-path`` folders, where files the spec
    names may be too.
    """
    roots = import_roots or []
    builder = _Builder(spec, source, base_dir, roots)
    builder.declare()
    flat, calls = expanded
    builder.connect(flat)
    outputs, loss = builder.check_ends()
    order = builder.order()  # reports cycles along with the problems found so far
    builder.infer(order)
    order = [name for name in order if name in builder.nodes]  # less the folded ones
    builder.check_dim_defaults()
    builder.check_loss_is_scalar()
    targets = builder.check_class_literals()
    builder.problems.raise_if_any()
    if builder.dims.bound:  # names bound late in inference reach every value
        for value in builder.values.values():
            value.shape = builder.dims.shape(value.shape)
    return Graph(spec, source, base_dir, builder.values, builder.nodes, order,
                 builder.dims, outputs, loss, calls, import_roots=roots, max_bytes=max_bytes,
                 targets=targets, folded=builder.folded, folded_numbers=builder.folded_numbers)
