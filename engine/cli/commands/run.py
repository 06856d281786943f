"""``engine run SPEC``: forward and backward with the spec's defaults (or fed data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from engine.cli.commands.common import (
    add_backend_options,
    add_load_options,
    backend_from_args,
    load_spec,
    print_json,
    require_suffix,
    seed_argument,
)
from engine.errors import DataError, UsageError
from engine.graph.model import Graph
from engine.graph.shapes import format_shape
from engine.io.arrays import load_array
from engine.io.atomic import check_writable, save_npz
from engine.io.lazy import NpyRows, lazy_npy
from engine.io.trained import load_trained
from engine.runtime.backends import Backend
from engine.runtime.executor import Executor
from engine.runtime.feeds import bind_feeds, is_lazy

HELP = "run forward and backward, print outputs, loss and gradients"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run", help=HELP, description=HELP + ". Inputs that are not fed use their init.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m engine run graphs/softmax.yaml --feed x=x.npy --json")
    parser.add_argument("spec", type=Path, help="the YAML graph spec")
    parser.add_argument("--feed", action="append", default=[], metavar="NAME=FILE",
                        type=_feed_argument,
                        help="feed input NAME from FILE (.npy, .npz or .csv); repeatable")
    add_load_options(parser)
    parser.add_argument("--seed", type=seed_argument, default=None,
                        help="seed for default values (overrides the spec's seed)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON document: {"outputs", "loss", "grads"}')
    parser.add_argument("--trace", action="store_true",
                        help="also print one row per node: op, shape, dtype, min/max/mean of its "
                             "value and gradient, and time spent forward and backward")
    parser.add_argument("--check-finite", action="store_true",
                        help="stop at the first node whose value or gradient holds NaN or inf, "
                             "and say where it is, what its inputs were, and whether it overflowed")
    parser.add_argument("--params", type=Path, metavar="PARAMS.npz",
                        help="use the parameters that engine train --save wrote instead of "
                             "their init; fed inputs are standardised as in training")
    parser.add_argument("--save", type=Path, metavar="FILE.npz",
                        help="write outputs and gradients to FILE.npz (keys outputs/NAME and "
                             "grads/NAME), atomically")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    add_backend_options(parser)


def _feed_argument(text: str) -> tuple[str, Path]:
    name, sep, file = text.partition("=")
    if not sep or not name or not file:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, Path(file)


def run(args: argparse.Namespace) -> int:
    if args.save is not None:
        require_suffix("--save", args.save, (".npz",))
    names = [name for name, _ in args.feed]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"--feed {', '.join(twice)}: fed more than once; give each input one "
                         "--feed NAME=FILE")
    graph = load_spec(args, strict=args.strict)
    if args.save is not None:
        check_writable(args.save)
    backend = backend_from_args(args)
    feeds = {name: _read_feed(graph, name, file, backend) for name, file in args.feed}
    executor = Executor(graph, seed=args.seed, check_finite=args.check_finite, trace=args.trace,
                        backend=backend)
    if args.params is not None:
        trained = load_trained(args.params, graph)
        executor.parameters.update(trained.params)
        feeds = trained.prepare(feeds)
    with np.errstate(all="ignore"):  # NaN and inf are reported once, below, with what to do
        # with a loss, forward and backward together: on jax one compiled call
        outputs, grads = executor.forward_backward(feeds) if graph.loss is not None \
            else (executor.forward(feeds), {})
        outputs_np, grads_np = executor.compute(outputs, grads)  # Dask: one graph, run once
    _note_defaulted(executor.defaulted)
    _warn_non_finite(executor.loss, outputs_np, grads_np)
    if args.save is not None:
        save_npz(args.save, {**{f"outputs/{k}": v for k, v in outputs_np.items()},
                             **{f"grads/{k}": v for k, v in grads_np.items()}})
    if args.json:
        document: dict[str, Any] = {
            "outputs": {k: v.tolist() for k, v in outputs_np.items()},
            "loss": executor.loss,
            "grads": {k: v.tolist() for k, v in grads_np.items()},
        }
        if executor.trace is not None:
            document["trace"] = executor.trace.as_json()
        print_json(document)
    else:
        _print_report(graph.spec.name, str(args.spec), executor, outputs_np, grads_np, sys.stdout)
        if executor.trace is not None:
            sys.stdout.write("\ntrace (one row per node, times in milliseconds)\n")
            sys.stdout.write(executor.trace.table())
    if args.save is not None and not args.json:
        print(f"saved outputs and gradients to {args.save}")
    return 0


def _read_feed(graph: Graph, name: str, file: Path, backend: Backend | None = None) -> Any:
    """The array ``--feed NAME=FILE`` gives, checked against the input on its own first, so
    that a wrong name, dtype or shape is reported with the file it came from.  On Dask a
    .npy file is opened memory-mapped and read chunk by chunk inside the task graph
    (gradcheck passes no backend: its feeds are read whole)."""
    if backend is not None and backend.name == "dask" and file.suffix.lower() == ".npy":
        array = lazy_npy(file, backend.rows_per_chunk(NpyRows.open(file)))
    else:
        array = load_array(file, key=name, max_bytes=graph.max_bytes)
    value = graph.values.get(name)
    if file.suffix.lower() == ".csv" and array.ndim == 2 and array.shape[1] == 1 \
            and value is not None and len(value.shape) == 1:
        array = array[:, 0]  # one CSV column feeds a [batch] input (labels, say)
    origin = f"--feed {name}={file}"
    try:
        checked, _ = bind_feeds(graph, {name: array}, origin)
    except DataError as exc:
        raise DataError(f"{origin}: {exc}") from None
    return checked[name] if is_lazy(array) else array  # lazy: its labels checked as read


def _note_defaulted(names: tuple[str, ...]) -> None:
    """One line on stderr naming the inputs that took their init because nothing fed them:
    the run's numbers then come from made-up data (random labels, say), which must not
    pass unnoticed."""
    if names:
        many = len(names) > 1
        print(f"note: input{'s' if many else ''} {', '.join(names)} took "
              f"{'their' if many else 'its'} init because nothing was fed (feed "
              f"{'them' if many else 'it'} with --feed NAME=FILE)", file=sys.stderr)


def _warn_non_finite(loss: float | None, outputs: dict[str, np.ndarray],
                     grads: dict[str, np.ndarray]) -> None:
    """One warning, in the engine's form, instead of NumPy's RuntimeWarnings that point into
    the ops' source: which results hold NaN or inf, and how to find where they began."""
    bad = ["the loss"] if loss is not None and not np.isfinite(loss) else []
    bad += [f"{kind} {name!r}" for kind, arrays in (("output", outputs), ("gradient", grads))
            for name, array in arrays.items()
            if array.dtype.kind in "fc" and not np.isfinite(array).all()]
    if bad:
        print(f"warning: NaN or inf in {', '.join(bad)}; run again with --check-finite to stop "
              "at the first node that makes one", file=sys.stderr)


def _print_report(name: str, file: str, executor: Executor, outputs: dict[str, np.ndarray],
                  grads: dict[str, np.ndarray], out: IO[str]) -> None:
    graph = executor.graph
    out.write(f"{name} ({file}, seed {executor.seed})\n")
    if not graph.nodes and graph.spec.functions:
        out.write(f"\nno nodes: a library of functions ({', '.join(graph.spec.functions)}); "
                  "import it from a spec with imports: {alias: FILE}\n")
    if outputs:
        out.write("\noutputs\n")
        for key, array in outputs.items():
            _print_array(key, graph.values[key].dtype, array, out)
    if executor.loss is not None:
        out.write(f"\nloss ({graph.loss}) = {executor.loss!r}\n")
    if grads:
        out.write("\ngradients (d loss / d tensor)\n")
        for key, array in grads.items():
            _print_array(key, graph.values[key].dtype, array, out)
    elif graph.loss is not None:
        out.write("\nno tensor requires grad: set requires_grad: true on an input, or declare "
                  "parameters\n")


def _print_array(key: str, dtype: str, array: np.ndarray, out: IO[str]) -> None:
    out.write(f"  {key}  {format_shape(array.shape)} {dtype}\n")
    text = np.array2string(array, precision=6, max_line_width=96, threshold=200)
    out.write("".join(f"    {line}\n" for line in text.splitlines()))
