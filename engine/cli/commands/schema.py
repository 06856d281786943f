"""``engine schema``: the JSON Schema of a spec, for editors (yaml-language-server) and tools.

It is generated from the pydantic models, so it always matches what ``load``
accepts; each op's node and attributes carry their descriptions from the op
registry.  ``schemas/graph.schema.json`` is this output, committed; regenerate
it with ``python -m engine schema -o schemas/graph.schema.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.io.atomic import write_atomically
from engine.spec.models import schema_text

HELP = "print the JSON Schema of graph specs (for editor completion and inline errors)"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema", help=HELP, description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m engine schema -o schemas/graph.schema.json")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the schema to FILE (atomically) instead of stdout")


def run(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, lambda handle: handle.write(text.encode()))
    return 0
