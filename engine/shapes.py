"""Static shapes with named dimensions, and the broadcasting rules over them.

Shapes are tuples whose entries are ints or dimension names (``batch``).  Names
unify across the whole graph: the first time a name meets a number it is bound
to it, and a later disagreement is a ShapeError.  Op shape rules use this so
that mistakes are found while building, before any array exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

Dim = int | str
Shape = tuple[Dim, ...]


class ShapeError(ValueError):
    """An op's inputs cannot have the shapes or attributes given; the graph adds the location."""


def format_shape(shape: Sequence[Dim]) -> str:
    """``(5, 'batch')`` -> ``[5, batch]``, the way shapes are written in a spec."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


class Dims:
    """Bindings of named dimensions, shared by every shape rule of one graph.

    Each binding remembers where it was made (``site``, set by the caller to the
    location of the node or feed being checked), so a later conflict can name
    both places: where the name got its size and where it disagrees.
    """

    def __init__(self) -> None:
        self.bound: dict[str, Dim] = {}
        self.origins: dict[str, str] = {}
        self.site = ""
        self._fresh = 0

    def copy(self) -> Dims:
        """Independent bindings that start from these (for binding fed data)."""
        other = Dims()
        other.bound = dict(self.bound)
        other.origins = dict(self.origins)
        other._fresh = self._fresh
        return other

    def resolve(self, dim: Dim) -> Dim:
        """Follow bindings until an int or an unbound name."""
        seen = 0
        while isinstance(dim, str) and dim in self.bound:
            dim = self.bound[dim]
            seen += 1
            if seen > len(self.bound):  # pragma: no cover - bindings never form a loop
                break
        return dim

    def shape(self, shape: Iterable[Dim]) -> Shape:
        return tuple(self.resolve(d) for d in shape)

    def fresh(self) -> str:
        """A new anonymous dimension, for results no rule can pin down (Reshape with -1)."""
        self._fresh += 1
        return f"?{self._fresh}"

    def apply_defaults(self, defaults: dict[str, int]) -> None:
        """Bind each name that nothing bound yet to its default size (``dims:`` of a spec)."""
        for name, size in defaults.items():
            if isinstance(self.resolve(name), str):
                self.unify(name, size, "")

    def bind(self, name: str, dim: Dim) -> None:
        self.bound[name] = dim
        if self.site:
            self.origins[name] = self.site

    def explain(self, *dims: Dim) -> str:
        """'; batch = 5 was bound at FILE:L:C by ...' for the named ones among ``dims``.

        ``site`` is written to complete that sentence ("at FILE:L:C by node 'z1'").
        """
        notes = []
        for dim in dict.fromkeys(d for d in dims if isinstance(d, str)):
            name, value = dim, self.resolve(dim)
            if value == name:
                continue
            while name not in self.origins and isinstance(self.bound.get(name), str):
                name = str(self.bound[name])  # bound to another name: report where that one was
            origin = self.origins.get(name)
            notes.append(f"{dim} = {value} was bound {origin}" if origin else f"{dim} = {value}")
        return "".join(f"; {note}" for note in notes)

    def unify(self, a: Dim, b: Dim, what: str) -> Dim:
        """Make two dimensions equal, binding names; ``what`` explains the failure."""
        ra, rb = self.resolve(a), self.resolve(b)
        if ra == rb:
            return ra
        if isinstance(ra, str):
            self.bind(ra, rb)
            return rb
        if isinstance(rb, str):
            self.bind(rb, ra)
            return ra
        raise ShapeError(what + self.explain(a, b))

    def broadcast(self, *shapes: Sequence[Dim]) -> Shape:
        """NumPy broadcasting; a name against a number > 1 is bound to that number.

        The result keeps dimension names where an input had one, so later messages
        show ``[batch, 3]`` rather than a number whose origin is lost.
        """
        rank = max((len(s) for s in shapes), default=0)
        originals = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
        result: list[Dim] = []
        for axis in range(rank):
            dim: Dim = 1
            for shape in originals:
                other = shape[axis]
                if self.resolve(other) == 1 or other == dim:
                    continue
                if self.resolve(dim) == 1:
                    dim = other
                    continue
                try:
                    self.unify(dim, other, "")
                except ShapeError:
                    raise ShapeError(
                        "shapes cannot be broadcast together: "
                        + ", ".join(format_shape(s) for s in shapes)
                        + f" (axis {axis - rank}: {self.resolve(dim)} vs {self.resolve(other)})"
                        + self.explain(*(s[axis] for s in originals))
                    ) from None
                if isinstance(other, str) and not isinstance(dim, str):
                    dim = other
            result.append(dim)
        return tuple(result)


def normalize_axes(axis: int | Sequence[int] | None, rank: int,
                   shape: Sequence[Dim] | None = None) -> tuple[int, ...]:
    """Axes as sorted non-negative ints; ``None`` means every axis.

    ``shape``, when known (shape rules pass it), is named in the error message.
    """
    if axis is None:
        return tuple(range(rank))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    result = []
    for ax in axes:
        if not -rank <= ax < rank:
            value = f"a value of rank {rank}" if shape is None else \
                f"{format_shape(shape)} (rank {rank})"
            valid = f"axes {-rank} to {rank - 1}" if rank else "none: a scalar has no axes"
            raise ShapeError(f"axis {ax} is out of range for {value}; valid: {valid}")
        result.append(ax % rank)
    if len(set(result)) != len(result):
        raise ShapeError(f"axis {list(axes)} repeats an axis")
    return tuple(sorted(result))


def reduced_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    """The shape left by reducing ``axes`` of ``shape``."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


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
