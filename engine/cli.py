"""The ``engine`` command line: one sub-command per verb, errors without tracebacks.

Exit codes: 0 success, 1 a spec or data error (message on stderr), 2 a usage
error (argparse's convention), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from engine.commands import explain, graph, run, train
from engine.errors import EngineError, SpecError

COMMANDS = (run, graph, explain, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine", description="Run declarative computational graphs written as YAML specs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m engine`` and the ``engine`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = next(c for c in COMMANDS if c.__name__.rsplit(".", 1)[-1] == args.command)
    try:
        return handler.run(args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} error{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0
