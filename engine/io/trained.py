"""Trained parameters read back for running a graph: checked against its declarations.

``engine run --params``, ``Executor.load_params``, ``engine eval``/``predict`` and a
resumed ``engine train`` all read parameters (and the standardisation statistics of
inputs) from an .npz that ``engine train --save`` wrote, or from one whose arrays are
named after the parameters.  This lives below both the runtime and training, so the
executor can read a checkpoint without depending on the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import DataError
from engine.graph.model import Graph
from engine.graph.shapes import format_shape
from engine.io.arrays import load_npz


@dataclass
class Trained:
    """What ``engine run --params`` needs: the parameters and how inputs were scaled."""

    params: dict[str, np.ndarray]
    scaling: dict[str, tuple[np.ndarray, np.ndarray]]

    def prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Standardise fed inputs as training did, so raw data can be fed to a trained graph."""
        return {name: (array - self.scaling[name][0]) / self.scaling[name][1]
                if name in self.scaling else array for name, array in feeds.items()}



def read_scaling(path: Path, arrays: dict[str, np.ndarray]
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``scale/INPUT/mean`` and ``scale/INPUT/std``: both present, of one shape, real and
    finite, and std > 0, since inputs are divided by it (training never writes a 0: a
    constant column keeps std 1)."""
    scale = prefixed(arrays, "scale/")
    result = {}
    for name in sorted({key.rsplit("/", 1)[0] for key in scale}):
        parts = [scale.get(f"{name}/{part}") for part in ("mean", "std")]
        for part, array in zip(("mean", "std"), parts, strict=True):
            if array is None:
                raise DataError(f"{path}: has no 'scale/{name}/{part}' beside the other "
                                "standardisation entry of that input")
            bad = _first_bad(array, part == "std")
            if bad:
                want = "positive finite numbers" if part == "std" else "finite real numbers"
                raise DataError(f"{path}: scale/{name}/{part} holds {bad}; a checkpoint's "
                                f"standardisation {part} must be {want} (--params takes a file "
                                "that engine train --save wrote)")
        mean, std = parts
        if mean.shape != std.shape:
            raise DataError(f"{path}: 'scale/{name}/mean' is {format_shape(mean.shape)} but "
                            f"'scale/{name}/std' is {format_shape(std.shape)}")
        result[name] = (mean, std)
    return result


def check_scaling(path: Path, scaling: dict[str, tuple[np.ndarray, np.ndarray]],
                  graph: Graph) -> None:
    """Each standardised input is one of the graph's float inputs, and its statistics have
    one number per feature: the input's declared shape without its batch axis."""
    for name, (mean, _) in scaling.items():
        value = graph.values.get(name)
        if value is None or value.kind != "input":
            raise DataError(f"{path}: holds standardisation statistics for {name!r}, which is "
                            "not an input of the graph")
        features = graph.dims.shape(value.shape)[1:]
        if any(isinstance(d, str) for d in features) or mean.shape != tuple(features):
            raise DataError(f"{path}: 'scale/{name}/mean' is {format_shape(mean.shape)}, but "
                            f"input {name!r} is declared {format_shape(value.shape)} "
                            f"({graph.where(name)}): expected one number per feature, "
                            f"{format_shape(features)}")


def _first_bad(array: np.ndarray, positive: bool) -> str:
    """What makes a scale array unusable (its dtype, or its first bad number), or ''."""
    if array.dtype.kind not in "fiu":
        return f"{array.dtype}, not real numbers"
    flat = array.reshape(-1)
    bad = ~np.isfinite(flat) | (flat <= 0) if positive else ~np.isfinite(flat)
    if not bad.any():
        return ""
    index = int(np.argmax(bad))
    return f"{float(flat[index])} at index {index}"


def load_trained(path: Path, graph: Graph) -> Trained:
    """The parameters saved in ``path``, checked against the graph's declarations.

    Takes a training checkpoint (``params/NAME``) or an .npz whose arrays are
    named after the parameters.
    """
    arrays = load_npz(path, max_bytes=graph.max_bytes)
    params = prefixed(arrays, "params/") or arrays
    fitted = fit_parameters(path, params, graph)
    scaling = read_scaling(path, arrays)
    check_scaling(path, scaling, graph)
    return Trained(fitted, scaling)


def fit_parameters(path: Path, params: dict[str, np.ndarray],
                   graph: Graph) -> dict[str, np.ndarray]:
    """``params`` (read from ``path``) checked against the graph's parameters: the same
    names, shapes and a dtype that converts safely; returned in the declared dtypes."""
    declared = {n: v for n, v in graph.values.items() if v.kind == "parameter"}
    missing = sorted(set(declared) - set(params))
    unknown = sorted(set(params) - set(declared))
    if missing or unknown:
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + \
                ([f"has {', '.join(unknown)}, which the graph does not declare"]
                 if unknown else [])
        raise DataError(f"{path}: does not fit {graph.file}: it {' and '.join(parts)} (its "
                        f"parameters: {', '.join(sorted(declared)) or 'none'})")
    for name, value in declared.items():
        shape = graph.dims.shape(value.shape)
        if tuple(params[name].shape) != shape:
            raise DataError(f"{path}: parameter {name!r} has shape "
                            f"{format_shape(params[name].shape)}, but {graph.where(name)} "
                            f"declares {format_shape(shape)}")
        if not np.can_cast(params[name].dtype, value.dtype, casting="same_kind"):
            raise DataError(f"{path}: parameter {name!r} holds {params[name].dtype}, which does "
                            f"not convert safely to its declared {value.dtype}")
    return {name: params[name].astype(declared[name].dtype) for name in declared}


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
