"""The training loop: epochs of shuffled mini-batches, an evaluation and a checkpoint per epoch.

Determinism is by construction: the parameters' init, the split and the batch
order each draw from their own stream of the run's seed, and the batch-order
generator's state is saved in every checkpoint, so a resumed run makes exactly
the same batches, and so the same parameters bit for bit, as an uninterrupted one.

Stopping is cooperative: ``stop()`` is asked after every batch, and a stop
abandons the unfinished epoch, so the last checkpoint (and the summary) hold
the last complete epoch, never a half-trained one.

Backends: the steps may run on another array library (``backend``, made by
``engine.runtime.backends.get_backend``).  The parameters and the optimizer's
state stay small NumPy arrays, updated in place by the same optimizers; each
step sends the parameters, runs forward and backward there, and brings the loss
and gradients back as NumPy in one compute (on Dask one task graph, computed
once, whose reductions sum the gradients across the chunks of rows; on JAX one
call of the step compiled with jax.jit, ``Executor.forward_backward``).

Early stopping watches a validation metric after every epoch; the best epoch's
parameters are kept (in memory, and with ``save`` in ``NAME.best.npz`` beside
the last checkpoint), and the test rows are measured with them.  The best epoch
is found again from the history on resume, so no extra state is saved.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.errors import DataError, SpecError
from engine.graph.model import Graph
from engine.runtime.backends import Backend, to_numpy
from engine.runtime.executor import Executor
from engine.runtime.feeds import tensor_rng
from engine.train.checkpoint import Checkpoint, best_path, save_checkpoint
from engine.train.data import Arrays, Dataset
from engine.train.metrics import Measured, measured
from engine.train.optimizers import make_optimizer
from engine.train.schedule import learning_rate
from schemas.train import LOWER_IS_BETTER, TrainConfig

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
    #: Loss and metrics on the test rows (``test_loss``, ``test_accuracy``, ...), if any.
    test: dict[str, float | None] = field(default_factory=dict)
    #: The epoch early stopping kept (1-based), and whether it stopped the run.
    best_epoch: int | None = None
    stopped_early: bool = False

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
    history: dict[str, list[float | None]] = field(default_factory=dict)
    epoch: int = 0
    #: The array library the steps and measurements run on; None: NumPy.
    backend: Backend | None = None

    def __post_init__(self) -> None:
        self.measured: Measured | None = measured(self.graph, self.config)
        graph = self.graph
        if self.measured is not None and self.measured.prediction not in graph.outputs:
            # kept after forward, so that it can be read for the metrics
            graph = dataclasses.replace(graph, outputs=[*graph.outputs,
                                                        self.measured.prediction])
        # training mode: random ops (Dropout) are active in the steps, not in the measurements
        self.executor = Executor(graph, seed=self.seed, training=True, backend=self.backend)
        #: On NumPy the executor's own parameters; elsewhere NumPy copies, sent every pass.
        self._on_host = self.executor.xp is np
        self.params = self.executor.parameters if self._on_host else \
            {name: np.array(to_numpy(array)) for name, array in
             self.executor.parameters.items()}
        config = self.config
        self.optimizer = make_optimizer(config.optimizer, config.lr, self.params,
                                        weight_decay=config.weight_decay,
                                        clip_grad_norm=config.clip_grad_norm)
        self.rng = tensor_rng(self.seed, "train/order")
        #: Classes predicted per row, as the last measurement found (accuracy counts these).
        self.predictions_per_row = 1
        extra = [m for m in (self.measured.report if self.measured else ()) if m != "accuracy"]
        self.keys = (*HISTORY_KEYS, *(f"{part}_{m}" for m in extra for part in ("train", "val")))
        self.history = {key: list(self.history.get(key, [])) for key in self.keys}
        self.best_params: dict[str, np.ndarray] | None = None
        self._check_early_stopping()

    def _check_early_stopping(self) -> None:
        rule = self.config.early_stopping
        if rule is None or rule.metric in self.keys or rule.metric == "val_loss":
            return
        watchable = ", ".join(k for k in self.keys if k.startswith("val_")
                              and (k != "val_accuracy" or self.measured is not None))
        raise SpecError([self.graph.source.problem(
            ("train", "early_stopping", "metric"),
            f"{rule.metric!r} is not measured; watchable: {watchable} (a metric is measured "
            "when train.metrics reports it; accuracy also when the loss is NLL)")])

    def resume(self, checkpoint: Checkpoint, best: Checkpoint | None = None) -> None:
        """Continue from ``checkpoint``: parameters, optimizer state, RNG state, history;
        ``best`` is the best epoch's checkpoint that early stopping kept, if any."""
        _same_data(checkpoint.data, self.dataset.fingerprint)
        for name, array in checkpoint.params.items():
            np.copyto(self.params[name], array, casting="same_kind")  # a view the optimizer packs
        try:
            self.optimizer.load_state(checkpoint.optimizer_state)
        except ValueError as exc:
            raise DataError(f"the checkpoint's optimizer state does not fit: {exc}") from None
        self.rng.bit_generator.state = checkpoint.rng_state
        self.epoch = checkpoint.epoch
        self.history = {key: list(checkpoint.history.get(key, [])) for key in self.keys}
        if best is not None and best.epoch == self.best_epoch():
            self.best_params = {k: v.copy() for k, v in best.params.items()}

    def run(self, progress: Progress, stop: Callable[[], bool] = lambda: False) -> Outcome:
        """Train up to ``config.epochs`` in all; ``stop()`` is asked after every batch."""
        started = time.perf_counter()
        interrupted = saved = stopped_early = False
        while self.epoch < self.config.epochs and not (stopped_early := self.patience_spent()):
            with np.errstate(all="ignore"):  # a diverging loss is reported below, not warned
                completed = self.train_epoch(progress, stop)
            if not completed:
                interrupted = True
                break
            self.epoch += 1
            with np.errstate(all="ignore"):
                metrics = self.evaluate()
            for key in self.keys:
                self.history[key].append(metrics[key])
            improved = self.best_epoch() == self.epoch and self.config.early_stopping is not None
            if improved:
                self.best_params = {k: np.array(v) for k, v in self.params.items()}
            if self.save is not None:
                checkpoint = self.checkpoint()
                save_checkpoint(self.save, checkpoint)
                if improved:
                    save_checkpoint(best_path(self.save), checkpoint)
                saved = True
            progress.epoch(self.epoch, metrics)
            if stop():
                interrupted = self.epoch < self.config.epochs
                break
        outcome = Outcome(self.epoch, self.history, interrupted, time.perf_counter() - started,
                          saved, best_epoch=self.best_epoch(), stopped_early=stopped_early)
        if self.dataset.test and not interrupted:
            with np.errstate(all="ignore"):
                outcome.test = self.measure_test()
        return outcome

    def best_epoch(self) -> int | None:
        """The epoch (1-based) with the best watched metric so far; the first of ties."""
        rule = self.config.early_stopping
        values = self.history.get(rule.metric, []) if rule is not None else []
        scored = [(v if rule.metric.removeprefix("val_") in LOWER_IS_BETTER else -v, i)
                  for i, v in enumerate(values, start=1) if v is not None and math.isfinite(v)]
        return min(scored)[1] if scored and rule is not None else None

    def patience_spent(self) -> bool:
        """Whether the watched metric has not improved for ``patience`` epochs."""
        rule, best = self.config.early_stopping, self.best_epoch()
        return rule is not None and best is not None and self.epoch - best >= rule.patience

    def train_epoch(self, progress: Progress, stop: Callable[[], bool]) -> bool:
        """One pass over the training rows; False when stopped before its end."""
        config = self.config
        rows = self.dataset.n_train
        order = self.rng.permutation(rows) if config.shuffle else np.arange(rows)
        total = -(-rows // config.batch_size)
        loss_sum, seen = 0.0, 0
        ex, optimizer = self.executor, self.optimizer
        scheduled = config.schedule.name != "constant" or config.schedule.warmup_epochs > 0
        for done, index in enumerate(batches(rows, config.batch_size, order), start=1):
            ex.step = self.epoch * total + done - 1  # seeds Dropout's masks, resume-proof
            loss, grads = self._loss_and_gradients(self.dataset.batch(index))
            if not math.isfinite(loss):
                raise DataError(f"the loss became {loss} in epoch {self.epoch + 1}, batch "
                                f"{done}: training diverged; lower the learning rate (--lr, now "
                                f"{config.lr:g}) or standardise the features")
            if scheduled:
                optimizer.lr = learning_rate(config.schedule, config.lr, config.epochs,
                                             self.epoch, done - 1, total)
            optimizer.step(grads)
            loss_sum += loss * len(index)
            seen += len(index)
            progress.batch(self.epoch + 1, done, total, loss_sum / seen)
            if stop():
                return done == total
        return True

    def _loss_and_gradients(self, feeds: Arrays) -> tuple[float, Any]:
        """One step's loss and gradients of the parameters, as NumPy arrays.  Off NumPy the
        parameters are sent first, and the loss and the gradients come back from one
        compute: on Dask a single task graph for the whole step."""
        ex = self.executor
        if self._on_host:
            _, grads = ex.forward_backward(feeds)
        else:  # on jax one compiled call for the whole step
            ex.parameters.update(self.params)
            (grads,) = ex.compute(ex.forward_backward(feeds)[1])
        loss = ex.loss
        assert loss is not None
        return loss, grads

    def _forward(self, feeds: Arrays) -> None:
        """A forward pass with this run's parameters, sent to the backend when it is not
        NumPy (there the executor holds the backend's copies, made from ``self.params``)."""
        if not self._on_host:
            self.executor.parameters.update(self.params)
        self.executor.forward(feeds)

    def evaluate(self) -> dict[str, float | None]:
        """Loss and metrics over the whole training and validation splits."""
        metrics: dict[str, float | None] = {}
        for part, feeds in (("train", self.dataset.train), ("val", self.dataset.val)):
            measured = self.measure(feeds) if self._rows(feeds) else {}
            for key in self.keys:
                if key.startswith(part + "_"):
                    metrics[key] = measured.get(key.removeprefix(part + "_"))
        return metrics

    def measure_test(self) -> dict[str, float | None]:
        """Loss and metrics on the test rows, with the best epoch's parameters if early
        stopping kept one (the parameters are put back afterwards)."""
        last = {k: np.array(v) for k, v in self.params.items()}
        if self.best_params is not None:
            for name, array in self.best_params.items():
                np.copyto(self.params[name], array)
        try:
            measured = self.measure(self.dataset.test)
        finally:
            for name, array in last.items():
                np.copyto(self.params[name], array)
        keys = ["loss", "accuracy", *(k.removeprefix("val_") for k in self.keys
                                      if k.startswith("val_") and k not in HISTORY_KEYS)]
        return {f"test_{key}": measured.get(key) for key in keys}

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(dict(self.params), self.optimizer.name, dict(self.optimizer.state),
                          self.rng.bit_generator.state, self.epoch, self.seed, self.history,
                          self.dataset.stats, self.dataset.fingerprint)

    @staticmethod
    def _rows(feeds: Arrays) -> int:
        return len(next(iter(feeds.values()))) if feeds else 0

    def measure(self, feeds: Arrays) -> dict[str, float | None]:
        """``{"loss": ..., metric: ...}`` of one forward pass over ``feeds``."""
        ex, ends = self.executor, self.measured
        ex.training = False
        try:
            self._forward(feeds)
        finally:
            ex.training = True
        if ends is None:
            ex.compute({})  # the loss (on Dask, computed here)
        metrics = {} if ends is None else ends.of(ex)  # with the loss: one Dask graph
        loss = ex.loss
        assert loss is not None
        result: dict[str, float | None] = {"loss": loss}
        if ends is not None:
            shape = ex.value(ends.prediction).shape
            # a row of a sequence model predicts one class per position: accuracy counts those
            self.predictions_per_row = math.prod(shape[1:-1])
            result.update(metrics)
        return result


def _same_data(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """A checkpoint continues only on the data it was trained on (older ones record none):
    otherwise its history would be shown beside another dataset's row counts."""
    if saved and saved.get("read") != now.get("read"):
        read = {None: "read whole", "lazily": "read lazily (--backend dask, a .npy or .zarr file)"}
        raise DataError(f"it was trained on data {read[saved.get('read')]}, and this run's "
                        f"data is {read[now.get('read')]}: the two are fingerprinted "
                        "differently; resume the way it was trained, or train afresh without "
                        "--resume")
    if saved and saved.get("sha256") != now["sha256"]:
        raise DataError(f"it was trained on other data ({saved.get('train_rows')} training and "
                        f"{saved.get('val_rows')} validation rows), but this run's data and "
                        f"split give {now['train_rows']} and {now['val_rows']} rows"
                        f"{' with other values' if _rows(saved) == _rows(now) else ''}; resume "
                        "with the data and --val-split it was trained with, or train afresh "
                        "without --resume")


def _rows(fingerprint: dict[str, Any]) -> tuple[Any, Any]:
    return fingerprint.get("train_rows"), fingerprint.get("val_rows")
