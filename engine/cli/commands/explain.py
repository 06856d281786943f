"""``engine explain SPEC --wrt NAME``: the chain rule written out as a sum over paths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.commands.common import add_load_options, load_spec
from engine.errors import UsageError
from engine.graph.explain import DEFAULT_MAX_PATHS, as_latex, as_text, derivative_chains

HELP = "write d(loss)/d(NAME) as a sum over paths of products of local partial derivatives"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain", help=HELP, description=HELP + ", as plain text or LaTeX. Paths are counted "
        "first, so a graph with very many paths answers with the count.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m engine explain graphs/softmax.yaml --wrt x\n"
               "  python -m engine explain graphs/softmax.yaml --wrt x --of inverted --latex")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    add_load_options(parser)
    parser.add_argument("--wrt", required=True, metavar="NAME",
                        help="the value to differentiate with respect to (input, parameter, "
                             "constant or node)")
    parser.add_argument("--of", metavar="NODE", default=None,
                        help="the node to differentiate (default: the spec's loss)")
    parser.add_argument("--latex", action="store_true",
                        help="print an amsmath aligned block instead of plain text")
    parser.add_argument("--max-paths", type=int, default=DEFAULT_MAX_PATHS, metavar="N",
                        help=f"list the paths only when there are at most N (default "
                             f"{DEFAULT_MAX_PATHS}); more are only counted")


#: The most paths ``--max-paths`` may ask to list: one line each, so more is never readable.
MOST_PATHS = 1_000_000


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.max_paths <= MOST_PATHS:
        raise UsageError(f"--max-paths must be from 1 to {MOST_PATHS:,} (paths beyond are "
                         f"counted, never listed), got {args.max_paths}")
    graph = load_spec(args)
    chains = derivative_chains(graph, args.wrt, args.of, args.max_paths)
    sys.stdout.write(as_latex(chains) if args.latex else as_text(chains))
    value = graph.values[args.wrt]
    if chains.count and not value.requires_grad and value.kind != "node" and not args.latex:
        print(f"note: {args.wrt} does not require grad, so backward does not compute this "
              "derivative; set requires_grad: true to get it")
    return 0
