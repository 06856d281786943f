"""What ONNX import refuses with, and the dtype names on both sides of it."""

from __future__ import annotations

import typing

import numpy as np

from engine.errors import EngineError
from engine.onnx.common import require
from schemas.spec import DType

#: dtypes a spec may declare a tensor in; others (string, float8, int4, ...) are refused.
SPEC_DTYPES = frozenset(typing.get_args(DType))


class Unsupported(EngineError):
    """A model (or one node of it) the engine cannot compute as ONNX defines it."""


def dtype_name(elem_type: int) -> str | None:
    """The NumPy name of an ONNX element type (``float32``), or None for one NumPy lacks."""
    onnx = require("import")
    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return None


def elem_label(elem_type: int) -> str:
    onnx = require("import")
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"
