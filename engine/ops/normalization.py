"""Layer normalization as one fused op: LayerNorm(x, scale?, bias?) over the trailing axes.

Fused, its vjp is the closed form dx = (g' - mean(g') - x^ mean(g' x^)) / sigma with
g' = g * scale, which needs no per-element intermediate of the forward beyond the
normalized x^ and is as accurate as the forward: the variance is computed from
centred values (two passes), never as E[x^2] - E[x]^2.  ``nn.layer_norm`` in
graphs/lib/nn.yaml builds the same function from primitives; a test checks that
they agree forward and backward.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from engine.graph.shapes import Dims, Shape, ShapeError, format_shape, normalize_axes
from engine.ops.base import OpAttrs, OpDef, float_result, register
from engine.ops.samples import Sample


class LayerNormAttrs(OpAttrs):
    """Where normalization starts, and the variance floor."""

    axis: int = Field(default=-1, description="First normalized axis: x is normalized over "
                                              "axes axis..-1 (as ONNX LayerNormalization).")
    eps: float = Field(default=1e-5, gt=0, description="Added to the variance before the "
                                                       "square root.")


def _normalized_axes(attrs: LayerNormAttrs, rank: int) -> tuple[int, ...]:
    (first,) = normalize_axes(attrs.axis, rank)
    return tuple(range(first, rank))


def _layer_norm_shape(attrs: LayerNormAttrs, dims: Dims, x: Shape, *affine: Shape) -> Shape:
    (first,) = normalize_axes(attrs.axis, len(x), x)
    for name, shape in zip(("scale", "bias"), affine, strict=False):
        if len(shape) > len(x) - first:
            raise ShapeError(f"{name} {format_shape(shape)} has more axes than the normalized "
                             f"part {format_shape(x[first:])} of x {format_shape(x)}")
        for have, want in zip(reversed(shape), reversed(x), strict=False):
            if dims.resolve(have) != 1:
                dims.unify(have, want, f"{name} {format_shape(shape)} must broadcast against "
                                       f"the normalized axes {format_shape(x[first:])} of x")
    return x


def _normalize(xp, attrs, x):
    """(x^, 1 / sigma): x centred and scaled to unit variance over the normalized axes."""
    axes = _normalized_axes(attrs, x.ndim)
    centred = x - xp.mean(x, axis=axes, keepdims=True)
    inverse = 1 / xp.sqrt(xp.mean(centred * centred, axis=axes, keepdims=True) + attrs.eps)
    return centred * inverse, inverse


def _layer_norm_forward(xp, attrs, x, scale=None, bias=None):
    out, _ = _normalize(xp, attrs, x)
    if scale is not None:
        out = out * scale
    if bias is not None:
        out = out + bias
    return out


def _layer_norm_vjp(xp, attrs, g, out, inputs, needs):
    x, scale = inputs[0], (inputs[1] if len(inputs) > 1 else None)
    normalized, inverse = _normalize(xp, attrs, x)
    d_x = None
    if needs[0]:
        axes = _normalized_axes(attrs, x.ndim)
        scaled = g if scale is None else g * scale
        d_x = inverse * (scaled - xp.mean(scaled, axis=axes, keepdims=True)
                         - normalized * xp.mean(scaled * normalized, axis=axes, keepdims=True))
    d_scale = g * normalized if len(needs) > 1 and needs[1] else None
    d_bias = g if len(needs) > 2 and needs[2] else None
    return (d_x, d_scale, d_bias)[:len(inputs)]


def _layer_norm_reference(attrs: LayerNormAttrs, x: np.ndarray, scale: np.ndarray | None = None,
                          bias: np.ndarray | None = None) -> np.ndarray:
    axes = _normalized_axes(attrs, x.ndim)
    out = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True)
                                                           + attrs.eps)
    out = out if scale is None else out * scale
    return out if bias is None else out + bias


def _layer_norm_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.normal(2.0, 3.0, size=(2, 3, 4))
    return [
        Sample((x, rng.normal(size=(4,)), rng.normal(size=(4,))), {}, note="scale and bias"),
        Sample((x, rng.normal(size=(3, 4)), rng.normal(size=(4,))), {"axis": 1, "eps": 1e-3},
               note="two normalized axes"),
        Sample((x,), {"axis": -1}, note="no scale or bias"),
        Sample((x, rng.normal(size=(1, 4))), {"axis": -2}, note="scale only, broadcast"),
    ]


register(OpDef(
    not_probabilities=True,
    name="LayerNorm", doc="(x - mean) / sqrt(var + eps) * scale + bias over axes axis..-1; "
                          "scale and bias are optional.",
    attrs=LayerNormAttrs, input_names=("x", "scale", "bias"),
    forward=_layer_norm_forward,
    vjp=_layer_norm_vjp,
    shape=_layer_norm_shape,
    dtype=float_result,
    reference=_layer_norm_reference,
    samples=_layer_norm_samples,
    min_inputs=1,
    vjp_uses_output=False,
))
