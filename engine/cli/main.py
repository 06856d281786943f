"""The ``engine`` command line: one sub-command per verb, errors without tracebacks.

Exit codes: 0 success, 1 a spec or data error (message on stderr), 2 a usage
error (argparse's convention), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from engine.cli.commands import (
    check,
    eval,
    explain,
    export,
    grad,
    gradcheck,
    graph,
    import_,
    optimize,
    predict,
    run,
    schema,
    train,
)
from engine.cli.commands.common import backend_session
from engine.cli.diagnostics import count, report
from engine.cli.terminal import EscapingWriter, unescaped
from engine.errors import DataWarning, EngineError, SpecError, UsageError

COMMANDS = (run, check, graph, explain, grad, gradcheck, optimize, train, eval, predict, schema,
            export, import_)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine", description="Run declarative computational graphs written as YAML specs.",
        epilog="'engine COMMAND --help' describes a command. Exit codes: 0 success, 1 a spec or "
               "data error, 2 a usage error, 130 interrupted.")
    _add_snippets(parser, "auto")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    for verb in subparsers.choices.values():  # also after the verb, for every verb
        _add_snippets(verb, argparse.SUPPRESS)
    return parser


def _verb(command: object) -> str:
    """A verb's name: its module's, or ``NAME`` where that is a Python keyword (import)."""
    return getattr(command, "NAME", command.__name__.rsplit(".", 1)[-1])  # type: ignore[attr-defined]


def _add_snippets(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--snippets", choices=("auto", "always", "never"), default=default,
                        help="show the offending line of the spec under each error and warning "
                             "(auto: when stderr is a terminal)")


@contextmanager
def _data_warnings_as_lines() -> Iterator[None]:
    """The engine's run-time warnings (``engine.DataWarning``) printed as ``warning: ...``
    lines, like the located warnings of a spec, instead of Python's form (a source line of
    the engine); each once."""
    shown, printed = warnings.showwarning, set()

    def show(message: Warning | str, category: type[Warning], *rest: object, **kw: object
             ) -> None:
        if issubclass(category, DataWarning):
            if str(message) not in printed:
                printed.add(str(message))
                print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *rest, **kw)  # type: ignore[arg-type]

    with warnings.catch_warnings():
        warnings.simplefilter("default", DataWarning)
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m engine`` and the ``engine`` script; returns the exit code.

    Everything printed goes through ``EscapingWriter``, so text from a spec or a data
    file cannot drive the terminal.
    """
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingWriter(sys.stdout), EscapingWriter(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = next(c for c in COMMANDS if _verb(c) == args.command)
    try:
        with _data_warnings_as_lines(), backend_session(args):
            code = handler.run(args)
        sys.stdout.flush()  # here, not at exit, so that a full disk is an error of ours
        return code
    except SpecError as exc:
        report(exc.problems, "error", sys.stderr, args.snippets)
        print(f"{count(len(exc.problems), 'error')} found", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co: not an error of ours
        _discard_stdout()
        return 0
    except OSError as exc:  # stdout on a full disk (> /dev/full), a closed terminal
        if exc.filename is not None:
            raise  # a file we opened: the commands report their own files
        _discard_stdout()
        print(f"error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _discard_stdout() -> None:
    """Point the process's stdout at /dev/null, so that the flush at exit does not fail again
    on the same output (only when stdout is the real one, not a test's capture)."""
    if sys.__stdout__ is None or unescaped(sys.stdout) is not sys.__stdout__:
        return
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
