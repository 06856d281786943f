"""The ONNX graph being written: nodes and initializers under unique names.

The lowerings (``engine.onnx.lowering``) speak to this small class only, so that
none of them builds protobufs by hand or can give two values one name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from engine.graph.shapes import Shape
from engine.onnx.common import ONNX_DTYPES
from engine.transform.grad import first_free


@dataclass(frozen=True)
class Operand:
    """One value as a lowering sees it: its ONNX name, engine dtype and shape (named sizes
    kept, as the engine inferred them). An absent optional input has the name ``""``."""

    name: str
    dtype: str
    shape: Shape


class Emitter:
    """Collects ONNX nodes and initializers; every name it makes is new (``hint``, ``hint_2``).

    ``taken`` holds the names the graph already uses (its values), which fresh names avoid.
    """

    def __init__(self, onnx: ModuleType, opset: int, taken: Iterable[str]):
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.taken: set[str] = set(taken)
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def fresh(self, hint: str) -> str:
        return first_free(hint, self.taken)

    def node(self, op_type: str, inputs: Sequence[str], hint: str, out: str | None = None,
             **attrs: Any) -> str:
        """Append one node of one output (named ``out``, or fresh after ``hint``); its name."""
        out = out if out is not None else self.fresh(hint)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                     **attrs))
        return out

    def initializer(self, name: str, array: np.ndarray) -> None:
        """A named initializer (a parameter or a constant of the spec)."""
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))

    def constant(self, array: Any, dtype: str, hint: str) -> str:
        """An initializer holding ``array`` in ``dtype``; small equal ones are shared."""
        array = np.asarray(array, dtype=dtype)
        key = (dtype, array.shape, array.tobytes()) if array.size <= 16 else None
        if key is not None and key in self._constants:
            return self._constants[key]
        name = self.fresh(hint)
        self.initializer(name, array)
        if key is not None:
            self._constants[key] = name
        return name

    def ints(self, values: Sequence[int], hint: str) -> str:
        """A 1-D int64 initializer: axes, shapes, starts (ONNX takes them as inputs)."""
        return self.constant(np.asarray(list(values), dtype=np.int64), "int64", hint)

    def cast(self, operand: Operand, dtype: str) -> str:
        """``operand`` in ``dtype``: its own name when it has it, else a Cast node's."""
        if operand.dtype == dtype or not operand.name:
            return operand.name
        return self.node("Cast", [operand.name], f"{operand.name}_{dtype}",
                         to=ONNX_DTYPES[dtype])
