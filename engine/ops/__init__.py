"""The op registry: importing this package registers every op.

``REGISTRY`` maps the name a spec writes after ``op:`` to its ``OpDef``.
"""

from engine.ops import (
    arithmetic,
    broadcasting,
    casting,
    compare,
    elementwise,
    indexing,
    linalg,
    normalization,
    piecewise,
    reductions,
    shaping,
    softmax,
    special,
    stochastic,
)
from engine.ops.base import REGISTRY, OpAttrs, OpDef
from engine.ops.samples import Sample

__all__ = ["REGISTRY", "OpAttrs", "OpDef", "Sample", "arithmetic", "broadcasting", "casting",
           "compare", "elementwise", "indexing", "linalg", "normalization", "piecewise",
           "reductions", "shaping", "softmax", "special", "stochastic"]
