"""The optimizers, each a small class whose whole state is a dict of arrays.

The state is explicit (not hidden in closures) so that a checkpoint can save it
and a resumed run continues bit for bit.  ``step`` updates the parameters in
place: the executor owns them, and no copy is made per batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from schemas.train import OptimizerConfig

Arrays = Mapping[str, np.ndarray]


class Optimizer:
    """Plain SGD: ``w <- w - lr * g``.  Subclasses add state."""

    name = "sgd"

    def __init__(self, config: OptimizerConfig, lr: float, params: Arrays):
        self.config = config
        self.lr = lr
        self.state: dict[str, np.ndarray] = self._initial_state(params)

    def _initial_state(self, params: Arrays) -> dict[str, np.ndarray]:
        return {}

    def step(self, params: Arrays, grads: Arrays) -> None:
        for name, w in params.items():
            w -= self.lr * grads[name]

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Take a saved state; its keys and shapes must be those this optimizer keeps."""
        expected = {k: v.shape for k, v in self.state.items()}
        found = {k: np.shape(v) for k, v in state.items()}
        if expected != found:
            raise ValueError(f"{self.name} keeps {sorted(expected)}, the saved state holds "
                             f"{sorted(found)}")
        self.state = {k: np.array(v, dtype=self.state[k].dtype) for k, v in state.items()}


class Momentum(Optimizer):
    """Heavy-ball momentum (Polyak 1964), as PyTorch writes it: ``v <- mu*v + g; w <- w - lr*v``."""

    name = "momentum"

    def _initial_state(self, params: Arrays) -> dict[str, np.ndarray]:
        return {f"velocity/{name}": np.zeros_like(w) for name, w in params.items()}

    def step(self, params: Arrays, grads: Arrays) -> None:
        mu = self.config.momentum
        for name, w in params.items():
            v = self.state[f"velocity/{name}"]
            v *= mu
            v += grads[name]
            w -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015, Algorithm 1), with bias correction of both moments.

    ``m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  m^ = m/(1-b1^t);  v^ = v/(1-b2^t);
    w <- w - lr * m^ / (sqrt(v^) + eps)``.
    """

    name = "adam"

    def _initial_state(self, params: Arrays) -> dict[str, np.ndarray]:
        state = {"t": np.zeros((), dtype=np.int64)}
        for name, w in params.items():
            state[f"m/{name}"] = np.zeros_like(w)
            state[f"v/{name}"] = np.zeros_like(w)
        return state

    def step(self, params: Arrays, grads: Arrays) -> None:
        c = self.config
        t = int(self.state["t"]) + 1
        self.state["t"] = np.array(t, dtype=np.int64)
        m_scale = 1.0 / (1.0 - c.beta1 ** t)
        v_scale = 1.0 / (1.0 - c.beta2 ** t)
        for name, w in params.items():
            g = grads[name]
            m, v = self.state[f"m/{name}"], self.state[f"v/{name}"]
            m *= c.beta1
            m += (1.0 - c.beta1) * g
            v *= c.beta2
            v += (1.0 - c.beta2) * (g * g)
            w -= self.lr * (m * m_scale) / (np.sqrt(v * v_scale) + c.eps)


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (Optimizer, Momentum, Adam)}


def make_optimizer(config: OptimizerConfig, lr: float, params: Arrays) -> Optimizer:
    """The optimizer that ``config`` names, with zero state for ``params``."""
    return OPTIMIZERS[config.name](config, lr, params)
