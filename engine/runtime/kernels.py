"""Reductions every stage shares at run time: ``sum_to`` (a broadcast gradient back to its
input's shape), ``total`` and ``largest`` (sum and max with NumPy's fast paths).

They are kept apart from ``engine.graph.shapes``, which reasons about shapes
before any array exists; these touch arrays.
"""

from __future__ import annotations

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
    reduced = total(xp, grad, axes, keepdims)
    return xp.reshape(reduced, shape) if reshape else reduced


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


def total(xp: Any, x: Any, axis: int | tuple[int, ...] | None = None,
          keepdims: bool = False) -> Any:
    """``xp.sum``; on NumPy the ufunc method, which skips ``np.sum``'s Python-level dispatch
    (a few microseconds a call, as much as the sum itself on the lesson's 5x3 arrays)."""
    if xp is np:
        if x.size >= FOLD_MIN_SIZE and _short_last_axis(x, axis):
            return _fold_last_axis(np.add, x, keepdims)
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return xp.sum(x, axis=axis, keepdims=keepdims)


def largest(xp: Any, x: Any, axis: int | tuple[int, ...] | None = None,
            keepdims: bool = False) -> Any:
    """``xp.max``, on NumPy with the same short-axis fast path as ``total``."""
    if xp is np:
        if x.size >= FOLD_MIN_SIZE and _short_last_axis(x, axis):
            return _fold_last_axis(np.maximum, x, keepdims)
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)
    return xp.max(x, axis=axis, keepdims=keepdims)


#: NumPy reduces a short last axis one row at a time: a 10,000 x 3 array takes 350 us for
#: its row maxima, 15 us by combining its 3 columns.  Up to this many columns (and from
#: FOLD_MIN_SIZE elements, below which one call is cheaper) the columns are combined.
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
