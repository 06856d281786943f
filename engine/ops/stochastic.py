"""Random ops and the run mode they read: Dropout.

A random op is a pure function of its inputs and of (seed, step, node): its mask
is drawn from a generator seeded with the run's seed, the training step and a
key derived from the node's name, so that a run, a resumed run and the vjp
(which draws the same mask again rather than keeping it) all agree bit for bit,
and two Dropout nodes draw different masks.  The executor owns one ``RunMode``
and hands it, with the node's key, to each op declared ``stochastic``; it says
whether the pass trains (Dropout drops) or evaluates (Dropout is the identity).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from engine.ops.base import OpAttrs, OpDef, register, same_shape
from engine.ops.samples import Sample, unary_samples


@dataclass
class RunMode:
    """What a pass is: training or evaluation, and its step; the executor updates it."""

    training: bool = False
    seed: int = 0
    step: int = 0
    #: Set only while a compiled pass is traced (``engine.runtime.jitted``): each random
    #: node's factor by node key, drawn on the host before the call and passed in as an
    #: argument, since a draw made while tracing would be one constant for every step.
    masks: dict[int, Any] | None = None


def node_key(name: str) -> int:
    """A node's own random stream, stable across runs and Python processes."""
    return zlib.crc32(name.encode())


class DropoutAttrs(OpAttrs):
    """The drop probability, and optional overrides of the run's mode and seed."""

    rate: float = Field(default=0.5, ge=0.0, lt=1.0,
                        description="Probability that an element is zeroed in training.")
    training: bool | None = Field(
        default=None, description="null: drop only when the executor trains; true: always "
                                  "(Monte Carlo dropout); false: never.")
    seed: int | None = Field(default=None, ge=0,
                             description="Seed of the masks; null: the spec's seed.")


def keep_factor(attrs: DropoutAttrs, shape: tuple[int, ...], mode: RunMode | None,
                key: int) -> np.ndarray | None:
    """The inverted-dropout factor of a pass, 0 or 1 / (1 - rate) per element, as NumPy
    float64; None when the pass does not drop.  Drawn on the host, from (seed, step, key)."""
    training = attrs.training if attrs.training is not None else \
        (mode is not None and mode.training)
    if not training or attrs.rate == 0.0:
        return None
    seed = attrs.seed if attrs.seed is not None else (mode.seed if mode is not None else 0)
    step = mode.step if mode is not None else 0
    draws = np.random.default_rng((seed, step, key)).random(shape)
    return np.where(draws >= attrs.rate, 1.0 / (1.0 - attrs.rate), 0.0)


def _keep_scale(xp, attrs: DropoutAttrs, x, mode: RunMode | None, key: int):
    """``keep_factor`` as an array like ``x``; in a compiled pass, the one passed in."""
    if mode is not None and mode.masks is not None:
        return mode.masks.get(key)
    factor = keep_factor(attrs, tuple(x.shape), mode, key)
    return None if factor is None else xp.asarray(factor, dtype=x.dtype)


def _dropout_forward(xp, attrs, x, *, mode: RunMode | None = None, key: int = 0):
    factor = _keep_scale(xp, attrs, x, mode, key)
    return x if factor is None else x * factor


def _dropout_vjp(xp, attrs, g, out, inputs, needs, *, mode: RunMode | None = None,
                 key: int = 0):
    factor = _keep_scale(xp, attrs, g, mode, key)
    return (g if factor is None else g * factor,)


def _dropout_reference(attrs: DropoutAttrs, x: np.ndarray) -> np.ndarray:
    if not attrs.training:
        return np.array(x, copy=True)
    # the mask of the op's definition: uniform draws of the generator seeded (seed, 0, 0)
    kept = np.random.default_rng((attrs.seed or 0, 0, 0)).random(x.shape) >= attrs.rate
    return np.where(kept, x / (1.0 - attrs.rate), 0.0)


def _dropout_samples(rng: np.random.Generator) -> list[Sample]:
    samples = unary_samples(rng, -2.0, 2.0)
    return [
        Sample(samples[2].inputs, {"rate": 0.5}, note="evaluation: the identity"),
        Sample(samples[2].inputs, {"rate": 0.5, "training": True}, note="training"),
        Sample(samples[3].inputs, {"rate": 0.2, "training": True, "seed": 7},
               note="training, own seed"),
    ]


register(OpDef(
    name="Dropout", doc="In training, each element zeroed with probability rate and the rest "
                        "scaled by 1 / (1 - rate); in evaluation, the identity.",
    attrs=DropoutAttrs, input_names=("x",),
    forward=_dropout_forward,
    vjp=_dropout_vjp,
    shape=same_shape,
    reference=_dropout_reference,
    samples=_dropout_samples,
    convention="The mask is part of the op's definition, a function of (seed, step, node), "
               "so the derivative is the mask itself (times 1 / (1 - rate)); the second "
               "derivative is 0.",
    stochastic=True,
    vjp_uses_inputs=False,
    vjp_uses_output=False,
))
