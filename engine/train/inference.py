"""Feeding a trained graph from a data file, for ``engine eval`` and ``engine predict``.

The file is mapped onto the graph's inputs by the spec's ``train.inputs``, as
training mapped its data (an .npz file whose arrays are named after the inputs
also works, with or without a ``train:`` section), and the checkpoint's saved
standardisation is applied.  Nothing is defaulted: every input the requested
nodes depend on must come from the file, or it is an error that names it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import DataError
from engine.graph.model import Graph
from engine.graph.subgraph import inputs_of, needed_by
from engine.io.arrays import require_file
from engine.io.trained import Trained, load_trained
from engine.runtime.backends import Backend
from engine.runtime.executor import Executor
from engine.train.data import Arrays, read_inputs
from engine.train.sources import NamedArrays, open_source


def trained_executor(graph: Graph, names: list[str], params: Path, file: Path,
                     verb: str, backend: Backend | None = None) -> tuple[Executor, Arrays]:
    """An executor of only what ``names`` need, holding the checkpoint's parameters, and its
    feeds read from ``file``: what eval and predict share, so they cannot drift apart.
    ``backend`` is the array library it runs on (None: NumPy); read its results with
    ``executor.compute``, which brings them back as NumPy."""
    trained = load_trained(params, graph)
    needed = needed_by(graph, names)
    feeds = read_feeds(graph, needed, trained, file, verb, backend)
    executor = Executor(needed, strict_feeds=True, backend=backend)  # read_feeds gave every input
    executor.parameters.update({k: v for k, v in trained.params.items()
                                if k in executor.parameters})
    return executor, feeds


def read_feeds(graph: Graph, needed: Graph, trained: Trained, file: Path, verb: str,
               backend: Backend | None = None) -> Arrays:
    """Every input of ``needed`` (a part of ``graph``) from ``file``, standardised as in
    training; ``verb`` (``eval``, ``predict``) words the errors.  On ``backend`` Dask a
    .npy or .zarr file is read chunk by chunk (engine.train.sources)."""
    require_file(file, "--data")
    names = inputs_of(needed)
    config = graph.spec.train
    if config is not None and config.inputs:
        unmapped = [name for name in names if name not in config.inputs]
        if unmapped:
            raise DataError(_missing(verb, needed, unmapped, "train.inputs maps no data to "
                                     f"{'it' if len(unmapped) == 1 else 'them'}"))
        arrays = read_inputs(graph, config, file, names, backend)
    elif file.suffix.lower() in (".npz", ".zarr"):
        source = open_source(file, graph.max_bytes, backend)
        assert isinstance(source, NamedArrays)
        stored = source.arrays
        unmapped = [name for name in names if name not in stored]
        if unmapped:
            raise DataError(_missing(verb, needed, unmapped, f"{file} has no array of that "
                                     f"name (its arrays: {', '.join(stored) or 'none'})"))
        arrays = {name: stored[name] for name in names}
        rows = {len(np.atleast_1d(a)) for a in arrays.values()}
        if len(rows) > 1:
            raise DataError(f"{file}: the arrays of {', '.join(names)} have different numbers "
                            "of rows")
    else:
        raise DataError(f"{file}: {verb} maps a table's columns onto the inputs with the "
                        "spec's train.inputs, and this spec has none; add a train: section "
                        "with inputs:, or give an .npz file or .zarr store whose arrays are "
                        f"named after the inputs ({', '.join(names)})")
    return trained.prepare(arrays)


def _missing(verb: str, needed: Graph, names: list[str], why: str) -> str:
    targets = ", ".join(repr(n) for n in needed.outputs)
    what = f"input{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
    return f"{verb} needs {what} ({targets} depend{'s' if len(needed.outputs) == 1 else ''} on " \
           f"{'it' if len(names) == 1 else 'them'}), but {why}; nothing is defaulted here"
