"""What ONNX export and import share, and nothing else: the optional libraries, the
dtype names on both sides, and the opsets the engine writes.

Kept tiny on purpose, so that the two directions (``engine.onnx.export`` and the
importer) agree on these facts without depending on each other.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import UsageError

#: What to run when onnx or onnxruntime is missing (they are the ``onnx`` extra).
INSTALL = 'pip install -e ".[onnx]"'

#: The oldest opset the exporter writes: reductions, Squeeze/Unsqueeze and Clip take their
#: axes and bounds as inputs (13), Reshape has allowzero (14), LayerNormalization exists (17).
MIN_OPSET = 17

#: The newest opset the exporter is tested at: onnxruntime 1.32 runs every op it writes there
#: (tests/test_onnx_export.py); the default is this or onnx's newest, if older.
NEWEST_RUN_OPSET = 28

#: Engine dtype name -> ONNX ``TensorProto`` element type (the numbers are ONNX's, fixed by
#: its protobuf, so they are written out here rather than read from onnx at import time).
ONNX_DTYPES: dict[str, int] = {
    "float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7,
    "bool": 9, "float16": 10, "float64": 11, "uint32": 12, "uint64": 13,
}

#: ONNX element type -> engine dtype name, for what the engine has.
ENGINE_DTYPES: dict[int, str] = {code: name for name, code in ONNX_DTYPES.items()}


def require(verb: str, module: str = "onnx") -> ModuleType:
    """The module ``module`` (``onnx`` or ``onnxruntime``), or a UsageError naming the verb
    that needs it and saying how to install the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"engine {verb} needs {module}, which is not installed: "
                         f"{INSTALL}") from None


def default_opset(onnx: ModuleType) -> int:
    """The opset ``engine export`` writes unless told: the newest that both the installed
    onnx knows and onnxruntime runs."""
    return min(onnx.defs.onnx_opset_version(), NEWEST_RUN_OPSET)
