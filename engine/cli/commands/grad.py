"""``engine grad SPEC``: the backward pass written out as a spec of its own."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.commands.common import add_load_options, load_for_spec, write_spec
from engine.transform.grad import grad_spec
from engine.transform.hvp import hvp_spec

HELP = "write the backward pass as a spec: the outputs, then the gradients d_NAME"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "grad", help=HELP,
        description=HELP + ". The result is an ordinary spec (functions inlined, no loss): "
        "engine run, check and graph take it, and engine grad differentiates it again.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m engine grad graphs/softmax.yaml -o g.yaml && python -m engine run "
               "g.yaml\n"
               "  python -m engine grad graphs/mlp.yaml --wrt w1 b1 --hvp -o hv.yaml\n"
               "  python -m engine grad hv.yaml --wrt w1 b1     # d_w1, d_b1 = H v")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    add_wrt_option(parser)
    parser.add_argument("--of", metavar="NODE",
                        help="differentiate this node instead of the loss (sum of its elements "
                             "if it is not a scalar); needed when the spec has no loss")
    parser.add_argument("--hvp", action="store_true",
                        help="add an input v_NAME per tensor and the loss hv = sum of "
                             "<d_NAME, v_NAME>: engine grad on the result gives H v")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.yaml",
                        help="where to write the spec (default: stdout)")
    add_load_options(parser)


def add_wrt_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wrt", nargs="+", action="extend", metavar="NAME",
                        help="inputs and parameters to differentiate with respect to, in the "
                             "order of the gradient outputs (default: each that requires grad "
                             "and that the loss reaches)")


def run(args: argparse.Namespace) -> int:
    graph, command, out_dir = load_for_spec(args, "grad")
    if args.hvp:
        text = hvp_spec(graph, args.wrt, of=args.of, out_dir=out_dir, command=command).text
    else:
        text = grad_spec(graph, args.wrt, of=args.of, out_dir=out_dir, command=command).text
    return write_spec(args.output, text)
