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
from engine.graph.shapes import format_shape
from engine.io.arrays import load_npz
from engine.io.atomic import save_npz
from engine.io.trained import prefixed, read_scaling
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
        if data.get("read") not in (None, "lazily"):  # what Dataset.fingerprint records
            raise ValueError(f"data read {data['read']!r}, expected 'lazily' or none")
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise DataError(f"{path}: unreadable checkpoint metadata ({exc}); --resume takes a file "
                        "that engine train --save wrote") from None
    for key, array in arrays.items():
        if key not in ("meta", "rng") and array.dtype.kind not in "biuf":
            raise DataError(f"{path}: entry {key!r} holds {array.dtype}, not real numbers")
    return Checkpoint(prefixed(arrays, "params/"), optimizer, prefixed(arrays, "optimizer/"),
                      rng_state, epoch, seed, history, read_scaling(path, arrays), data)


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
