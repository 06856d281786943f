"""Reductions every stage shares at run time: ``sum_to`` (a broadcast gradient back to its
input's shape), and NumPy-only fast reductions for the ops' fast paths.

``sum_to`` is plain array-API code, used by the rules and the plain executor.
``numpy_sum``, ``numpy_max`` and ``numpy_sum_to`` are their NumPy lowerings: the
ufunc methods, which skip ``np.sum``'s Python-level dispatch, a column fold
for a short last axis, and a product with a vector of ones for a sum over the
leading (batch) axes.  ``row_sums`` and ``row_max`` reduce the rows of a 2-D
array to a column, the sums of small arrays as a product with ones;
``sum_of_products`` is a dot product that never wakes OpenBLAS's threads.
``relu_grad`` is Relu's gradient without ``where``'s branches.  Only
``OpDef.fast_forward``/``fast_vjp`` and the optimized executor call them, and only on
NumPy arrays.

They are kept apart from ``engine.graph.shapes``, which reasons about shapes
before any array exists; these touch arrays.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from engine.graph.shapes import ShapeError, format_shape


@lru_cache(maxsize=4096)
def sum_axes_to(grad_shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    """Axes of ``grad_shape`` to sum (keeping dims) so it reduces to broadcast-source ``target``.

    Leading axes that ``target`` lacks are summed too; the caller reshapes afterwards.
    """
    lead = len(grad_shape) - len(target)
    axes = list(range(lead))
    for i, dim in enumerate(target):
        if dim == 1 and grad_shape[lead + i] != 1:
            axes.append(lead + i)
    return tuple(axes)


def sum_to(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum a gradient over the axes its input was broadcast along, back to ``shape``.

    This is the lesson's ``np.sum(pow_grad, axis=-1).reshape(-1, 1)``, done once for
    every op and any rank.  Raises ShapeError when ``grad`` is no broadcast of ``shape``.
    """
    grad_shape = tuple(grad.shape)
    if grad_shape == shape:
        return grad
    axes, keepdims, reshape = _reduction(grad_shape, shape)
    reduced = xp.sum(grad, axis=axes, keepdims=keepdims)
    return xp.reshape(reduced, shape) if reshape else reduced


def numpy_sum_to(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``sum_to`` on NumPy, reducing with ``numpy_sum``."""
    grad_shape = grad.shape
    if grad_shape == shape:
        return grad
    axes, keepdims, reshape = _reduction(grad_shape, shape)
    reduced = numpy_sum(grad, axes, keepdims)
    return reduced.reshape(shape) if reshape else reduced


@lru_cache(maxsize=4096)
def _reduction(grad_shape: tuple[int, ...], shape: tuple[int, ...]
               ) -> tuple[tuple[int, ...], bool, bool]:
    """How ``sum_to`` reduces ``grad_shape`` to ``shape``: (axes, keepdims, reshape after),
    decided once per pair of shapes, since backward asks again for every batch.

    Without kept dims when only leading axes go (a bias of shape [3] under [batch, 3]),
    so that no reshape follows.  An exception is not cached, so a bad pair raises each time.
    """
    if len(grad_shape) < len(shape) or any(
            t not in (1, g) for g, t in zip(grad_shape[len(grad_shape) - len(shape):], shape,
                                            strict=True)):
        raise ShapeError(f"a gradient of shape {format_shape(grad_shape)} is no broadcast of "
                         f"its input's shape {format_shape(shape)}")
    axes = sum_axes_to(grad_shape, shape)
    lead = len(grad_shape) - len(shape)
    if all(axis < lead for axis in axes):
        return axes, False, False
    return axes, True, lead > 0


def numpy_sum(x: np.ndarray, axis: int | tuple[int, ...] | None = None,
              keepdims: bool = False) -> np.ndarray:
    """``np.sum`` as the ufunc method, which skips ``np.sum``'s Python-level dispatch
    (as much as the sum itself on the lesson's 5x3 arrays); same bits, except over leading
    axes of a large float array (``_sum_leading``: rounded differently, by about 1e-15)."""
    if x.size >= FOLD_MIN_SIZE and _short_last_axis(x, axis):
        return _fold_last_axis(np.add, x, keepdims)
    if x.size >= LEADING_MIN_SIZE and axis is not None:
        lead = _leading_axes(x, axis)
        if lead:
            return _sum_leading(x, lead, keepdims)
    return np.add.reduce(x, axis=axis, keepdims=keepdims)


#: From this many elements a sum over leading axes is a matrix-vector product (BLAS):
#: NumPy adds row after row, one short inner loop per row, which on the gradient of a
#: bias (10,000 x 10, summed over the batch) took 222 us against 26 us for ones @ g.
LEADING_MIN_SIZE = 1024


def _leading_axes(x: np.ndarray, axis: int | tuple[int, ...]) -> int:
    """How many leading axes ``axis`` names when it is exactly the first few of a C-ordered
    float32/float64 array (not all of them), else 0."""
    if x.dtype.char not in "fd" or not x.flags.c_contiguous:
        return 0
    ndim = x.ndim
    axes = sorted(a % ndim for a in axis) if isinstance(axis, tuple) else [axis % ndim]
    count = len(axes)
    return count if count < ndim and axes == list(range(count)) else 0


def _sum_leading(x: np.ndarray, lead: int, keepdims: bool) -> np.ndarray:
    rest = x.shape[lead:]
    rows = x.size // math.prod(rest) if math.prod(rest) else 0
    total = _ones((rows,), x.dtype.char) @ x.reshape(rows, -1)
    return total.reshape((1,) * lead + rest if keepdims else rest)


@lru_cache(maxsize=64)
def _ones(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A read-only array of ones, made once per shape and dtype."""
    ones = np.ones(shape, dtype)
    ones.setflags(write=False)
    return ones


def relu_grad(g: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``where(out > 0, g, 0)``, on large arrays as ``g * (out > 0)``: no branch per element,
    which on random signs made ``where`` 5 times slower (10,000 x 10: 415 us against 72 us).
    Where the gradient holds inf or NaN the product is not the select (inf * 0 is NaN): a
    finite sum of ``g`` says it holds neither (else the select is taken).  A masked element
    is -0.0 where g is negative, equal to where's 0.0."""
    mask = out > 0
    if mask.size < LEADING_MIN_SIZE or not np.isfinite(np.add.reduce(g, axis=None)):
        return np.where(mask, g, 0.0)  # small (one call is cheaper), or an inf or NaN
    return np.multiply(g, mask)


#: Up to this many elements ``row_sums`` is a product with a column of ones: BLAS reads the
#: rows in one call, where NumPy's reduction sets up an inner loop per row (64 x 10: 8.5K
#: instructions against 21K).  OpenBLAS runs a matrix-vector product on one thread below
#: 2304 * 4 elements (a dot product up to 10,000), so a product never starts threads of its
#: own inside a kernel that ``engine.runtime.parallel`` already runs over the cores.
DOT_MAX_SIZE = 2304 * 4


def row_sums(x: np.ndarray) -> np.ndarray:
    """The sums of a 2-D array's rows, as a column (rows x 1): a product with ones for small
    float32/float64 arrays (rounded in BLAS's order rather than NumPy's pairwise one: the
    same to a few units in the last place), ``numpy_sum`` otherwise."""
    if x.size <= DOT_MAX_SIZE and x.dtype.char in "fd":
        return np.dot(x, _ones((x.shape[1], 1), x.dtype.char))
    return numpy_sum(x, -1, keepdims=True)


#: From this many elements per row ``sum_of_products`` takes one BLAS dot product per row
#: (``np.vecdot``): on shorter rows the call per row costs more than einsum's single loop
#: (26,214 x 10: 337 us against 144 us; 256 x 1024: 68 us against 144 us).
ROW_DOT_MIN_SIZE = 64


def sum_of_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum(a * b) of two 2-D arrays of one shape, without a product array and never on
    OpenBLAS's threads.  ``np.vdot`` is one BLAS call, but from 10,000 elements OpenBLAS
    splits it over its own threads, which then spin for milliseconds waiting for more work:
    on two cores they took the core that the other half of a ``by_rows`` kernel, or the
    next step, runs on (1024 x 1024: vdot then exp took 17.5 ms of CPU time against 6.5 ms
    for a dot per row then exp).  So vdot up to ``DOT_MAX_SIZE`` elements; beyond, a
    single-threaded dot per row (rows of ``ROW_DOT_MIN_SIZE`` to ``DOT_MAX_SIZE``) summed,
    else einsum's loop; rounded in a different order than one vdot (about 1e-16 relative
    per element)."""
    if a.size <= DOT_MAX_SIZE:
        return np.vdot(a, b)
    if ROW_DOT_MIN_SIZE <= a.shape[1] <= DOT_MAX_SIZE:
        return np.add.reduce(np.vecdot(a, b), None)
    return np.einsum("ij,ij->", a, b)


def row_max(x: np.ndarray) -> np.ndarray:
    """The maxima of a 2-D array's rows, as a column: ``numpy_max`` over the last axis, with
    the reduction called positionally where no column fold applies (the keywords' parsing
    shows on small arrays)."""
    if x.size >= FOLD_MIN_SIZE and 2 <= x.shape[1] <= FOLD_MAX_COLUMNS:
        return _fold_last_axis(np.maximum, x, True)
    return np.maximum.reduce(x, 1, None, None, True)


def numpy_max(x: np.ndarray, axis: int | tuple[int, ...] | None = None,
              keepdims: bool = False) -> np.ndarray:
    """``np.max`` with the same fast paths as ``numpy_sum``."""
    if x.size >= FOLD_MIN_SIZE and _short_last_axis(x, axis):
        return _fold_last_axis(np.maximum, x, keepdims)
    return np.maximum.reduce(x, axis=axis, keepdims=keepdims)


#: NumPy reduces a short last axis one row at a time, which on a 10,000 x 3 array is
#: an order of magnitude slower than combining its 3 columns elementwise (see
#: ``benchmarks/run.py``).  Up to this many columns (and from FOLD_MIN_SIZE elements,
#: below which one call is cheaper) the columns are combined.
FOLD_MAX_COLUMNS = 7
FOLD_MIN_SIZE = 4096


def _short_last_axis(x: Any, axis: int | tuple[int, ...] | None) -> bool:
    if not isinstance(x, np.ndarray) or x.ndim == 0:  # callers checked the size
        return False
    if isinstance(axis, tuple):
        if len(axis) != 1:
            return False
        (axis,) = axis
    return axis is not None and axis % x.ndim == x.ndim - 1 and \
        2 <= x.shape[-1] <= FOLD_MAX_COLUMNS


def _fold_last_axis(ufunc: np.ufunc, x: np.ndarray, keepdims: bool) -> np.ndarray:
    """``ufunc.reduce(x, axis=-1)`` as elementwise calls over the columns, left to right,
    which is NumPy's own order on so few columns: a sum gives the same bits."""
    result = ufunc(x[..., 0:1], x[..., 1:2])
    for column in range(2, x.shape[-1]):
        ufunc(result, x[..., column:column + 1], out=result)
    return result if keepdims else result[..., 0]
