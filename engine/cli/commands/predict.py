"""``engine predict SPEC --params P.npz --data FILE``: the outputs of trained parameters on new
rows, which need only the inputs those outputs depend on (no labels)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli.commands.common import (
    add_backend_options,
    add_load_options,
    backend_from_args,
    load_spec,
    require_suffix,
)
from engine.errors import DataError, UsageError, did_you_mean
from engine.graph.model import Graph
from engine.io.atomic import check_writable, write_atomically
from engine.train.inference import trained_executor
from engine.train.metrics import measured

HELP = "compute outputs of trained parameters on new data, which needs no labels"

EPILOG = """\
examples:
  python -m engine predict graphs/digits.yaml --params p.npz --data new.csv -o probs.csv
  python -m engine predict graphs/regression.yaml --params r.npz --data x.csv --output pred -o p.npy

Only the inputs that the requested outputs depend on are read (the labels that only the
loss reads are not), mapped by the spec's train.inputs and standardised as in training;
each must come from the file. The default output is the train.metrics prediction (the NLL's
probabilities for a classifier), else the spec's outputs other than the loss. The result
is one row per data row: a CSV (one column per value, NODE or NODE_I for wider outputs) on
stdout or in -o OUT.csv, or an array in -o OUT.npy (one output) or OUT.npz (several),
written atomically. Exit codes: 0 done, 1 spec or data error, 2 usage error."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict", help=HELP, description=HELP + ".", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    add_load_options(parser)
    add_backend_options(parser)
    parser.add_argument("--params", type=Path, required=True, metavar="PARAMS.npz",
                        help="the parameters that engine train --save wrote")
    parser.add_argument("--data", type=Path, required=True, metavar="FILE",
                        help="a .csv, .npy, .npz or .zarr data file of the inputs, mapped like "
                             "the training data")
    parser.add_argument("--output", action="append", default=[], metavar="NODE",
                        help="a node to compute (default: the prediction); repeatable")
    parser.add_argument("-o", dest="out", type=Path, metavar="OUT",
                        help="write to OUT.csv, OUT.npy or OUT.npz instead of printing a CSV")


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        require_suffix("-o", args.out, (".csv", ".npy", ".npz"))
    graph = load_spec(args)
    names = _outputs(graph, args.output)
    if args.out is not None:
        if args.out.suffix.lower() == ".npy" and len(names) > 1:
            raise UsageError(f"-o {args.out}: a .npy file holds one array, and {len(names)} "
                             "outputs were asked for; write .npz or .csv")
        check_writable(args.out)
    backend = backend_from_args(args)
    executor, feeds = trained_executor(graph, names, args.params, args.data, "predict", backend)
    with np.errstate(all="ignore"):
        (outputs,) = executor.compute(executor.forward(feeds))
    suffix = args.out.suffix.lower() if args.out is not None else ".csv"
    if suffix == ".csv":
        text = _csv(outputs, len(next(iter(feeds.values()))))
        if args.out is None:
            sys.stdout.write(text)
        else:
            write_atomically(args.out, lambda handle: handle.write(text.encode()))
    else:
        buffer = io.BytesIO()
        if suffix == ".npy":
            np.save(buffer, next(iter(outputs.values())))
        else:
            np.savez(buffer, **outputs)
        write_atomically(args.out, lambda handle: handle.write(buffer.getvalue()))
    if args.out is not None:
        print(f"wrote {', '.join(names)} for {len(next(iter(feeds.values())))} rows to {args.out}",
              file=sys.stderr)
    return 0


def _outputs(graph: Graph, asked: list[str]) -> list[str]:
    """The nodes to compute: those asked for (each once), or the default prediction."""
    for name in asked:
        if name not in graph.values or graph.values[name].kind != "node":
            raise UsageError(f"--output {name}: not a node of {graph.file}"
                             f"{did_you_mean(name, graph.nodes)}")
    if asked:
        return list(dict.fromkeys(asked))
    ends = measured(graph, graph.spec.train)
    if ends is not None:
        return [ends.prediction]
    names = [name for name in graph.outputs if name != graph.loss]
    if not names:
        raise UsageError(f"{graph.file}: no output to predict besides the loss; name one "
                         "with --output NODE")
    return names


def _csv(outputs: dict[str, np.ndarray], rows: int) -> str:
    """One line per data row; each output's values after the row axis flattened into columns."""
    columns, header = [], []
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise DataError(f"output {name!r} has shape {list(array.shape)}, not one row per "
                            f"data row ({rows}); write it to an .npy or .npz file")
        flat = array.reshape(rows, -1)
        columns.append(flat)
        header += [name] if flat.shape[1] == 1 else [f"{name}_{i}" for i in range(flat.shape[1])]
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in zip(*columns, strict=True):
        out.write(",".join(_cell(value) for part in row for value in part) + "\n")
    return out.getvalue()


def _cell(value: Any) -> str:
    """Shortest text that reads back to the same number (repr of a Python float or int)."""
    return repr(value.item())
