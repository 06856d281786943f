"""Checkpoints: parameters, optimizer state, the batch-order RNG state and the history, in one .npz.

One file holds everything a resumed run needs to continue bit for bit.  It is
written with ``engine.io.arrays.save_npz`` (a temporary file renamed into
place), so a reader (or a run killed mid-save) finds the previous checkpoint
or the new one, never half of one.  Nothing is pickled: the RNG state and the
metadata are JSON text in 0-d string arrays.

Keys: ``params/NAME``, ``optimizer/KEY``, ``scale/INPUT/mean`` and
``scale/INPUT/std`` (the training split's statistics of standardised inputs),
``rng`` and ``meta``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DataError
from engine.graph.model import Graph
from engine.graph.shapes import format_shape
from engine.io.arrays import load_npz
from engine.io.atomic import save_npz
from engine.limits import DEFAULT_MAX_BYTES
from schemas.train import OPTIMIZERS

FORMAT = "engine-train-checkpoint/1"


@dataclass
class Checkpoint:
    """The state of a training run at the end of an epoch."""

    params: dict[str, np.ndarray]
    optimizer: str
    optimizer_state: dict[str, np.ndarray]
    rng_state: dict[str, Any]
    epoch: int
    seed: int
    history: dict[str, list[float | None]] = field(default_factory=dict)
    #: Per standardised input: (mean, std) of the training split.
    scaling: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: ``Dataset.fingerprint()`` of the data trained on (empty in older checkpoints).
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trained:
    """What ``engine run --params`` needs: the parameters and how inputs were scaled."""

    params: dict[str, np.ndarray]
    scaling: dict[str, tuple[np.ndarray, np.ndarray]]

    def prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Standardise fed inputs as training did, so raw data can be fed to a trained graph."""
        return {name: (array - self.scaling[name][0]) / self.scaling[name][1]
                if name in self.scaling else array for name, array in feeds.items()}


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically."""
    arrays = {f"params/{k}": v for k, v in checkpoint.params.items()}
    arrays.update({f"optimizer/{k}": v for k, v in checkpoint.optimizer_state.items()})
    for name, (mean, std) in checkpoint.scaling.items():
        arrays[f"scale/{name}/mean"], arrays[f"scale/{name}/std"] = mean, std
    arrays["rng"] = np.array(json.dumps(checkpoint.rng_state))
    meta = {"format": FORMAT, "epoch": checkpoint.epoch, "seed": checkpoint.seed,
            "optimizer": checkpoint.optimizer, "history": checkpoint.history,
            "data": checkpoint.data}
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def best_path(path: Path) -> Path:
    """Where early stopping keeps the best epoch beside the last: ``p.npz`` -> ``p.best.npz``."""
    return path.with_name(path.stem + ".best" + path.suffix)


def load_checkpoint(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Checkpoint:
    """Read a checkpoint written by ``engine train --save``; ``max_bytes`` bounds its arrays.
    Every section is checked, so a damaged or hand-made file is a DataError that says which
    entry is wrong."""
    arrays = load_npz(path, max_bytes=max_bytes)
    if "meta" not in arrays or "rng" not in arrays:
        raise DataError(f"{path}: not a checkpoint of engine train (it has no 'meta' and 'rng' "
                        "entries); --resume takes a file that engine train --save wrote")
    try:
        meta = _json_entry(arrays, "meta")
        rng_state = _json_entry(arrays, "rng")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        epoch = _whole(meta, "epoch", 2**63 - 1)
        seed = _whole(meta, "seed", 2**64 - 1)
        optimizer = meta.get("optimizer")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r}, expected one of {', '.join(OPTIMIZERS)}")
        history = _history(meta.get("history"))
        data = meta.get("data", {})
        if not isinstance(data, dict):
            raise ValueError("data is not a mapping")
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise DataError(f"{path}: unreadable checkpoint metadata ({exc}); --resume takes a file "
                        "that engine train --save wrote") from None
    for key, array in arrays.items():
        if key not in ("meta", "rng") and array.dtype.kind not in "biuf":
            raise DataError(f"{path}: entry {key!r} holds {array.dtype}, not real numbers")
    return Checkpoint(_prefixed(arrays, "params/"), optimizer, _prefixed(arrays, "optimizer/"),
                      rng_state, epoch, seed, history, _scaling(path, arrays), data)


def _json_entry(arrays: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    array = arrays[key]
    if array.shape != () or array.dtype.kind != "U":
        raise ValueError(f"{key!r} is {array.dtype} {format_shape(array.shape)}, expected text")
    value = json.loads(str(array))
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} is not a JSON object")
    return value


def _whole(meta: dict[str, Any], key: str, largest: int) -> int:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
        raise ValueError(f"{key} is {value!r}, expected a whole number from 0 to {largest}")
    return value


def _history(history: Any) -> dict[str, list[float | None]]:
    if not isinstance(history, dict) or not all(
            isinstance(v, list) and all(x is None or (isinstance(x, int | float) and
                                                      not isinstance(x, bool)) for x in v)
            for v in history.values()):
        raise ValueError("history is not a mapping of metric names to lists of numbers")
    return history


def _scaling(path: Path, arrays: dict[str, np.ndarray]
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``scale/INPUT/mean`` and ``scale/INPUT/std``: both present, of one shape, real and
    finite, and std > 0, since inputs are divided by it (training never writes a 0: a
    constant column keeps std 1)."""
    scale = _prefixed(arrays, "scale/")
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
    params = _prefixed(arrays, "params/") or arrays
    fitted = fit_parameters(path, params, graph)
    scaling = _scaling(path, arrays)
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


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
