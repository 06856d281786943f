"""What training, ``eval`` and ``predict`` measure besides the loss, and from which nodes.

The measured nodes are named once: ``train.metrics: {prediction, target}``, or,
when that is absent and the loss is NLL over class probabilities, the NLL's two
inputs.  Naming the prediction keeps accuracy meaningful whatever the loss adds
(an L2 term, a regulariser).  Each metric is a mean over the rows it is given,
computed from the prediction's and target's values only: on Dask inside the task
graph, so that only the metrics come back, never a value per row of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import Problems, did_you_mean
from engine.graph.model import Graph
from engine.graph.shapes import format_shape
from schemas.train import METRICS, TrainConfig


@dataclass(frozen=True)
class Measured:
    """The prediction node, the target input, and the metrics computed from them."""

    prediction: str
    target: str
    report: tuple[str, ...]

    def compute(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
        """Each reported metric over the rows of ``prediction`` and ``target``."""
        return {name: _number(_METRIC[name](prediction, target)) for name in self.report}

    def of(self, executor: Any) -> dict[str, float | None]:
        """The metrics of ``executor``'s last forward pass, computed with its loss in one
        compute.  On Dask inside the task graph: only the metrics come back, not the
        prediction and target of every row (a data set larger than this process's memory
        stays where it is); elsewhere from the two values brought back as NumPy."""
        prediction, target = executor.value(self.prediction), executor.value(self.target)
        if executor.backend.name != "dask":
            (ends,) = executor.compute({"prediction": prediction, "target": target})
            return self.compute(ends["prediction"], ends["target"])
        lazy = {name: _METRIC[name](prediction, target) for name in self.report}
        (values,) = executor.compute({k: v for k, v in lazy.items() if v is not None})
        return {name: _number(values.get(name)) for name in self.report}


def classifier_ends(graph: Graph) -> tuple[str, str] | None:
    """(probabilities, target) when the loss is NLL over class probabilities, else None."""
    loss = graph.nodes.get(graph.loss or "")
    if loss is None or loss.op.name != "NLL":
        return None
    return loss.inputs[0], loss.inputs[1]


def measured(graph: Graph, config: TrainConfig | None) -> Measured | None:
    """What to measure: ``train.metrics`` checked against the graph, or the NLL default."""
    metrics = config.metrics if config is not None else None
    if metrics is None:
        ends = classifier_ends(graph)
        return None if ends is None else Measured(ends[0], ends[1], ("accuracy",))
    assert config is not None
    problems = Problems()

    def problem(field: str, message: str) -> None:
        problems.append(graph.source.problem(("train", "metrics", field), message))

    if metrics.prediction not in graph.values:
        problem("prediction", f"{metrics.prediction!r} names no node of the graph"
                              f"{did_you_mean(metrics.prediction, graph.nodes)}")
    inputs = [n for n, v in graph.values.items() if v.kind == "input"]
    target = metrics.target
    if target is None:
        labelled = [n for n, e in config.inputs.items() if e.label is not None]
        if len(labelled) == 1:
            target = labelled[0]
        else:
            problem("prediction", "say which input holds the truth: metrics.target (no single "
                                  f"input is fed by a label; inputs: {', '.join(inputs)})")
    elif target not in inputs:
        problem("target", f"{target!r} is not an input of the graph"
                          f"{did_you_mean(target, inputs)}; its inputs are: {', '.join(inputs)}")
    if not problems:
        assert target is not None
        got, want = graph.values[metrics.prediction].shape, graph.values[target].shape
        for name in metrics.report:
            fits = want in (got, got[:-1]) and got[-1:] != (1,) if name == "accuracy" \
                else want == got
            if not fits:
                what = "[batch, K] scores, K > 1, against one-hot rows [batch, K] or class " \
                       "indices [batch]" if name == "accuracy" else "the same shape"
                problem("report", f"{name} compares {metrics.prediction!r} "
                                  f"{format_shape(got)} with {target!r} {format_shape(want)}; "
                                  f"it needs {what}")
    problems.raise_if_any()
    assert target is not None
    return Measured(metrics.prediction, target, tuple(dict.fromkeys(metrics.report)))


# The metrics use array methods only, so that NumPy and Dask arrays both take them; each is
# a 0-d array (lazy on Dask), or None without rows.

def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _accuracy(prediction: Any, target: Any) -> Any:
    """Argmax over the last axis against class indices or one-hot rows."""
    predicted = prediction.argmax(axis=-1)
    labels = target.argmax(axis=-1) if target.ndim == predicted.ndim + 1 else target
    # counted, not a mean: np.mean's Python-level body costs more than these few rows do
    return (predicted == labels).sum() / predicted.size if predicted.size else None


def _mse(prediction: Any, target: Any) -> Any:
    diff = prediction.astype(np.float64) - target
    return (diff * diff).mean() if diff.size else None


def _mae(prediction: Any, target: Any) -> Any:
    diff = prediction.astype(np.float64) - target
    return abs(diff).mean() if diff.size else None


_METRIC = {"accuracy": _accuracy, "mse": _mse, "mae": _mae}
assert tuple(_METRIC) == METRICS
