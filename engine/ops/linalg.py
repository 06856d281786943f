"""Matrix products: MatMul (2-D and batched) and the fused dense layer Dense(x, w, b)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, ShapeError, format_shape
from engine.ops.base import SMALL_ARRAY, NoAttrs, OpAttrs, OpDef, register
from engine.ops.samples import Sample
from engine.runtime.kernels import relu_grad


def _matmul_shape(attrs: NoAttrs, dims: Dims, a: Shape, b: Shape) -> Shape:
    """NumPy's (and ONNX's) promotion of vectors: a 1-D ``a`` is a row (a leading 1 axis),
    a 1-D ``b`` a column (a trailing 1 axis), and the axis added is gone from the result."""
    if len(a) < 1 or len(b) < 1:
        raise ShapeError(f"needs operands of rank 1 or more, got {format_shape(a)} @ "
                         f"{format_shape(b)}; a product with a scalar is Mul")
    rows, cols = (1, *a) if len(a) == 1 else a, (*b, 1) if len(b) == 1 else b
    dims.unify(rows[-1], cols[-2], f"inner dimensions differ: {format_shape(a)} @ "
                                   f"{format_shape(b)}")
    result = list(dims.broadcast(rows[:-2], cols[:-2]))
    if len(a) > 1:
        result.append(a[-2])
    if len(b) > 1:
        result.append(b[-1])
    return tuple(result)


def _matmul_vjp(xp, attrs, g, out, inputs, needs):
    """The matrix rule on the promoted operands: the axes the forward removed from the
    result are put back into ``g`` (``Unsqueeze``), and a vector's gradient loses its added
    axis again (the executor sums the batch axes back to its shape)."""
    a, b = inputs
    rows = xp.expand_dims(a, axis=0) if a.ndim == 1 else a
    cols = xp.expand_dims(b, axis=-1) if b.ndim == 1 else b
    if b.ndim == 1:
        g = xp.expand_dims(g, axis=-1)
    if a.ndim == 1:
        g = xp.expand_dims(g, axis=-2)
    d_a = xp.matmul(g, _transposed(xp, cols)) if needs[0] else None
    d_b = xp.matmul(_transposed(xp, rows), g) if needs[1] else None
    if d_a is not None and a.ndim == 1:
        d_a = xp.squeeze(d_a, axis=-2)
    if d_b is not None and b.ndim == 1:
        d_b = xp.squeeze(d_b, axis=-1)
    return (d_a, d_b)


def _transposed(xp, m):
    """``matrix_transpose``: the standard's ``.mT`` attribute where the array has it (it
    skips a function's dispatch on NumPy; the symbolic arrays of ``engine grad`` trace it),
    else the function, for Dask's arrays, which lack the attribute."""
    return m.mT if hasattr(m, "mT") else xp.matrix_transpose(m)


_MATMUL_SHAPES = (
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((1, 3, 4), (2, 4, 2)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (2, 4, 3)),
    ((1, 2, 3, 4), (4,)),
)


def _matmul_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample((rng.normal(size=a), rng.normal(size=b)), note=f"{a} @ {b}")
            for a, b in _MATMUL_SHAPES]


def _reference_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sums of products written out with einsum, a vector's subscripts without the axis
    that promotion would add (NumPy's documented result shapes)."""
    left = "j" if a.ndim == 1 else "...ij"
    right = "j" if b.ndim == 1 else "...jk"
    result = "..." + ("i" if a.ndim > 1 else "") + ("k" if b.ndim > 1 else "")
    return np.einsum(f"{left},{right}->{result}", a, b)


register(OpDef(
    not_probabilities=True,
    name="MatMul", doc="Matrix product a @ b; leading (batch) axes broadcast; a 1-D a is a row and "
                       "a 1-D b a column, whose added axis the result drops (NumPy, "
                       "ONNX).",
    attrs=NoAttrs, input_names=("a", "b"),
    forward=lambda xp, attrs, a, b: xp.matmul(a, b),
    vjp=_matmul_vjp,
    shape=_matmul_shape,
    reference=lambda attrs, a, b: _reference_matmul(a, b),
    samples=_matmul_samples,
    vjp_uses_output=False,
))


class DenseAttrs(OpAttrs):
    """The activation applied to x @ w + b, fused into the same step."""

    activation: Literal["none", "relu"] = Field(
        default="none", description="none: x @ w + b; relu: max(x @ w + b, 0), whose gradient "
                                    "flows only where the output is positive (Relu'(0) = 0).")


def _dense_shape(attrs: DenseAttrs, dims: Dims, x: Shape, w: Shape, b: Shape) -> Shape:
    """MatMul's rule for matrices only: a layer maps rows (the fusion pass never makes a
    Dense of a vector, whose product MatMul's promotion would drop an axis of)."""
    if len(x) < 2 or len(w) < 2:
        raise ShapeError(f"needs x and w of rank 2 or more, got {format_shape(x)} @ "
                         f"{format_shape(w)}; for a vector write MatMul and Add")
    return dims.broadcast(_matmul_shape(attrs, dims, x, w), b)


def _dense_forward(xp, attrs, x, w, b):
    z = xp.matmul(x, w) + b
    return xp.maximum(z, xp.zeros_like(z)) if attrs.activation == "relu" else z


def _dense_fast_forward(xp, attrs, x, w, b):
    z = np.matmul(x, w)
    if z.size > SMALL_ARRAY and b.dtype == z.dtype and _broadcasts_into(b.shape, z.shape):
        z += b  # in place: z is ours, and no second full-size array is made
    else:
        z = z + b
    if attrs.activation == "relu":
        np.maximum(z, 0.0, out=z)  # in place: z is ours
    return z


def _broadcasts_into(small: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether an array of shape ``small`` broadcasts to ``shape`` without growing it."""
    return len(small) <= len(shape) and all(
        s in (1, d) for s, d in zip(reversed(small), reversed(shape), strict=False))


def _dense_fast_vjp(xp, attrs, g, out, inputs, needs):
    if attrs.activation == "relu":  # as the rule, without where's branches on large arrays
        g = relu_grad(g, out)
    d_x, d_w = _matmul_vjp(np, attrs, g, out, inputs[:2], needs[:2])
    return (d_x, d_w, g if needs[2] else None)


def _dense_vjp(xp, attrs, g, out, inputs, needs):
    if attrs.activation == "relu":  # out > 0 exactly where x @ w + b > 0
        g = xp.where(out > 0, g, xp.zeros_like(g))
    d_x, d_w = _matmul_vjp(xp, attrs, g, out, inputs[:2], needs[:2])
    return (d_x, d_w, g if needs[2] else None)


def _dense_reference(attrs: DenseAttrs, x: np.ndarray, w: np.ndarray,
                     b: np.ndarray) -> np.ndarray:
    z = _reference_matmul(x, w) + b
    return np.where(z > 0, z, 0.0) if attrs.activation == "relu" else z


def _dense_samples(rng: np.random.Generator) -> list[Sample]:
    shapes = [((6, 13), (13, 10), (10,)), ((6, 13), (13, 10), (1, 10)), ((2, 5, 4), (4, 3), (3,))]
    samples = [Sample(tuple(rng.normal(size=s) for s in triple), note=f"{triple}")
               for triple in shapes]
    for triple in shapes[:2]:  # relu: drawn until no pre-activation is near the kink at 0
        while True:
            x, w, b = (rng.normal(size=s) for s in triple)
            if np.abs(_reference_matmul(x, w) + b).min() > 0.05:
                break
        samples.append(Sample((x, w, b), {"activation": "relu"}, note=f"{triple}, relu"))
    return samples


register(OpDef(
    not_probabilities=True,
    name="Dense", doc="The fused dense layer x @ w + b, b broadcast over rows, with an optional "
                      "activation (relu) in the same step.",
    attrs=DenseAttrs, input_names=("x", "w", "b"),
    forward=_dense_forward,
    fast_forward=_dense_fast_forward,
    vjp=_dense_vjp,
    fast_vjp=_dense_fast_vjp,
    shape=_dense_shape,
    reference=_dense_reference,
    samples=_dense_samples,
    convention="With activation relu: Relu'(0) = 0, as the Relu op.",
))
