"""``engine graph SPEC``: a picture of the forward pass, or with ``--backward`` of backward."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.commands.common import add_load_options, load_spec
from engine.draw.picture import backward_picture, forward_picture
from engine.draw.render import FORMATS, render
from engine.errors import UsageError
from engine.io.atomic import write_atomically
from engine.transform.optimize import optimize

HELP = "draw the graph's forward or backward pass (SVG, PNG, PDF, DOT or Mermaid)"
SUFFIX = {"svg": ".svg", "png": ".png", "pdf": ".pdf", "dot": ".dot", "mermaid": ".mmd"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "graph", help=HELP, description=HELP + ". Images need Graphviz's dot program; DOT and "
        "Mermaid text need nothing installed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m engine graph graphs/softmax.yaml             # graphs/softmax.svg\n"
               "  python -m engine graph graphs/softmax.yaml --backward -o bwd.png\n"
               "  python -m engine graph graphs/softmax.yaml --optimized -o opt.svg\n"
               "  python -m engine graph graphs/mlp.yaml --format mermaid -o -   # to stdout")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    add_load_options(parser)
    parser.add_argument("--backward", action="store_true",
                        help="draw the backward pass: red d(name) gradients, sums where they "
                             "meet, values kept for backward, and what needs no gradient")
    parser.add_argument("--optimized", action="store_true",
                        help="draw engine optimize's result: the forward and backward graph, "
                             "gradients as nodes, after the optimization passes")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: from the -o suffix, else svg)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="where to write (default: beside the spec, as NAME.svg or "
                             "NAME.backward.svg); '-' writes to stdout")


def _format(args: argparse.Namespace) -> str:
    if args.format is not None:
        return args.format
    if args.output is not None and str(args.output) != "-":
        by_suffix = {suffix: fmt for fmt, suffix in SUFFIX.items()} | {".gv": "dot"}
        fmt = by_suffix.get(args.output.suffix.lower())
        if fmt is None:
            raise UsageError(f"-o {args.output}: cannot tell the format from the suffix "
                             f"{args.output.suffix or '(none)'!r}; end the name in "
                             f"{', '.join(by_suffix)}, or pass --format")
        return fmt
    return "dot" if args.output is not None else "svg"


def run(args: argparse.Namespace) -> int:
    fmt = _format(args)
    if str(args.output) == "-" and fmt not in ("dot", "mermaid", "svg"):
        raise UsageError(f"-o -: {fmt} is binary; write it to a file, or use --format svg, dot "
                        "or mermaid for stdout")
    if args.optimized and args.backward:
        raise UsageError("--optimized draws the gradients as nodes already; leave out "
                         "--backward")
    graph = load_spec(args)
    if args.optimized:
        graph = optimize(graph)
    picture = backward_picture(graph) if args.backward else forward_picture(graph)
    data = render(picture, fmt)
    if str(args.output) == "-":
        sys.stdout.write(data.decode())
        return 0
    output = args.output
    if output is None:
        kind = ".backward" if args.backward else ".optimized" if args.optimized else ""
        output = args.spec.with_name(args.spec.stem + kind + SUFFIX[fmt])
    write_atomically(output, lambda handle: handle.write(data))
    print(f"wrote {output}")
    return 0
