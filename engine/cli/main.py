"""The ``engine`` command line: one sub-command per verb, errors without tracebacks.

Exit codes: 0 success, 1 a spec or data error (message on stderr), 2 a usage
error (argparse's convention), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from engine.cli.commands import (
    check,
    eval,
    explain,
    grad,
    gradcheck,
    graph,
    optimize,
    predict,
    run,
    schema,
    train,
)
from engine.cli.diagnostics import count, report
from engine.errors import DataWarning, EngineError, SpecError, UsageError

COMMANDS = (run, check, graph, explain, grad, gradcheck, optimize, train, eval, predict, schema)


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
    """Entry point of ``python -m engine`` and the ``engine`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = next(c for c in COMMANDS if c.__name__.rsplit(".", 1)[-1] == args.command)
    try:
        with _data_warnings_as_lines():
            return handler.run(args)
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
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0
