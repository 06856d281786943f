"""``engine eval SPEC --params P.npz --data FILE``: loss and metrics of trained parameters on a
labelled file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli.commands.common import (
    add_backend_options,
    add_load_options,
    backend_from_args,
    load_spec,
    print_json,
)
from engine.cli.diagnostics import count
from engine.errors import DataError
from engine.train.inference import trained_executor
from engine.train.metrics import measured

HELP = "measure trained parameters on a labelled data file: the loss and the metrics"

EPILOG = """\
examples:
  python -m engine train graphs/digits.yaml --save p.npz
  python -m engine eval graphs/digits.yaml --params p.npz --data graphs/data/digits_test.csv
  python -m engine eval graphs/regression.yaml --params r.npz --data rows.csv --json

The file's columns are mapped onto the inputs by the spec's train.inputs, as in training,
and standardised with the statistics the checkpoint saved. Every input must come from the
file: nothing takes its init. The metrics are those of train.metrics (accuracy when the
loss is NLL). Exit codes: 0 done, 1 spec or data error, 2 usage error."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help=HELP, description=HELP + ".", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="the YAML graph spec, with a loss")
    add_load_options(parser)
    add_backend_options(parser)
    parser.add_argument("--params", type=Path, required=True, metavar="PARAMS.npz",
                        help="the parameters that engine train --save wrote")
    parser.add_argument("--data", type=Path, required=True, metavar="FILE",
                        help="a labelled .csv, .npy, .npz or .zarr data file, mapped like the "
                             "training data")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON document: {"loss", "rows", METRIC: ...}')


def run(args: argparse.Namespace) -> int:
    graph = load_spec(args)
    if graph.loss is None:
        raise DataError(f"{args.spec}: the spec declares no loss, so there is nothing to "
                        "evaluate; engine predict computes outputs without one")
    ends = measured(graph, graph.spec.train)
    names = [graph.loss] + ([ends.prediction] if ends is not None else [])
    backend = backend_from_args(args)
    executor, feeds = trained_executor(graph, names, args.params, args.data, "eval", backend)
    with np.errstate(all="ignore"):
        executor.forward(feeds)
        if ends is None:
            executor.compute({})  # the loss (on Dask, computed here)
        metrics = {} if ends is None else ends.of(executor)  # with the loss: on Dask one graph
        result: dict[str, float | None] = {"loss": executor.loss, **metrics}
    rows = len(next(iter(feeds.values())))
    if args.json:
        print_json({**result, "rows": rows})
        return 0
    print(f"{graph.spec.name} ({args.spec}) with {args.params}: {args.data}, "
          f"{count(rows, 'row')}")
    print("  ".join(f"accuracy {value:.3f} ({round(value * rows)}/{rows})" if name == "accuracy"
                    else f"{name} {value:.4f}"
                    for name, value in result.items() if value is not None))
    return 0
