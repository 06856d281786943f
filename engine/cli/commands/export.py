"""``engine export SPEC -o MODEL.onnx``: the graph as an ONNX model (optionally with its
gradients), for onnxruntime, Netron and the other tools that read ONNX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.commands.common import add_load_options, load_spec, require_suffix
from engine.cli.commands.grad import add_wrt_option
from engine.errors import UsageError
from engine.graph.shapes import format_shape
from engine.io.atomic import check_writable, write_atomically
from engine.onnx.common import INSTALL, MIN_OPSET, NEWEST_RUN_OPSET, require

HELP = "write the graph as an ONNX model (inputs, parameters as initializers, outputs, loss)"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help=HELP,
        description=HELP + ". Function calls are inlined; named sizes such as batch become "
        "symbolic dimensions. Needs the onnx extra: " + INSTALL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m engine export graphs/mlp.yaml -o mlp.onnx\n"
               "  python -m engine export graphs/mlp.yaml -o mlp_grad.onnx --with-gradients\n"
               "  python -m engine export graphs/digits.yaml --params p.npz -o digits.onnx")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.onnx",
                        help="where to write the model (atomically)")
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help=f"the ONNX opset to write, {MIN_OPSET} or newer (default: the "
                             f"newest that onnx knows and onnxruntime runs, {NEWEST_RUN_OPSET} "
                             "with the onnx of the extra)")
    parser.add_argument("--with-gradients", action="store_true",
                        help="also compute the gradients of the loss, as engine grad writes "
                             "them: outputs d_NAME after the outputs and the loss")
    add_wrt_option(parser)
    parser.add_argument("--of", metavar="NODE",
                        help="with --with-gradients: differentiate this node instead of the loss "
                             "(the sum of its elements); needed when the spec has no loss")
    parser.add_argument("--params", type=Path, metavar="PARAMS.npz",
                        help="the parameters that engine train --save wrote, instead of their "
                             "init; inputs standardised in training are standardised by the "
                             "model's first nodes, as engine run --params does")
    add_load_options(parser)


def run(args: argparse.Namespace) -> int:
    require("export")
    require_suffix("-o", args.output, (".onnx",))
    for option, given in (("--wrt", args.wrt), ("--of", args.of)):
        if given and not args.with_gradients:
            raise UsageError(f"{option} says which gradients --with-gradients exports; add "
                             "--with-gradients")
    graph = load_spec(args)
    check_writable(args.output)
    params, scaling = None, None
    if args.params is not None:
        from engine.io.trained import load_trained

        trained = load_trained(args.params, graph)
        params, scaling = trained.params, trained.scaling
    from engine.onnx.export import export

    made = export(graph, opset=args.opset, params=params, scaling=scaling,
                  with_gradients=args.with_gradients, wrt=args.wrt, of=args.of)
    data = made.model.SerializeToString()
    write_atomically(args.output, lambda handle: handle.write(data))
    body = made.model.graph
    inputs = ", ".join(f"{v.name} {format_shape(_dims(v))}" for v in body.input) or "none"
    print(f"wrote {args.output}: opset {made.opset}, {len(body.node)} nodes; inputs {inputs}; "
          f"outputs {', '.join(made.outputs)}", file=sys.stderr)
    return 0


def _dims(value: Any) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
