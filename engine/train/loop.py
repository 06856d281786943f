"""The training loop: epochs of shuffled mini-batches, an evaluation and a checkpoint per epoch.

Determinism is by construction: the parameters' init, the split and the batch
order each draw from their own stream of the run's seed, and the batch-order
generator's state is saved in every checkpoint, so a resumed run makes exactly
the same batches, and so the same parameters bit for bit, as an uninterrupted one.

Stopping is cooperative: ``stop()`` is asked after every batch, and a stop
abandons the unfinished epoch, so the last checkpoint (and the summary) hold
the last complete epoch, never a half-trained one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.errors import DataError
from engine.graph.model import Graph
from engine.runtime.executor import Executor
from engine.runtime.feeds import tensor_rng
from engine.train.checkpoint import Checkpoint, save_checkpoint
from engine.train.data import Arrays, Dataset, classifier_ends
from engine.train.optimizers import make_optimizer
from schemas.train import TrainConfig

HISTORY_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


class Progress(Protocol):
    """What the loop reports as it goes (a progress bar, or nothing)."""

    def batch(self, epoch: int, done: int, total: int, running_loss: float) -> None: ...

    def epoch(self, epoch: int, metrics: dict[str, float | None]) -> None: ...


class NoProgress:
    """Reports nothing: output that is not a terminal gets only the summary."""

    def batch(self, epoch: int, done: int, total: int, running_loss: float) -> None:
        pass

    def epoch(self, epoch: int, metrics: dict[str, float | None]) -> None:
        pass


@dataclass
class Outcome:
    """How a run ended: the epochs done, per-epoch metrics, whether it was stopped."""

    epochs: int
    history: dict[str, list[float | None]]
    interrupted: bool = False
    seconds: float = 0.0
    saved: bool = False

    def last(self, key: str) -> float | None:
        values = self.history.get(key, [])
        return values[-1] if values else None


def batches(rows: int, batch_size: int, order: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive slices of ``order``: every row once per epoch, the last batch maybe smaller."""
    for start in range(0, rows, batch_size):
        yield order[start:start + batch_size]


@dataclass
class Trainer:
    """One training run of ``graph`` on ``dataset`` as ``config`` says."""

    graph: Graph
    config: TrainConfig
    dataset: Dataset
    seed: int
    save: Path | None = None
    history: dict[str, list[float | None]] = field(
        default_factory=lambda: {key: [] for key in HISTORY_KEYS})
    epoch: int = 0

    def __post_init__(self) -> None:
        self.executor = Executor(self.graph, seed=self.seed)
        self.params = self.executor.parameters
        self.optimizer = make_optimizer(self.config.optimizer, self.config.lr, self.params)
        self.rng = tensor_rng(self.seed, "train/order")
        self.classifier = classifier_ends(self.graph)

    def resume(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: parameters, optimizer state, RNG state, history."""
        _same_data(checkpoint.data, self.dataset.fingerprint)
        for name, array in checkpoint.params.items():
            np.copyto(self.params[name], array, casting="same_kind")  # a view the optimizer packs
        try:
            self.optimizer.load_state(checkpoint.optimizer_state)
        except ValueError as exc:
            raise DataError(f"the checkpoint's optimizer state does not fit: {exc}") from None
        self.rng.bit_generator.state = checkpoint.rng_state
        self.epoch = checkpoint.epoch
        self.history = {key: list(checkpoint.history.get(key, [])) for key in HISTORY_KEYS}

    def run(self, progress: Progress, stop: Callable[[], bool] = lambda: False) -> Outcome:
        """Train up to ``config.epochs`` in all; ``stop()`` is asked after every batch."""
        started = time.perf_counter()
        interrupted = saved = False
        while self.epoch < self.config.epochs:
            with np.errstate(all="ignore"):  # a diverging loss is reported below, not warned
                completed = self.train_epoch(progress, stop)
            if not completed:
                interrupted = True
                break
            self.epoch += 1
            with np.errstate(all="ignore"):
                metrics = self.evaluate()
            for key in HISTORY_KEYS:
                self.history[key].append(metrics[key])
            if self.save is not None:
                save_checkpoint(self.save, self.checkpoint())
                saved = True
            progress.epoch(self.epoch, metrics)
            if stop():
                interrupted = self.epoch < self.config.epochs
                break
        return Outcome(self.epoch, self.history, interrupted, time.perf_counter() - started,
                       saved)

    def train_epoch(self, progress: Progress, stop: Callable[[], bool]) -> bool:
        """One pass over the training rows; False when stopped before its end."""
        train, rows = self.dataset.train, self.dataset.n_train
        order = self.rng.permutation(rows) if self.config.shuffle else np.arange(rows)
        total = -(-rows // self.config.batch_size)
        loss_sum, seen = 0.0, 0
        ex, step = self.executor, self.optimizer.step
        for done, index in enumerate(batches(rows, self.config.batch_size, order), start=1):
            ex.forward({name: array[index] for name, array in train.items()})
            loss = ex.loss
            assert loss is not None
            if not math.isfinite(loss):
                raise DataError(f"the loss became {loss} in epoch {self.epoch + 1}, batch "
                                f"{done}: training diverged; lower the learning rate (--lr, now "
                                f"{self.config.lr:g}) or standardise the features")
            step(ex.backward())
            loss_sum += loss * len(index)
            seen += len(index)
            progress.batch(self.epoch + 1, done, total, loss_sum / seen)
            if stop():
                return done == total
        return True

    def evaluate(self) -> dict[str, float | None]:
        """Loss (and accuracy, for a classifier) over the whole training and validation splits."""
        metrics: dict[str, float | None] = {}
        for part, feeds in (("train", self.dataset.train), ("val", self.dataset.val)):
            loss, accuracy = self._measure(feeds) if self._rows(feeds) else (None, None)
            metrics[f"{part}_loss"] = loss
            metrics[f"{part}_accuracy"] = accuracy
        return metrics

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(dict(self.params), self.optimizer.name, dict(self.optimizer.state),
                          self.rng.bit_generator.state, self.epoch, self.seed, self.history,
                          self.dataset.stats, self.dataset.fingerprint)

    @staticmethod
    def _rows(feeds: Arrays) -> int:
        return len(next(iter(feeds.values()))) if feeds else 0

    def _measure(self, feeds: Arrays) -> tuple[float, float | None]:
        ex = self.executor
        ex.forward(feeds)
        loss = ex.loss
        assert loss is not None
        if self.classifier is None:
            return loss, None
        probs_name, target_name = self.classifier
        predicted = np.argmax(np.asarray(ex.value(probs_name)), axis=-1)
        target = np.asarray(ex.value(target_name))
        labels = np.argmax(target, axis=-1) if target.ndim == predicted.ndim + 1 else target
        # counted, not np.mean: its Python-level body costs more than these few rows do
        hits = np.count_nonzero(predicted == labels)
        return loss, hits / predicted.size if predicted.size else None


def _same_data(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """A checkpoint continues only on the data it was trained on (older ones record none):
    otherwise its history would be shown beside another dataset's row counts."""
    if saved and saved.get("sha256") != now["sha256"]:
        raise DataError(f"it was trained on other data ({saved.get('train_rows')} training and "
                        f"{saved.get('val_rows')} validation rows), but this run's data and "
                        f"split give {now['train_rows']} and {now['val_rows']} rows"
                        f"{' with other values' if _rows(saved) == _rows(now) else ''}; resume "
                        "with the data and --val-split it was trained with, or train afresh "
                        "without --resume")


def _rows(fingerprint: dict[str, Any]) -> tuple[Any, Any]:
    return fingerprint.get("train_rows"), fingerprint.get("val_rows")
