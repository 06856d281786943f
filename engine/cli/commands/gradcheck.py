"""``engine gradcheck SPEC``: the spec's derivatives against central finite differences."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli.commands.common import (
    add_backend_options,
    add_load_options,
    load_spec,
    print_json,
)
from engine.cli.commands.grad import add_wrt_option
from engine.cli.commands.run import _feed_argument, _read_feed
from engine.errors import UsageError
from engine.testing.check import check_gradients
from engine.testing.gradcheck import ATOL, EPS, RTOL

HELP = "check the spec's gradients (or second derivatives) against finite differences"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gradcheck", help=HELP,
        description=HELP + ". Each element must satisfy |analytic - numeric| <= atol + rtol * "
        "|numeric|; exit 1 if one does not.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m engine gradcheck graphs/mlp.yaml\n"
               "  python -m engine gradcheck graphs/softmax.yaml --order 2 --json")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    add_wrt_option(parser)
    parser.add_argument("--order", type=int, choices=(1, 2), default=1,
                        help="1: gradients; 2: Hessian-vector products along a random "
                             "direction, from the gradient graph differentiated again")
    parser.add_argument("--eps", type=_positive, default=EPS,
                        help=f"finite-difference step (default {EPS:g})")
    parser.add_argument("--atol", type=_positive, default=ATOL,
                        help=f"absolute tolerance per element (default {ATOL:g})")
    parser.add_argument("--rtol", type=_positive, default=RTOL,
                        help=f"relative tolerance per element (default {RTOL:g})")
    parser.add_argument("--feed", action="append", default=[], metavar="NAME=FILE",
                        type=_feed_argument,
                        help="check at the values of FILE for input NAME (default: its init)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for default values (overrides the spec's seed)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_load_options(parser)
    add_backend_options(parser)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    graph = load_spec(args)
    if graph.loss is None:
        raise UsageError(f"{args.spec}: the spec declares no loss: gradcheck checks d loss / d "
                         "tensor")
    feeds = {name: _read_feed(graph, name, file) for name, file in args.feed}
    with np.errstate(all="ignore"):
        reports = check_gradients(graph, feeds, args.wrt, order=args.order, eps=args.eps,
                                  atol=args.atol, rtol=args.rtol, seed=args.seed,
                                  backend=args.backend, device=args.device,
                                  chunk_rows=args.chunk_rows)
    ok = all(report.ok for report in reports)
    if args.json:
        print_json({"spec": str(args.spec), "order": args.order, "eps": args.eps,
                    "atol": args.atol, "rtol": args.rtol, "ok": ok,
                    "tensors": [report.as_json() for report in reports]})
    else:
        what = "gradients" if args.order == 1 else "Hessian-vector products"
        print(f"{graph.spec.name} ({args.spec}): {what} against central differences "
              f"(eps {args.eps:g}, atol {args.atol:g}, rtol {args.rtol:g})")
        for r in reports:
            print(f"  {'ok  ' if r.ok else 'FAIL'} {r.name:<12} max abs error {r.max_abs:.3g}, "
                  f"max rel error {r.max_rel:.3g}; worst element {list(r.worst)}: "
                  f"analytic {r.analytic:.9g}, numeric {r.numeric:.9g}")
        print("passed" if ok else "FAILED: an element differs by more than atol + rtol * "
              "|numeric|", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
