"""``engine optimize SPEC``: the forward and backward graph after the passes, as a spec."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.commands.common import add_load_options, load_for_spec, write_spec
from engine.cli.commands.grad import add_wrt_option
from engine.transform.optimize import Optimized, optimize_spec
from engine.transform.passes import PASSES, parse_passes

HELP = "write engine grad's forward and backward graph after the optimization passes"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "optimize", help=HELP,
        description=HELP + f" ({', '.join(PASSES)}). The result is a spec that engine run "
        "runs: the original outputs, then the gradients d_NAME, the same numbers as "
        "engine run SPEC gives.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m engine optimize graphs/softmax.yaml -o opt.yaml --report && "
               "python -m engine run opt.yaml\n"
               "  python -m engine optimize graphs/mlp.yaml --passes fold,dce")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    add_wrt_option(parser)
    parser.add_argument("--of", metavar="NODE",
                        help="differentiate this node instead of the loss")
    parser.add_argument("--passes", metavar="LIST", default=",".join(PASSES),
                        help=f"comma-separated passes, run in that order (default: "
                             f"{','.join(PASSES)})")
    parser.add_argument("--report", action="store_true",
                        help="list each pass with the node count before and after and each "
                             "rewrite, by node name and file:line (on stderr)")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.yaml",
                        help="where to write the spec (default: stdout)")
    add_load_options(parser)


def run(args: argparse.Namespace) -> int:
    passes = parse_passes(args.passes)
    graph, command, out_dir = load_for_spec(args, "optimize")
    made = optimize_spec(graph, passes, args.wrt, of=args.of, out_dir=out_dir,
                         command=command)
    if args.report:
        print(report(made), file=sys.stderr)
    return write_spec(args.output, made.text)


def report(made: Optimized) -> str:
    """Each pass: nodes before -> after, then one line per rewrite."""
    lines = []
    for entry in made.reports:
        lines.append(f"{entry.name}: {entry.before} -> {entry.after} nodes, "
                     f"{len(entry.matches)} rewrite{'s' if len(entry.matches) != 1 else ''}")
        lines += [f"  {match.line()}" for match in entry.matches]
    return "\n".join(lines)
