"""ONNX model -> spec: ``engine import model.onnx -o spec.yaml``.

The translation keeps the model readable as a spec: each ONNX value keeps its name
where the spec allows it and is renamed where not (``layer1.weight`` -> ``layer1_weight``;
the header comment lists every rename), initializers become parameters whose arrays
sit in one .npz beside the spec (``init: {file: model.npz}``), and each ONNX node
becomes one engine node, or a few where the engine spells it differently
(``engine/onnx/convert.py`` holds one converter per ONNX op).

What the engine cannot compute exactly as ONNX defines it is refused with a message
naming the file, the node, its op and the opset, never computed approximately: the
imported spec is loaded again and each output's dtype compared with the model's before
anything is written.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError, EngineError
from engine.io.atomic import check_writable
from engine.onnx.common import require
from engine.onnx.convert import CONVERTERS, NodeContext
from engine.onnx.types import SPEC_DTYPES, Unsupported, dtype_name, elem_label
from engine.transform.grad import UniqueNames
from schemas.spec import NAME_PATTERN

#: Constants up to this many elements are written into the spec; larger ones go to the .npz.
LITERAL_LIMIT = 16
_LEGAL = re.compile(NAME_PATTERN)


@dataclass
class Imported:
    """An imported model: the spec (as a mapping and as text) and the arrays of its .npz."""

    spec: dict[str, Any]
    text: str
    arrays: dict[str, np.ndarray]
    renamed: dict[str, str]
    npz: str  # the file name the spec's inits name
    outputs: list[str] = field(default_factory=list)  # the spec name of each ONNX output
    inputs: dict[str, str] = field(default_factory=dict)  # ONNX input -> spec input
    fixed: dict[str, np.ndarray] = field(default_factory=dict)  # given inputs made attributes


def load_model(path: Path) -> Any:
    """Read an ONNX file; a missing, corrupt or truncated one is a DataError naming it."""
    onnx = require("import")
    from engine.io.arrays import require_file

    require_file(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, a missing external-data file, ...
        raise DataError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                        f"{exc or 'the file is corrupt or truncated'})") from None
    if not model.HasField("graph") or not model.graph.output:
        raise DataError(f"{path}: not a readable ONNX model (no graph with outputs: the file "
                        "is empty, truncated or not ONNX)")
    return model


def import_model(model: Any, *, source: str, npz: str,
                 static: Mapping[str, np.ndarray] | None = None) -> Imported:
    """Translate ``model`` (an onnx.ModelProto) into a spec whose init files name ``npz``.

    ``source`` names the model in messages.  ``static`` gives values of graph inputs
    that the engine needs as attributes (a Reshape's shape, a Slice's starts): the
    onnx backend adapter knows them only when it is handed the inputs.
    """
    return _Importer(model, source, npz, dict(static or {})).run()


def verify(imported: Imported, model: Any, source: str) -> None:
    """Load the imported spec as ``engine run`` would and compare each output's dtype with
    the model's: a difference is refused here rather than computed."""
    from engine.spec.loader import loads

    with tempfile.TemporaryDirectory() as folder:
        if imported.arrays:
            np.savez(Path(folder) / imported.npz, **imported.arrays)
        try:
            graph = loads(imported.text, file=f"{source} (imported)", base_dir=folder)
        except EngineError as exc:
            raise Unsupported(f"{source}: the imported spec does not load: {exc}") from None
    declared = {o.name: o for o in model.graph.output}
    for onnx_name, name in zip(declared, imported.outputs, strict=True):
        want = dtype_name(declared[onnx_name].type.tensor_type.elem_type)
        have = graph.values[name].dtype
        if want is not None and want != have:
            raise Unsupported(f"{source}: output {onnx_name!r}: the engine computes it as "
                              f"{have} where the model declares {want}")


def write(imported: Imported, spec_path: Path, npz_path: Path) -> None:
    """Write the spec and its .npz together: both appear, whole, or neither changes."""
    import io

    from engine.io.atomic import write_together

    writes: dict[Path, Any] = {spec_path: lambda h: h.write(imported.text.encode())}
    if imported.arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **imported.arrays)
        writes = {npz_path: lambda h: h.write(buffer.getvalue()), **writes}
    for path in writes:
        check_writable(path)
    write_together(writes)


class _Names(UniqueNames):
    """Spec names: a legal ONNX name is kept, another made legal; every name once."""

    def __init__(self) -> None:
        super().__init__()
        self.given: dict[str, str] = {}

    def reserve(self, onnx_name: str) -> None:
        if _LEGAL.match(onnx_name):
            self.used.add(onnx_name)

    def of(self, onnx_name: str) -> str:
        """The spec name of an ONNX value (legal names were reserved first)."""
        if onnx_name not in self.given:
            self.given[onnx_name] = onnx_name if _LEGAL.match(onnx_name) \
                else self.take(onnx_name)
        return self.given[onnx_name]


class _Importer:
    def __init__(self, model: Any, source: str, npz: str, static: dict[str, np.ndarray]):
        self.onnx = require("import")
        self.model, self.source, self.npz = model, source, npz
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        try:
            inferred = self.onnx.shape_inference.infer_shapes(model)
        except Exception:  # a model ONNX cannot infer: use what it declares
            inferred = model
        self.graph = model.graph
        self.types = {v.name: v.type for v in (*inferred.graph.value_info,
                                                *inferred.graph.input, *inferred.graph.output)}
        self.known: dict[str, np.ndarray] = {t.name: self._array(t) for t in
                                             self.graph.initializer}
        self.initializers = set(self.known)
        self.bound = static  # given values of graph inputs, for what must be constant
        self.fixed: dict[str, np.ndarray] = {}  # those of them the spec fixes as attributes
        self.graph_inputs = {v.name: v for v in self.graph.input if v.name not in self.known}
        #: values that are a shape, or sizes of it, of a tensor whose size is known only at
        #: run time (engine export writes Count, BroadcastTo, ReshapeLike so): value ->
        #: (tensor, axes or None for the whole shape); they become those ops where used
        self.shapes: dict[str, tuple[str, list[int] | None]] = {}
        self.counts: dict[str, tuple[str, list[int]]] = {}
        self.names = _Names()
        self.refs: dict[str, str] = {}
        self.sections: dict[str, dict[str, Any]] = {
            "inputs": {}, "parameters": {}, "constants": {}, "nodes": {}}
        self.arrays: dict[str, np.ndarray] = {}
        self.dims: dict[str, str] = {}

    # -- the walk --------------------------------------------------------------------------

    def run(self) -> Imported:
        graph = self.graph
        every = [v.name for v in graph.input] + list(self.known)
        every += [o for n in graph.node for o in n.output if o]
        for name in every:
            self.names.reserve(name)
        for index, node in enumerate(graph.node):
            context = NodeContext(self, node, index)
            converter = CONVERTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if converter is None:
                raise context.unsupported(
                    f"op {node.op_type!r}{' of domain ' + repr(node.domain) if node.domain else ''}"
                    f" is not supported by engine import (it maps "
                    f"{', '.join(sorted(CONVERTERS))})")
            converter(context)
        outputs = [self.ref(o.name) for o in graph.output]
        declared = self.sections["inputs"]  # the model's inputs first, in its order
        first = [self.refs[v] for v in self.graph_inputs if self.refs.get(v) in declared]
        self.sections["inputs"] = {name: declared[name] for name in
                                   [*first, *(n for n in declared if n not in first)]}
        spec = self._spec(outputs)
        from engine.transform.grad import spec_text

        return Imported(spec, spec_text(spec, self._header()), self.arrays,
                        {k: v for k, v in self.names.given.items() if k != v}, self.npz,
                        outputs, {v: self.refs[v] for v in self.graph_inputs if v in self.refs},
                        self.fixed)

    def _spec(self, outputs: list[str]) -> dict[str, Any]:
        name = self.graph.name if _LEGAL.match(self.graph.name or "") else \
            self.names.take(self.graph.name or "imported")
        producer = " ".join(p for p in (self.model.producer_name, self.model.producer_version)
                            if p)
        spec: dict[str, Any] = {"name": name, "description": (
            f"Imported from {Path(self.source).name} (ONNX opset {self.opset}"
            f"{', made by ' + producer if producer else ''}) by engine import.")}
        spec.update({k: v for k, v in self.sections.items() if v and k != "nodes"})
        spec["nodes"] = self.sections["nodes"]
        spec["outputs"] = outputs
        return spec

    def _header(self) -> list[str]:
        renamed = {k: v for k, v in self.names.given.items() if k != v}
        lines = [f"Written by engine import from {Path(self.source).name} "
                 f"(ONNX opset {self.opset}).",
                 "Each ONNX value keeps its name where a spec allows it; parameters' arrays are "
                 f"in {self.npz}." if self.arrays else
                 "Each ONNX value keeps its name where a spec allows it."]
        if renamed:
            lines.append("Renamed (ONNX name -> spec name):")
            lines += [f"  {onnx_name!r} -> {name}" for onnx_name, name in renamed.items()]
        return lines

    # -- values ----------------------------------------------------------------------------

    def _array(self, tensor: Any) -> np.ndarray:
        try:
            return self.onnx.numpy_helper.to_array(tensor)
        except Exception as exc:
            raise DataError(f"{self.source}: initializer {tensor.name!r} cannot be read "
                            f"({exc})") from None

    def _declare_input(self, value: Any) -> None:
        tensor = value.type.tensor_type if value.type.HasField("tensor_type") else None
        if tensor is None:
            raise Unsupported(f"{self.source}: input {value.name!r} is not a tensor (a "
                              f"{value.type.WhichOneof('value')}); the engine takes tensors")
        dtype = self.dtype(value.name, f"input {value.name!r}")
        name = self.names.of(value.name)
        shape = []
        dims = tensor.shape.dim if tensor.HasField("shape") else []
        if not tensor.HasField("shape"):
            raise Unsupported(f"{self.source}: input {value.name!r} has no declared shape; "
                              "a spec declares every input's rank")
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value"):
                shape.append(int(dim.dim_value))
            else:
                label = dim.dim_param or f"{name}_{axis}"
                if label not in self.dims:
                    self.dims[label] = self.names.take(label) if not _LEGAL.match(label) \
                        else label
                shape.append(self.dims[label])
        decl: dict[str, Any] = {"shape": shape}
        if dtype != "float64":
            decl["dtype"] = dtype
        self.sections["inputs"][name] = decl
        self.refs[value.name] = name

    def dtype(self, onnx_name: str, what: str, where: str = "") -> str:
        """The engine dtype of a value, or Unsupported (located at ``where``, by default the
        model) when a spec cannot hold it."""
        where = where or self.source
        if onnx_name in self.known:
            dtype = str(self.known[onnx_name].dtype)
            label = dtype
        else:
            kind = self.types.get(onnx_name)
            if kind is None or not kind.HasField("tensor_type"):
                raise Unsupported(f"{where}: {what} is not a tensor of known type")
            elem = kind.tensor_type.elem_type
            dtype, label = dtype_name(elem) or "", elem_label(elem)
        declared = onnx_name in self.known or onnx_name in self.graph_inputs
        allowed = SPEC_DTYPES if declared else SPEC_DTYPES | {"bool"}  # comparisons make bool
        if dtype not in allowed:
            raise Unsupported(f"{where}: {what} is {label}, which is not an engine dtype "
                              f"({', '.join(sorted(allowed))})")
        return dtype

    def shape(self, onnx_name: str) -> tuple[int | None, ...] | None:
        """The static shape of a value as far as ONNX infers it (None: unknown axes)."""
        if onnx_name in self.known:
            return tuple(self.known[onnx_name].shape)
        kind = self.types.get(onnx_name)
        if kind is None or not kind.HasField("tensor_type") or \
                not kind.tensor_type.HasField("shape"):
            return None
        return tuple(int(d.dim_value) if d.HasField("dim_value") else None
                     for d in kind.tensor_type.shape.dim)

    def ref(self, onnx_name: str) -> str:
        """The spec name holding ONNX value ``onnx_name``, declaring it on first use."""
        if onnx_name in self.refs:
            return self.refs[onnx_name]
        if onnx_name in self.shapes or onnx_name in self.counts:
            raise Unsupported(f"{self.source}: value {onnx_name!r} is a tensor's shape, or "
                              "sizes of it, known only at run time; the engine reads it only "
                              "through Expand, Reshape, or ReduceProd then Cast")
        if onnx_name in self.graph_inputs:
            self._declare_input(self.graph_inputs[onnx_name])
            return self.refs[onnx_name]
        if onnx_name not in self.known:
            raise Unsupported(f"{self.source}: value {onnx_name!r} is read before any node "
                              "makes it (the graph is not in topological order)")
        array = self.known[onnx_name]
        name = self.names.of(onnx_name)
        dtype = self.dtype(onnx_name, f"value {onnx_name!r}")
        trainable = onnx_name in self.initializers and dtype.startswith("float")
        if trainable or array.size > LITERAL_LIMIT:
            decl: dict[str, Any] = {"shape": list(array.shape)}
            if dtype != "float64":
                decl["dtype"] = dtype
            decl["init"] = {"file": self.npz}
            section = "parameters" if trainable else "inputs"
            self.sections[section][name] = decl
            self.arrays[name] = array
        else:
            self.sections["constants"][name] = literal(array)
        self.refs[onnx_name] = name
        return name


def literal(array: np.ndarray) -> dict[str, Any]:
    """A constant's entry: the values with their dtype (ONNX's types are strict)."""
    entry: dict[str, Any] = {"value": array.tolist(), "dtype": str(array.dtype)}
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        entry["allow_nonfinite"] = True
    return entry


def supported_ops() -> list[str]:
    """The ONNX ops engine import maps, for the README and messages."""
    return sorted(CONVERTERS)
