"""What every verb does the same way: load a spec and show its warnings, check an output
file's suffix, print one JSON document, write a spec (grad, optimize).

Kept in one place so that the verbs cannot drift apart: warnings look the same
whichever verb printed them, a wrong suffix is a usage error (exit 2) everywhere,
and every ``--json`` writes NaN and infinities the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.cli.diagnostics import report
from engine.errors import UsageError
from engine.graph.model import Graph
from engine.io.atomic import check_writable, write_atomically
from engine.limits import DEFAULT_MAX_BYTES, parse_bytes
from engine.runtime.backends import BACKENDS, Backend, get_backend
from engine.spec.loader import load


def load_spec(args: argparse.Namespace, *, strict: bool = False) -> Graph:
    """Load ``args.spec`` with the command's ``--import-path`` folders and ``--max-bytes``
    budget; print its warnings on stderr (``strict`` makes them errors instead)."""
    graph = load(args.spec, import_paths=args.import_path, strict=strict,
                 max_bytes=args.max_bytes)
    report(graph.warnings, "warning", sys.stderr, args.snippets)
    return graph


def load_for_spec(args: argparse.Namespace, verb: str) -> tuple[Graph, str, Path]:
    """For the verbs that write a spec (grad, optimize): ``-o``'s suffix and folder checked
    before any work, the spec loaded; with the command line that the written header records
    and the folder that the written init file paths are relative to."""
    if args.output is not None:
        require_suffix("-o", args.output, (".yaml", ".yml"))
    graph = load_spec(args)
    if args.output is not None:
        check_writable(args.output)
    command = shlex.join(["engine", verb, *sys.argv[2:]]) if sys.argv[1:2] == [verb] \
        else f"engine {verb} {args.spec}"
    return graph, command, args.output.parent if args.output is not None else Path.cwd()


def write_spec(output: Path | None, text: str) -> int:
    """A written spec to ``output`` (atomically), or to stdout where there is none."""
    if output is None:
        sys.stdout.write(text)
        return 0
    write_atomically(output, lambda handle: handle.write(text.encode()))
    print(f"wrote {output}", file=sys.stderr)
    return 0


def require_suffix(option: str, path: Path, suffixes: tuple[str, ...]) -> None:
    """A usage error unless ``path`` ends in one of ``suffixes`` (``.npz``)."""
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")


def print_json(document: Any) -> None:
    """Write ``document`` to stdout as one JSON document on one line."""
    json.dump(finite(document), sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


def finite(value: Any) -> Any:
    """JSON has no NaN or infinities: they become the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """``--import-path DIR`` and ``--max-bytes SIZE``, the same for every verb that loads a
    spec: where imports may read, and how much memory what the spec names may take."""
    parser.add_argument("--import-path", action="append", default=[], metavar="DIR",
                        type=_import_dir,
                        help="a folder that imports may also read from (besides the spec's "
                             "own folder); repeatable")
    parser.add_argument("--max-bytes", type=_bytes_argument, default=DEFAULT_MAX_BYTES,
                        metavar="SIZE",
                        help="refuse what would take more memory than SIZE: the graph's values "
                             "at their declared or fed shapes, a data file, the spec file "
                             "(default 4GiB; accepts 512MB, 2GiB, 1e9, ...)")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend NAME`` and ``--device DEVICE``: which array library runs the graph.

    The libraries other than NumPy are optional extras, imported only when chosen;
    results are printed and saved as NumPy arrays whichever ran them."""
    parser.add_argument("--backend", choices=tuple(BACKENDS), default="numpy",
                        help="the array library that runs the graph (default numpy); torch, "
                             'jax and dask are extras: pip install -e ".[torch]" and so on')
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="with --backend torch: the device, such as cpu, cuda or cuda:1 "
                             "(default: torch's, the CPU)")
    parser.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N",
                        help="with --backend dask: rows of each input per chunk (default: "
                             "about 64 MiB a chunk); forward and backward are one Dask graph, "
                             "computed once (by Dask's threaded scheduler unless --scheduler "
                             "or --workers is given)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="with --backend dask: compute on the running dask.distributed "
                             "scheduler at ADDRESS, such as tcp://10.0.0.5:8786 (what `dask "
                             "scheduler` prints)")
    parser.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help="with --backend dask: start a local cluster of N worker processes "
                             "on 127.0.0.1 for this command, and stop it at the end")
    parser.add_argument("--worker-memory", type=_bytes_argument, default=None, metavar="SIZE",
                        help="with --workers: the memory limit of each worker, such as 512MiB "
                             "(default: the machine's memory shared out); a worker near it "
                             "spills to disk, one over it is restarted")
    parser.add_argument("--cluster-timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help="how long to wait for the scheduler, its first worker, or the "
                             "local cluster to start, and how long a --scheduler cluster may "
                             f"have no worker before the run stops (default {DEFAULT_TIMEOUT:g})")


#: Seconds ``--cluster-timeout`` waits by default for a scheduler, a worker, a local cluster.
DEFAULT_TIMEOUT = 10.0


@contextmanager
def backend_session(args: argparse.Namespace) -> Iterator[None]:
    """Around a verb with ``add_backend_options``: where Dask computes.  With ``--scheduler``
    or ``--workers`` a dask.distributed client is made (``engine.runtime.cluster``, imported
    only then) and closed at the end; otherwise nothing happens."""
    if all(getattr(args, option, None) is None
           for option in ("scheduler", "workers", "worker_memory")):
        yield
        return
    from engine.runtime.cluster import ClusterOptions, session

    with session(ClusterOptions.from_args(args)):
        yield


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend that ``add_backend_options``'s options choose: every verb that runs the
    graph makes it here, so that they all take the same options the same way."""
    return get_backend(args.backend, args.device, args.chunk_rows)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {text}")
    return value


def _bytes_argument(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _import_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return path


def seed_argument(text: str) -> int:
    """``--seed N``: a whole number from 0 to 2^64 - 1, as a spec's ``seed`` (else exit 2)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None
    if not 0 <= seed < 2**64:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2^64 - 1, found "
                                         f"{text}")
    return seed
