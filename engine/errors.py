"""Exceptions the engine raises for bad specs and bad data.

Every problem is located (file, line, column, path inside the spec) so that a
user can jump straight to it; the CLI prints them and exits 1, never with a
traceback.  Problems are collected rather than raised one at a time, so a user
fixes a whole spec in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.base import did_you_mean  # noqa: F401 - the engine's messages use it from here


@dataclass(frozen=True, order=True)
class Problem:
    """One located mistake: ``file:line:col: path: message``."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class EngineError(Exception):
    """Base class of the errors a user can cause (as opposed to bugs in the engine)."""


class SpecError(EngineError):
    """A spec is invalid; carries every problem found, sorted by position and deduplicated."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class Problems(list[Problem]):
    """Problems collected while a stage runs, so that all of them are reported together."""

    def raise_if_any(self) -> None:
        if self:
            raise SpecError(self)


class DataError(EngineError):
    """Fed data (arrays, files, CLI feeds) does not match what the spec declares."""


class ArgumentError(EngineError, TypeError):
    """A Python API call was given an argument of the wrong kind (a list where a mapping of
    names is expected, a string where a list of names is, a seed that is not a whole number).

    Also a TypeError, so that code catching Python's own error for this still works.
    """


class UsageError(EngineError):
    """A command-line value the command refuses once parsed (exit 2, like argparse's errors)."""


class ClusterError(EngineError):
    """The Dask cluster could not finish a computation: its scheduler went away, or a task's
    workers kept dying (``engine.runtime.cluster``)."""


class DataWarning(UserWarning):
    """Fed data that is legal but probably not meant (a soft row fed as a one-hot target)."""


class NonFiniteError(DataError):
    """A value or gradient became NaN or inf (raised only when finiteness is checked)."""

    def __init__(self, message: str, *, node: str, phase: str):
        super().__init__(message)
        self.node = node
        self.phase = phase
