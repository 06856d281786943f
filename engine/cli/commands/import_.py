"""``engine import MODEL.onnx -o SPEC.yaml``: an ONNX model as a spec, its weights in an .npz."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.commands.common import require_suffix
from engine.io.atomic import check_writable

NAME = "import"
HELP = "translate an ONNX model into a spec (its initializers into an .npz beside it)"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME, help=HELP,
        description=HELP + ". Names are kept where a spec allows them and renamed where not "
        "(the header comment lists the renames). An op the engine cannot compute as ONNX "
        "defines it is an error naming the node, its op and the opset. Needs the onnx extra: "
        'pip install -e ".[onnx]".',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m engine import model.onnx -o model.yaml && "
               "python -m engine run model.yaml")
    parser.add_argument("model", type=Path, help="the ONNX model file")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="SPEC.yaml",
                        help="the spec to write; the parameters go to SPEC.npz beside it")


def run(args: argparse.Namespace) -> int:
    from engine.onnx.importer import import_model, load_model, verify, write

    require_suffix("-o", args.output, (".yaml", ".yml"))
    npz = args.output.with_suffix(".npz")
    check_writable(args.output)
    model = load_model(args.model)
    imported = import_model(model, source=str(args.model), npz=npz.name)
    verify(imported, model, str(args.model))
    write(imported, args.output, npz)
    wrote = f"wrote {args.output}" + (f" and {npz}" if imported.arrays else "")
    renamed = f"; {len(imported.renamed)} names renamed (listed at its top)" \
        if imported.renamed else ""
    print(wrote + renamed, file=sys.stderr)
    return 0
