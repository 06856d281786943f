"""Fused softmax family and the negative log likelihood: Softmax, LogSoftmax, NLL."""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, ShapeError, format_shape, normalize_axes
from engine.ops.base import FLOAT_DTYPES, SMALL_ARRAY, OpAttrs, OpDef, apply, promoted, register
from engine.ops.samples import Sample
from engine.runtime.kernels import (
    DOT_MAX_SIZE,
    numpy_max,
    numpy_sum,
    row_max,
    row_sums,
    sum_of_products,
)
from engine.runtime.parallel import PARALLEL_MIN_SIZE, by_rows


class AxisAttrs(OpAttrs):
    """The axis that holds the classes."""

    axis: int = Field(default=-1, description="Axis along which the values are normalized.")


def _axis_shape(attrs: AxisAttrs, dims: Dims, shape: Shape) -> Shape:
    (axis,) = normalize_axes(attrs.axis, len(shape), shape)
    _require_classes(shape, axis, "the axis normalized over")
    return shape


def _require_classes(shape: Shape, axis: int, what: str) -> None:
    """No values to normalize over (a width of 0) has no maximum, sum or probability."""
    if shape[axis] == 0:
        raise ShapeError(f"{what} (axis {axis} of {format_shape(shape)}) has size 0: there is "
                         "nothing to normalize; it needs at least one class")


def _softmax_forward(xp, attrs, x):
    # Subtracting the row maximum changes nothing mathematically and prevents overflow,
    # as the lesson recommends before exponentiating.
    raised = xp.exp(x - xp.max(x, axis=attrs.axis, keepdims=True))
    return raised / xp.sum(raised, axis=attrs.axis, keepdims=True)


def _softmax_fast_forward(xp, attrs, x):
    shifted = x - numpy_max(x, attrs.axis, keepdims=True)
    raised = np.exp(shifted, out=shifted)  # in place (shifted is ours): no second array
    raised /= numpy_sum(raised, attrs.axis, keepdims=True)
    return raised


def _softmax_vjp(xp, attrs, g, out, inputs, needs):
    # Jacobian S_i (delta_ij - S_j) applied to g, without building the Jacobian.
    return ((g - xp.sum(g * out, axis=attrs.axis, keepdims=True)) * out,)


def _softmax_fast_vjp(xp, attrs, g, out, inputs, needs):
    d_x = g - numpy_sum(g * out, attrs.axis, keepdims=True)
    d_x *= out  # in place: d_x is ours
    return (d_x,)


def _axis_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample((rng.uniform(0.0, 1.0, size=(5, 3)),), {"axis": -1}, note="the lesson's 5x3"),
        Sample((rng.normal(size=(2, 3, 4)),), {"axis": 1}, note="middle axis"),
        Sample((rng.normal(size=(4,)),), {}, note="a vector"),
    ]


def _softmax_reference(attrs: AxisAttrs, x: np.ndarray) -> np.ndarray:
    raised = np.exp(x)
    return raised / raised.sum(axis=attrs.axis, keepdims=True)


register(OpDef(
    name="Softmax", doc="exp(x) / sum(exp(x)) along an axis, computed without overflow.",
    attrs=AxisAttrs, input_names=("x",),
    forward=_softmax_forward,
    vjp=_softmax_vjp,
    fast_forward=_softmax_fast_forward,
    fast_vjp=_softmax_fast_vjp,
    shape=_axis_shape,
    reference=_softmax_reference,
    samples=_axis_samples,
    vjp_uses_inputs=False,
))


def _log_softmax_forward(xp, attrs, x):
    shifted = x - xp.max(x, axis=attrs.axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=attrs.axis, keepdims=True))


def _log_softmax_fast_forward(xp, attrs, x):
    shifted = x - numpy_max(x, attrs.axis, keepdims=True)
    return shifted - np.log(numpy_sum(np.exp(shifted), attrs.axis, keepdims=True))


def _log_softmax_vjp(xp, attrs, g, out, inputs, needs):
    return (g - xp.exp(out) * xp.sum(g, axis=attrs.axis, keepdims=True),)


def _log_softmax_fast_vjp(xp, attrs, g, out, inputs, needs):
    return (g - np.exp(out) * numpy_sum(g, attrs.axis, keepdims=True),)


register(OpDef(
    not_probabilities=True,
    name="LogSoftmax", doc="log(softmax(x)) along an axis, computed without overflow.",
    attrs=AxisAttrs, input_names=("x",),
    forward=_log_softmax_forward,
    vjp=_log_softmax_vjp,
    fast_forward=_log_softmax_fast_forward,
    fast_vjp=_log_softmax_fast_vjp,
    shape=_axis_shape,
    reference=lambda attrs, x: np.log(_softmax_reference(attrs, x)),
    samples=_axis_samples,
    vjp_uses_inputs=False,
))


class NLLAttrs(OpAttrs):
    """How the per-row losses are weighted, skipped and combined (ONNX NegativeLogLikelihoodLoss's
    ``reduction`` and ``ignore_index``; its optional ``weight`` is the third input)."""

    reduction: Literal["sum", "mean", "none"] = Field(
        default="sum", description="sum: add the rows' losses (the lesson's NLL, whose gradient "
                                   "through softmax is p - y); mean: divide by the row count, or "
                                   "with weight or ignore_index by the sum of the weights "
                                   "applied (as ONNX); none: one loss per row, shape of the "
                                   "probabilities without the class axis.")
    ignore_index: int | None = Field(
        default=None, description="A class-index target equal to this adds no loss, no "
                                  "gradient and no weight to the mean (ONNX's ignore_index, "
                                  "PyTorch's -100); it need not be a class.")


def _nll_shape(attrs: NLLAttrs, dims: Dims, probs: Shape, target: Shape,
               weight: Shape | None = None) -> Shape:
    if len(probs) == 0:
        raise ShapeError("probabilities must have a class axis, got a scalar")
    _require_classes(probs, len(probs) - 1, "the class axis")
    if len(target) == len(probs):
        if attrs.ignore_index is not None:
            raise ShapeError("ignore_index applies to class-index targets, but the target "
                             f"{format_shape(target)} is one-hot rows (the shape of the "
                             f"probabilities {format_shape(probs)}); remove ignore_index or "
                             "feed class indices")
        for p, t in zip(probs, target, strict=True):
            dims.unify(p, t, f"one-hot target {format_shape(target)} must have the shape of the "
                             f"probabilities {format_shape(probs)}")
    elif len(target) == len(probs) - 1:
        for p, t in zip(probs[:-1], target, strict=True):
            dims.unify(p, t, f"class-index target {format_shape(target)} must have the shape of "
                             f"the probabilities {format_shape(probs)} without the class axis")
    else:
        raise ShapeError(f"target {format_shape(target)} fits neither one-hot (same shape as "
                         f"probabilities {format_shape(probs)}) nor class indices (one axis less)")
    if weight is not None:
        if len(weight) != 1:
            raise ShapeError(f"weight must hold one number per class, shape [{probs[-1]}], "
                             f"got {format_shape(weight)}")
        dims.unify(weight[0], probs[-1], f"weight {format_shape(weight)} must hold one number "
                                         f"per class of the probabilities {format_shape(probs)}")
    return tuple(probs[:-1]) if attrs.reduction == "none" else ()


def _nll_dtype(attrs: NLLAttrs, probs: str, target: str, weight: str | None = None) -> str:
    if probs not in FLOAT_DTYPES:
        raise ShapeError(f"probabilities must be floating point, got {probs}")
    if weight is not None and weight not in FLOAT_DTYPES:
        raise ShapeError(f"weight must be floating point, got {weight}")
    return probs if weight is None else promoted(probs, weight)


def _one_hot(xp, probs, target):
    """The target as float weights: one-hot rows as given, or built from class indices."""
    if target.ndim == probs.ndim:
        if target.dtype == probs.dtype:  # the usual case, without astype's dispatch
            return target
        return xp.astype(target, probs.dtype)
    classes = xp.arange(probs.shape[-1], dtype=target.dtype)
    return xp.astype(target[..., None] == classes, probs.dtype)


def _applied(xp, attrs: NLLAttrs, probs, target, weight):
    """The weight each probability's log is taken with: the target's one-hot rows, zero on
    ignored rows, times the class weights."""
    applied = _one_hot(xp, probs, target)
    if attrs.ignore_index is not None and target.ndim < probs.ndim:
        skipped = xp.astype(target == attrs.ignore_index, probs.dtype)
        applied = applied * (1 - skipped)[..., None]
    return applied if weight is None else applied * weight


def _plain(attrs: NLLAttrs, weight) -> bool:
    """No weight and nothing ignored: the mean divides by the row count."""
    return weight is None and attrs.ignore_index is None


def _rows(probs) -> int:
    """Rows the mean divides by; ``math.prod`` of the shape, since ``.size`` is a method on
    torch tensors and unknown (NaN) on a Dask array whose chunks are not yet computed."""
    return math.prod(probs.shape[:-1])


def _divisor(xp, attrs: NLLAttrs, probs, applied, weight):
    """What the mean divides the summed loss by: the row count, or the applied weights' sum."""
    return _rows(probs) if _plain(attrs, weight) else xp.sum(applied)


def _read(xp, probs, applied):
    """The probabilities the loss reads: p where its applied weight is nonzero, 1 (whose log
    and whose -y/p are 0) where it is 0.  A class that the target (or its class weight, or
    ignore_index) gives weight 0 adds no term, whatever its probability: 0 log 0 is 0 and
    its gradient 0, as ONNX's NegativeLogLikelihoodLoss and PyTorch's nll_loss, which pick
    only the target's entry, never read the others; log 0 * 0 and 0 / 0 would be NaN."""
    return xp.where(applied == 0, xp.ones_like(probs), probs)


def _nll_forward(xp, attrs, probs, target, weight=None):
    applied = _applied(xp, attrs, probs, target, weight)
    logs = xp.log(_read(xp, probs, applied))
    if attrs.reduction == "none":
        return -xp.sum(logs * applied, axis=-1)
    loss = -xp.sum(logs * applied)
    if attrs.reduction == "mean":
        return loss / _divisor(xp, attrs, probs, applied, weight)
    return loss


def _nll_fast_forward(xp, attrs, probs, target, weight=None):
    if attrs.reduction == "none" or not _plain(attrs, weight):
        return _nll_forward(np, attrs, probs, target, weight)
    applied = _one_hot(np, probs, target)
    # _read's rule without its array of ones: the log is taken only where the weight is not 0
    terms = np.log(probs, out=np.zeros_like(probs), where=applied != 0)
    if probs.size > SMALL_ARRAY:  # one multiply-and-add pass, no product array
        axes = "abcdefghijklmnopqrstuvwxyz"[:probs.ndim]
        loss = -np.einsum(f"{axes},{axes}->", applied, terms)
    else:
        terms *= applied  # in place: terms is ours
        loss = -numpy_sum(terms)
    return loss / _rows(probs) if attrs.reduction == "mean" else loss


def _nll_vjp(xp, attrs, g, out, inputs, needs):
    probs, target, weight = inputs[0], inputs[1], (inputs[2] if len(inputs) > 2 else None)
    applied = _applied(xp, attrs, probs, target, weight)
    # The lesson's nll_grad: -y / p, scaled by the upstream -g (per row for none).
    if attrs.reduction == "none":
        scale = -g[..., None]
    elif attrs.reduction == "mean":
        scale = -g / _divisor(xp, attrs, probs, applied, weight)
    else:
        scale = -g
    return (applied / _read(xp, probs, applied) * scale, None, None)[:len(inputs)]


def _nll_reference(attrs: NLLAttrs, probs: np.ndarray, target: np.ndarray,
                   weight: np.ndarray | None = None) -> np.ndarray:
    """Row by row, as ONNX's reference implementation picks -w[t] * log p[t]."""
    classes = probs.shape[-1]
    w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
    flat_p = np.asarray(probs, dtype=np.float64).reshape(-1, classes)
    losses, weights = [], []
    if target.ndim == probs.ndim:
        for p, y in zip(flat_p, np.asarray(target, dtype=np.float64).reshape(-1, classes),
                        strict=True):
            losses.append(-sum(y[c] * w[c] * math.log(p[c]) for c in range(classes) if y[c]))
            weights.append(float(np.dot(y, w)))
    else:
        for p, t in zip(flat_p, np.ravel(target), strict=True):
            ignored = attrs.ignore_index is not None and t == attrs.ignore_index
            losses.append(0.0 if ignored else -w[t] * math.log(p[t]))
            weights.append(0.0 if ignored else float(w[t]))
    if attrs.reduction == "none":
        return np.reshape(losses, probs.shape[:-1])
    total = sum(losses)
    if attrs.reduction == "sum":
        return np.asarray(total)
    if weight is None and attrs.ignore_index is None:
        return np.asarray(total / len(losses))
    return np.asarray(total / sum(weights))


def _nll_samples(rng: np.random.Generator) -> list[Sample]:
    probs = rng.uniform(0.1, 1.0, size=(5, 3))
    labels = rng.integers(0, 3, size=5)
    one_hot = np.eye(3)[labels]
    batched = rng.uniform(0.1, 1.0, size=(2, 4, 3))
    weight = rng.uniform(0.5, 2.0, size=3)
    with_ignored = np.array([0, 2, -100, 1, 2])
    return [
        Sample((probs, one_hot), {"reduction": "sum"}, note="one-hot target, sum"),
        Sample((probs, one_hot), {"reduction": "mean"}, note="one-hot target, mean"),
        Sample((probs, labels), {"reduction": "sum"}, note="class indices, sum"),
        Sample((batched, rng.integers(0, 3, size=(2, 4))), {"reduction": "mean"},
               note="batched class indices, mean"),
        Sample((probs, labels, weight), {"reduction": "mean"}, note="class weights, mean"),
        Sample((batched, rng.integers(0, 3, size=(2, 4)), weight), {"reduction": "none"},
               note="class weights, none"),
        Sample((probs, with_ignored), {"reduction": "mean", "ignore_index": -100},
               note="ignore_index -100, mean"),
        Sample((probs, np.array([1, 0, 1, 2, 1]), weight), {"reduction": "mean",
                                                            "ignore_index": 1},
               note="ignore_index a class, class weights, mean"),
        Sample((probs, with_ignored), {"reduction": "sum", "ignore_index": -100},
               note="ignore_index -100, sum"),
        Sample((probs, one_hot, weight), {"reduction": "mean"},
               note="one-hot target, class weights, mean"),
        Sample((probs, labels), {"reduction": "none"}, note="class indices, none"),
    ]


register(OpDef(
    not_probabilities=True,  # a loss
    name="NLL", doc="Negative log likelihood -sum(w * y * log p) of probabilities p (classes on "
                    "the last axis); the target y is one-hot rows (floats) or class indices "
                    "(integers); the optional weight w holds one number per class.",
    attrs=NLLAttrs, input_names=("probabilities", "target", "weight"),
    forward=_nll_forward,
    fast_forward=_nll_fast_forward,
    vjp=_nll_vjp,
    shape=_nll_shape,
    dtype=_nll_dtype,
    reference=_nll_reference,
    samples=_nll_samples,
    min_inputs=2,
    differentiable=(True, False, False),
    convention="Not differentiable in its target or its class weights: they get no gradient "
               "(as in ONNX and PyTorch). An ignored row adds 0 to the loss and gets a 0 "
               "gradient; a mean over no weight at all (every row ignored) is 0/0 = NaN, as in "
               "PyTorch. A class of weight 0 (y = 0, a class weight 0, an ignored row) adds no "
               "term whatever its probability: 0 log 0 = 0 with gradient 0 (ONNX and PyTorch "
               "read only the target's entry); a target class of probability 0 gives an "
               "infinite loss and gradient.",
    vjp_uses_output=False,
))


class CrossEntropyAttrs(OpAttrs):
    """How the per-row losses are combined, as NLL combines them."""

    reduction: Literal["sum", "mean"] = Field(
        default="sum", description="sum: add the rows' losses; mean: divide by the row count "
                                   "(as NLL's reduction).")


def _cross_entropy_shape(attrs: CrossEntropyAttrs, dims: Dims, logits: Shape,
                         target: Shape) -> Shape:
    return _nll_shape(NLLAttrs(reduction=attrs.reduction), dims, logits, target)


_LAST_AXIS = AxisAttrs(axis=-1)


def _cross_entropy_forward(xp, attrs, logits, target):
    # LogSoftmax's rule: the row maximum subtracted, so exp never overflows and log never
    # sees 0: finite for any finite logits, where log(Softmax) may be log 0 = -inf.
    logp = _log_softmax_forward(xp, _LAST_AXIS, logits)
    loss = -xp.sum(logp * _one_hot(xp, logits, target))
    return loss / _rows(logits) if attrs.reduction == "mean" else loss


def _cross_entropy_fast_forward(xp, attrs, logits, target):
    logp = _log_softmax_fast_forward(xp, _LAST_AXIS, logits)
    logp *= _one_hot(np, logits, target)  # in place: logp is ours
    loss = -numpy_sum(logp)
    return loss / _rows(logits) if attrs.reduction == "mean" else loss


def _cross_entropy_vjp(xp, attrs, g, out, inputs, needs):
    logits, target = inputs
    weights = _one_hot(xp, logits, target)
    p = apply(xp, "Softmax", logits, axis=-1)  # traced by engine grad as one Softmax node
    # d/dx of -sum(y * log softmax x) is p * sum(y) - y per row: p - y for one-hot rows and
    # class indices, where sum(y) = 1.  The quotient -y / p of the staged form never appears.
    scale = g / _rows(logits) if attrs.reduction == "mean" else g
    return ((p * xp.sum(weights, axis=-1, keepdims=True) - weights) * scale, None)


def _cross_entropy_fast_vjp(xp, attrs, g, out, inputs, needs):
    logits, target = inputs
    d_x = _softmax_fast_forward(np, _LAST_AXIS, logits)  # p, a new array: updated in place
    if target.ndim == logits.ndim:
        weights = _one_hot(np, logits, target)
        d_x *= numpy_sum(weights, -1, keepdims=True)
        d_x -= weights
    else:  # p - onehot(labels): 1 off each row's label, no one-hot array
        picked = target[..., None]
        np.put_along_axis(d_x, picked, np.take_along_axis(d_x, picked, -1) - 1, -1)
    d_x *= g / _rows(logits) if attrs.reduction == "mean" else g
    return (d_x, None)


def _cross_entropy_saving(xp, attrs, logits, target):
    """The fast forward, keeping p * rowsum(y) for the vjp (``OpDef.fast_forward_saving``),
    row by row (``by_rows``: in blocks over the cores when large, else one call on the whole
    arrays) in ``_cross_entropy_rows``; the blocks' losses are added in order.  For class
    indices, whose rows hold one 1, it keeps p."""
    flat = logits if logits.ndim == 2 else logits.reshape(-1, logits.shape[-1])
    probs = np.empty(flat.shape, flat.dtype)
    if target.ndim == logits.ndim:
        weights = _one_hot(np, logits, target)
        if weights.ndim != 2:
            weights = weights.reshape(flat.shape)
        per_row, labels = row_sums(weights), None
    else:  # class indices: one weight of 1 per row
        weights = per_row = None
        labels = target.reshape(-1, 1)
    size = flat.size
    work = _cross_entropy_rows if size <= DOT_MAX_SIZE else _cross_entropy_blocks
    parts = by_rows(work, (flat, probs, weights, per_row, labels), size)
    loss = parts[0]
    for part in parts[1:]:
        loss = loss + part
    if attrs.reduction == "mean":
        loss = loss / _rows(logits)
    return loss, probs


def _cross_entropy_rows(x, probs, weights, per_row, labels, dot=np.vdot):
    """One block of rows: the row maximum subtracted into p's buffer, the picked logits
    summed before exp overwrites them, exp in place, the block's loss from one log per
    row, -sum(y * (shifted - log s)) = sum(log s * rowsum(y)) - sum(y * shifted), its sums
    as dot products (no product array, and never on OpenBLAS's threads, which would take
    the core of the other blocks), and the normalization, which for a target of rows
    multiplies by rowsum(y) / s at once: the vjp's p * rowsum(y) - y is then one
    subtraction (for one-hot rows e * (1 / s), as the lesson's staged softmax computes p).
    Ufuncs are called with positional arguments: on the lesson's 5x3 a NumPy call costs
    more than its arithmetic, so the block makes ten calls and little else;
    ``dot`` is vdot there (one BLAS call) and ``sum_of_products`` on larger arrays
    (``_cross_entropy_blocks``), chosen once per forward rather than once per block."""
    shifted = np.subtract(x, row_max(x), probs)
    if labels is None:
        picked = dot(weights, shifted)
    else:
        picked = np.add.reduce(np.take_along_axis(shifted, labels, axis=-1), None)
    np.exp(shifted, shifted)
    sums = row_sums(shifted)
    logs = np.log(sums)
    if per_row is None:
        np.divide(shifted, sums, shifted)
        return np.add.reduce(logs, None) - picked
    np.multiply(shifted, np.divide(per_row, sums, sums), shifted)
    return dot(per_row, logs) - picked


_cross_entropy_blocks = partial(_cross_entropy_rows, dot=sum_of_products)


def _cross_entropy_vjp_saved(xp, attrs, g, residual, inputs, needs):
    """p * rowsum(y) - y from what forward kept (``_cross_entropy_rows``), into one new
    array (a second backward reads the residual again, so it is never written into), row
    by row as forward."""
    logits, target = inputs
    scale = g / _rows(logits) if attrs.reduction == "mean" else g
    scale = scale if float(scale) != 1.0 else None
    if target.ndim == logits.ndim:
        weights, labels = _one_hot(np, logits, target), None
        if weights.ndim != 2:
            weights = weights.reshape(residual.shape)
    else:  # class indices
        weights, labels = None, target.reshape(-1)
    if residual.size <= PARALLEL_MIN_SIZE:  # one call, and NumPy allocates the result
        d_logits = _cross_entropy_gradient_rows(scale, residual, weights, labels)
    else:
        d_logits = np.empty(residual.shape, residual.dtype)
        by_rows(partial(_cross_entropy_gradient_rows, scale),
                (residual, weights, labels, d_logits), d_logits.size)
    return (d_logits if logits.ndim == 2 else d_logits.reshape(logits.shape), None)


def _cross_entropy_gradient_rows(scale, kept, weights, labels, d=None):
    """Rows of the gradient p * rowsum(y) - y: ``kept`` - y for a target of rows, p minus 1
    at each row's label for class indices; times ``scale`` unless None; into ``d`` (a new
    array when None)."""
    if labels is None:
        d = np.subtract(kept, weights, d)
    else:
        d = kept.copy() if d is None else np.copyto(d, kept) or d
        d[np.arange(d.shape[0]), labels] -= 1.0
    if scale is not None:
        np.multiply(d, scale, d)
    return d


def _cross_entropy_reference(attrs: CrossEntropyAttrs, logits: np.ndarray,
                             target: np.ndarray) -> np.ndarray:
    """log-sum-exp by NumPy's logaddexp, independent of the rule above."""
    lse = np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    if target.ndim == logits.ndim:
        total = -np.sum(target * (logits - lse))
    else:
        total = -np.sum(np.take_along_axis(logits - lse, target[..., None], axis=-1))
    return np.asarray(total / _rows(logits) if attrs.reduction == "mean" else total)


def _cross_entropy_samples(rng: np.random.Generator) -> list[Sample]:
    logits = rng.normal(size=(5, 3))
    labels = rng.integers(0, 3, size=5)
    one_hot = np.eye(3)[labels]
    soft = rng.uniform(0.1, 1.0, size=(5, 3))  # rows not summing to 1: p * sum(y) - y
    return [
        Sample((logits, one_hot), {"reduction": "sum"}, note="one-hot target, sum"),
        Sample((logits, one_hot), {"reduction": "mean"}, note="one-hot target, mean"),
        Sample((logits, soft), {}, note="soft target"),
        Sample((logits, labels), {"reduction": "sum"}, note="class indices, sum"),
        Sample((rng.normal(size=(2, 4, 3)), rng.integers(0, 3, size=(2, 4))),
               {"reduction": "mean"}, note="batched class indices, mean"),
    ]


register(OpDef(
    not_probabilities=True,  # a loss
    name="CrossEntropy",
    doc="-sum(y * log softmax(logits)) over the last axis: NLL of Softmax in one step, "
        "through log-sum-exp with the row maximum subtracted; the target y is one-hot (or "
        "soft) rows or class indices.",
    attrs=CrossEntropyAttrs, input_names=("logits", "target"),
    forward=_cross_entropy_forward,
    fast_forward=_cross_entropy_fast_forward,
    fast_forward_saving=_cross_entropy_saving,
    fast_vjp_saved=_cross_entropy_vjp_saved,
    vjp=_cross_entropy_vjp,
    fast_vjp=_cross_entropy_fast_vjp,
    shape=_cross_entropy_shape,
    dtype=_nll_dtype,
    reference=_cross_entropy_reference,
    samples=_cross_entropy_samples,
    differentiable=(True, False),
    convention="Not differentiable in its target (as NLL); the logits' gradient is "
               "p * sum(y) - y, p - y for one-hot rows and class indices.",
    vjp_uses_output=False,
))
