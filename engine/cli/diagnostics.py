"""Problems printed for people: ``severity: file:line:col: path: message``, plus a snippet.

On a terminal each problem is followed by the offending line of the spec and
a caret under the column, as compilers do, so the mistake is seen without
opening the file.  Piped or redirected output stays one line per problem, for
tools and editors that parse ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Literal

from engine.errors import Problem

SnippetMode = Literal["auto", "always", "never"]
Severity = Literal["error", "warning"]


def read_lines(file: str) -> list[str] | None:
    """The lines of a spec file, or None when it cannot be read (``<string>`` specs)."""
    try:
        return Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def snippet(problem: Problem, lines: list[str] | None) -> str:
    """The problem's line with a caret under its column; '' when the line is unknown."""
    if lines is None or not 1 <= problem.line <= len(lines):
        return ""
    text = lines[problem.line - 1]
    number = str(problem.line)
    # Tabs stay tabs in the padding so the caret lines up however the terminal shows them.
    pad = "".join("\t" if ch == "\t" else " " for ch in text[:problem.col - 1])
    margin = " " * len(number)
    return f" {number} | {text}\n {margin} | {pad}^"


def render(problem: Problem, severity: Severity, with_snippet: bool,
           read: Callable[[str], list[str] | None] = read_lines) -> str:
    """One problem as printed: the located line, then the snippet when asked for."""
    head = f"{severity}: {problem}"
    if not with_snippet:
        return head
    shown = snippet(problem, read(problem.file))
    return f"{head}\n{shown}" if shown else head


def wants_snippets(mode: SnippetMode, stream: IO[str]) -> bool:
    """``auto`` shows snippets only when ``stream`` is a terminal."""
    if mode == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return mode == "always"


def report(problems: Iterable[Problem], severity: Severity, stream: IO[str],
           mode: SnippetMode = "auto") -> None:
    """Print problems (already sorted and deduplicated) to ``stream``."""
    with_snippet = wants_snippets(mode, stream)
    cache: dict[str, list[str] | None] = {}

    def read(file: str) -> list[str] | None:
        if file not in cache:
            cache[file] = read_lines(file)
        return cache[file]

    for problem in problems:
        print(render(problem, severity, with_snippet, read), file=stream)


def count(number: int, word: str) -> str:
    """``count(2, 'error')`` -> ``2 errors``."""
    return f"{number} {word}{'' if number == 1 else 's'}"
