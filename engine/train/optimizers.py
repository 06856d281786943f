"""The optimizers, each a small class whose whole state is a dict of arrays.

The state is explicit (not hidden in closures) so that a checkpoint can save it
and a resumed run continues bit for bit.

Speed: the parameters of one dtype are packed into one flat buffer, and each
parameter becomes a view of it (the executor's own dict is rebound to those
views).  An update is then a handful of NumPy operations on whole buffers,
however many tensors the graph has, instead of a dozen per tensor: for small
networks the per-call cost of NumPy, not the arithmetic, is what an update
spends its time on.  The state is packed the same way, and ``state`` shows it
per parameter (``m/w1``) as views, for checkpoints.

Before the update, as PyTorch orders it: the gradients are clipped to a global
L2 norm (``clip_grad_norm``), then weight decay is applied, added to the
gradient (L2, ``g + wd*w``) for sgd, momentum and adam, or decoupled from it
for adamw (``w <- w - lr*wd*w``, Loshchilov and Hutter 2019).
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

import numpy as np

from schemas.train import OptimizerConfig


class _Pack:
    """Arrays of one dtype in one flat buffer; ``views[name]`` has the array's shape."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.shapes = {name: array.shape for name, array in arrays.items()}
        self.flat = np.concatenate([array.ravel() for array in arrays.values()])
        self.views = self.layout(self.flat)

    def layout(self, flat: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
        """Views of ``flat`` (a buffer like ``self.flat``) named ``prefix + NAME``."""
        views, offset = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            views[prefix + name] = flat[offset:offset + size].reshape(shape)
            offset += size
        return views


class Optimizer:
    """Plain SGD: ``w <- w - lr * g``.  Subclasses add state (``_SLOTS`` names its buffers)."""

    name = "sgd"
    _SLOTS: tuple[str, ...] = ()

    #: Whether weight decay shrinks the weights directly instead of joining the gradient.
    decoupled = False

    def __init__(self, config: OptimizerConfig, lr: float,
                 params: MutableMapping[str, np.ndarray], *, weight_decay: float = 0.0,
                 clip_grad_norm: float | None = None):
        """Packs ``params`` and rebinds each entry of it to its view of the pack.

        ``lr`` may be reassigned between steps (a schedule does).
        """
        self.config = config
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        groups: dict[np.dtype, dict[str, np.ndarray]] = {}
        for name, array in params.items():
            array = np.asarray(array)
            groups.setdefault(array.dtype, {})[name] = array
        self.packs = [_Pack(group) for group in groups.values()]
        self.grads = [np.empty_like(pack.flat) for pack in self.packs]
        self._grad_views = [pack.layout(grad) for pack, grad in
                            zip(self.packs, self.grads, strict=True)]
        self.state: dict[str, np.ndarray] = {}
        self.buffers: list[dict[str, np.ndarray]] = []
        for pack in self.packs:
            buffers = {slot: np.zeros_like(pack.flat) for slot in self._SLOTS}
            for slot, flat in buffers.items():
                self.state.update(pack.layout(flat, f"{slot}/"))
            self.buffers.append(buffers)
            params.update(pack.views)

    def step(self, grads: MutableMapping[str, np.ndarray]) -> None:
        """One update of every parameter from ``grads`` (d loss / d parameter)."""
        for views in self._grad_views:
            for name, view in views.items():
                np.copyto(view, grads[name])
        if self.clip_grad_norm is not None:
            self._clip(self.clip_grad_norm)
        wd = self.weight_decay
        for index, (pack, grad) in enumerate(zip(self.packs, self.grads, strict=True)):
            if wd and not self.decoupled:
                grad += wd * pack.flat
            elif wd:
                pack.flat *= 1.0 - self.lr * wd
            self._update(pack.flat, grad, self.buffers[index])

    def grad_norm(self) -> float:
        """The global L2 norm of the gradients of the last ``step`` (after clipping)."""
        return math.sqrt(sum(float(np.dot(g, g)) for g in self.grads))

    def _clip(self, max_norm: float) -> None:
        """Scale every gradient by ``max_norm / norm`` when the global norm exceeds it
        (``torch.nn.utils.clip_grad_norm_``, without its 1e-6 in the denominator)."""
        norm = self.grad_norm()
        if norm > max_norm:
            for grad in self.grads:
                grad *= max_norm / norm

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        w -= self.lr * g

    def load_state(self, state: MutableMapping[str, np.ndarray]) -> None:
        """Take a saved state; its keys and shapes must be those this optimizer keeps."""
        expected = {k: v.shape for k, v in self.state.items()}
        found = {k: np.shape(v) for k, v in state.items()}
        if expected != found:
            raise ValueError(f"{self.name} keeps {sorted(expected)}, the saved state holds "
                             f"{sorted(found)}")
        for key, value in state.items():
            want = self.state[key].dtype
            if not np.can_cast(np.asarray(value).dtype, want, casting="same_kind"):
                raise ValueError(f"{key!r} holds {np.asarray(value).dtype}, which does not "
                                 f"convert safely to {want}")
            if want.kind == "i" and np.any(np.asarray(value) < 0):
                raise ValueError(f"{key!r} is a count, but holds a negative number")
            np.copyto(self.state[key], value, casting="same_kind")


class Momentum(Optimizer):
    """Heavy-ball momentum (Polyak 1964), as PyTorch writes it: ``v <- mu*v + g; w <- w - lr*v``."""

    name = "momentum"
    _SLOTS = ("velocity",)

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        v = state["velocity"]
        v *= self.config.momentum
        v += g
        w -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015, Algorithm 1), with bias correction of both moments.

    ``m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  m^ = m/(1-b1^t);  v^ = v/(1-b2^t);
    w <- w - lr * m^ / (sqrt(v^) + eps)``.  The step count ``t`` is state too.
    """

    name = "adam"
    _SLOTS = ("m", "v")

    def __init__(self, config: OptimizerConfig, lr: float,
                 params: MutableMapping[str, np.ndarray], **options: Any):
        super().__init__(config, lr, params, **options)
        self.state["t"] = np.zeros((), dtype=np.int64)

    def step(self, grads: MutableMapping[str, np.ndarray]) -> None:
        self.state["t"] += 1
        super().step(grads)

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        c, t = self.config, int(self.state["t"])
        m, v = state["m"], state["v"]
        m *= c.beta1
        m += (1.0 - c.beta1) * g
        v *= c.beta2
        v += (1.0 - c.beta2) * (g * g)
        w -= self.lr * (m / (1.0 - c.beta1 ** t)) / (np.sqrt(v / (1.0 - c.beta2 ** t)) + c.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter 2019; ``torch.optim.AdamW``):
    ``w <- w - lr*wd*w`` before the Adam step, instead of ``wd*w`` joining the gradient."""

    name = "adamw"
    decoupled = True


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in
                                          (Optimizer, Momentum, Adam, AdamW)}


def make_optimizer(config: OptimizerConfig, lr: float, params: MutableMapping[str, np.ndarray],
                   *, weight_decay: float = 0.0,
                   clip_grad_norm: float | None = None) -> Optimizer:
    """The optimizer that ``config`` names, with zero state; rebinds ``params`` to its packs."""
    return OPTIMIZERS[config.name](config, lr, params, weight_decay=weight_decay,
                                   clip_grad_norm=clip_grad_norm)
