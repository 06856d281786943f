"""Exceptions the engine raises for bad specs and bad data.

Every problem is located (file, line, column, path inside the spec) so that a
user can jump straight to it; the CLI prints them and exits 1, never with a
traceback.  Problems are collected rather than raised one at a time, so a user
fixes a whole spec in one round trip.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


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


class UsageError(EngineError):
    """A command-line value the command refuses once parsed (exit 2, like argparse's errors)."""


class DataWarning(UserWarning):
    """Fed data that is legal but probably not meant (a soft row fed as a one-hot target)."""


class NonFiniteError(DataError):
    """A value or gradient became NaN or inf (raised only when finiteness is checked)."""

    def __init__(self, message: str, *, node: str, phase: str):
        super().__init__(message)
        self.node = node
        self.phase = phase


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix, or '' when nothing is close: names are typed by hand."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
