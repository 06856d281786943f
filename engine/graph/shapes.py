"""Static shapes with named dimensions, and the broadcasting rules over them.

Shapes are tuples whose entries are ints or dimension names (``batch``).  Names
unify across the whole graph: the first time a name meets a number it is bound
to it, and a later disagreement is a ShapeError.  Op shape rules use this so
that mistakes are found while building, before any array exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
    both places: where the name got its size and where it disagrees.  A site is
    text, or anything whose ``str`` is that text: the graph builder sets one per
    node, and writes it out only for a message.
    """

    def __init__(self) -> None:
        self.bound: dict[str, Dim] = {}
        self.origins: dict[str, object] = {}
        self.site: object = ""
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
        if not self.bound:  # no name is bound (as in any graph without named dims)
            return shape if shape.__class__ is tuple else tuple(shape)  # type: ignore[return-value]
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
        sized = [s for s in shapes if len(s)]  # a scalar broadcasts against anything
        if not sized:
            return ()
        first = tuple(sized[0])
        if all(tuple(s) == first for s in sized) and all(d.__class__ is int for d in first):
            return first  # the usual case: equal sizes, nothing to pair or bind
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
