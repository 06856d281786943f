"""The benchmark's workloads: each as a spec for the engine and as hand-written NumPy.

Every workload is float64, one forward then one backward.  The NumPy side is
what a person writes by hand: the lesson's staged softmax code for W1 and the
lesson's layer-by-layer dense network code for W2 (which, like any hand-written
layer, computes the gradient of every layer's input, the data's included); every
ratio in the table is against it.  The other sides, each shown only where its
library is installed (none is a dependency):
- ``engine jax``: the engine itself on ``--backend jax``, each step one call of the
  forward and backward it compiled with ``jax.jit`` (``Executor.forward_backward``),
  fed the same NumPy arrays as the engine's NumPy run (so each call also copies
  them to JAX);
- ``jax.jit``: the same staged graph written in ``jax.numpy``, differentiated by
  ``jax.value_and_grad`` and compiled by ``jax.jit`` (XLA sees the whole graph);
- ``PyTorch``: the same graph in eager autograd (one thread);
- ``PyTorch fused``: ``F.cross_entropy`` on the logits (W1, W2);
- ``fused NumPy``: softmax and cross-entropy by hand with the gradient p - y, the
  fastest a person writes them in NumPy (W1, W2).
Each side's step returns the gradient that ``Workload.check`` compares with the
lesson's before anything is timed.  A side is one entry of ``Workload.others``,
so another column is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import engine

Step = Callable[[], Any]


@dataclass
class Workload:
    """One row of the table: the engine, the lesson's NumPy and the other sides doing the
    same step; every step returns ``expected`` (a gradient) in its own array type."""

    group: str
    label: str
    engine: Step
    numpy: Step
    nodes: int  # graph nodes, for the per-node columns
    expected: np.ndarray
    others: dict[str, Step] = field(default_factory=dict)  # column name -> step
    rtol: float = 1e-9

    def check(self) -> None:
        """Raises AssertionError when a side's gradient is not the lesson's."""
        for name, step in {"engine": self.engine, **self.others}.items():
            np.testing.assert_allclose(_host(step()), self.expected, rtol=self.rtol,
                                       atol=1e-12, err_msg=f"{self.group} {self.label}: {name}")


#: The columns, in the table's order (the engine and the lesson's NumPy come first).
SIDES = ("engine jax", "jax.jit", "PyTorch", "PyTorch fused", "fused NumPy")


def _host(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        return array.detach().numpy()
    return np.asarray(array)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


def _jax() -> Any:
    """jax with float64 on (the workloads are float64), or None where it is not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


def _engine_jax(jax: Any, graph: engine.Graph, feeds: dict[str, np.ndarray], wrt: str
                ) -> Step:
    """The engine on the jax backend: one compiled forward and backward a step (compiled
    here, before it is timed); a step waits for the gradient of ``wrt`` and returns it."""
    ex = engine.Executor(graph, backend="jax")

    def run() -> Any:
        return ex.forward_backward(feeds)[1][wrt].block_until_ready()

    run()
    return run


# -- W1: the lesson's staged softmax, then NLL with reduction sum ----------------------------

W1_SPEC = """
name: w1
inputs:
  x: {{shape: [{rows}, {cols}], requires_grad: true}}
  y: {{shape: [{rows}, {cols}]}}
constants:
  minus_one: -1.0
nodes:
  raised:   {{op: Exp, inputs: [x]}}
  summed:   {{op: Sum, inputs: [raised], axis: -1, keepdims: true}}
  inverted: {{op: Pow, inputs: [summed, minus_one]}}
  softmax:  {{op: Mul, inputs: [raised, inverted]}}
  loss:     {{op: NLL, inputs: [softmax, y], reduction: sum}}
outputs: [loss]
loss: loss
"""


def lesson_softmax_step(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The lesson's staged softmax forward and backward, as written there, plus its NLL."""
    raised = np.exp(x)
    summed = np.sum(raised, axis=-1).reshape(-1, 1)
    pow_ = summed ** -1
    softmax = raised * pow_
    loss = -np.sum(y * np.log(softmax))
    loss_grad = -1 * y / softmax
    raised_grad = loss_grad * pow_
    pow_grad = loss_grad * raised
    pow_grad = np.sum(pow_grad, axis=-1).reshape(-1, 1)
    summed_grad = (-1 * summed ** -2) * pow_grad
    raised_grad_2 = np.ones_like(raised) * summed_grad
    raised_grad += raised_grad_2
    x_grad = raised_grad * np.exp(x)
    return float(loss), x_grad


def one_hot(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return np.eye(cols)[rng.integers(0, cols, size=rows)]


def fused_softmax_step(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Softmax and its NLL fused by hand: the row maximum subtracted, the loss from the log
    of the row sums, the gradient p - y (y's rows sum to 1)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    raised = np.exp(shifted)
    summed = raised.sum(axis=-1, keepdims=True)
    loss = -np.sum(y * (shifted - np.log(summed)))
    raised /= summed
    raised -= y
    return float(loss), raised


def w1(rows: int, cols: int) -> Workload:
    rng = np.random.default_rng(0)
    x, y = rng.random((rows, cols)), one_hot(rng, rows, cols)
    graph = engine.loads(W1_SPEC.format(rows=rows, cols=cols), file="w1.yaml")
    ex = engine.Executor(graph)
    feeds = {"x": x, "y": y}

    def run_engine() -> np.ndarray:
        ex.forward(feeds)
        return ex.backward()["x"]

    others: dict[str, Step] = {}
    jax = _jax()
    if jax is not None:
        jnp = jax.numpy

        def staged(x: Any, y: Any) -> Any:
            raised = jnp.exp(x)
            softmax = raised * jnp.sum(raised, axis=-1, keepdims=True) ** -1
            return -jnp.sum(y * jnp.log(softmax))

        others["engine jax"] = _engine_jax(jax, graph, feeds, "x")
        others["jax.jit"] = _jitted(jax, staged, jnp.asarray(x), jnp.asarray(y))
    torch = _torch()
    if torch is not None:
        tx, ty = torch.from_numpy(x.copy()), torch.from_numpy(y)

        def run_torch() -> Any:
            xr = tx.detach().requires_grad_()
            raised = torch.exp(xr)
            softmax = raised * raised.sum(dim=-1, keepdim=True) ** -1
            loss = -(ty * torch.log(softmax)).sum()
            loss.backward()
            return xr.grad

        def run_torch_fused() -> Any:
            xr = tx.detach().requires_grad_()
            torch.nn.functional.cross_entropy(xr, ty, reduction="sum").backward()
            return xr.grad

        others["PyTorch"], others["PyTorch fused"] = run_torch, run_torch_fused
    others["fused NumPy"] = lambda: fused_softmax_step(x, y)[1]
    return Workload("W1", f"{rows}x{cols}", run_engine, lambda: lesson_softmax_step(x, y), 5,
                    lesson_softmax_step(x, y)[1], others)


def _jitted(jax: Any, loss: Callable[..., Any], *args: Any, wrt: int = 0) -> Step:
    """``jax.jit(jax.value_and_grad(loss))`` on device-resident ``args``, compiled before it
    is timed; a step waits for the loss and the gradient and returns the gradient."""
    step = jax.jit(jax.value_and_grad(loss, argnums=wrt))

    def run() -> Any:
        value, grad = step(*args)
        value.block_until_ready()
        leaf = grad[0] if isinstance(grad, tuple) else grad
        leaf.block_until_ready()
        return leaf

    run()
    return run


# -- W2: the two-layer network x@W1+b1 -> Relu -> @W2+b2 -> softmax -> NLL --------------------

W2_SPEC = """
name: w2
inputs:
  x: {{shape: [{batch}, {n_in}]}}
  y: {{shape: [{batch}, {n_out}]}}
parameters:
  w1: {{shape: [{n_in}, {hidden}], init: {{normal: {{std: {std1}}}}}}}
  b1: {{shape: [{hidden}], init: zeros}}
  w2: {{shape: [{hidden}, {n_out}], init: {{normal: {{std: {std2}}}}}}}
  b2: {{shape: [{n_out}], init: zeros}}
nodes:
  z1:     {{op: MatMul, inputs: [x, w1]}}
  h1:     {{op: Add, inputs: [z1, b1]}}
  a1:     {{op: Relu, inputs: [h1]}}
  z2:     {{op: MatMul, inputs: [a1, w2]}}
  logits: {{op: Add, inputs: [z2, b2]}}
  probs:  {{op: Softmax, inputs: [logits]}}
  loss:   {{op: NLL, inputs: [probs, y], reduction: sum}}
outputs: [loss]
loss: loss
"""


def lesson_mlp_step(x: np.ndarray, y: np.ndarray,
                    layers: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The lesson's dense network: a forward loop keeping hiddens, a backward loop over layers.

    Softmax is the lesson's (row maximum subtracted first, then staged), its
    backward the lesson's staged one, and each layer's backward computes the
    gradient of the layer's input, as hand-written layer code does.
    """
    hiddens = [x]
    out = x
    for i, (w, b) in enumerate(layers):
        out = np.matmul(out, w) + b
        if i < len(layers) - 1:
            out = np.maximum(out, 0)
        hiddens.append(out)
    normalized = out - np.max(out, axis=-1).reshape(-1, 1)
    raised = np.exp(normalized)
    summed = np.sum(raised, axis=-1).reshape(-1, 1)
    pow_ = summed ** -1
    probs = raised * pow_
    loss = -np.sum(y * np.log(probs))
    loss_grad = -1 * y / probs
    raised_grad = loss_grad * pow_
    pow_grad = np.sum(loss_grad * raised, axis=-1).reshape(-1, 1)
    summed_grad = (-1 * summed ** -2) * pow_grad
    raised_grad += np.ones_like(raised) * summed_grad
    grad = raised_grad * np.exp(normalized)  # the row maximum is a constant shift: no gradient
    grads: dict[str, np.ndarray] = {"loss": np.asarray(loss)}
    for i in range(len(layers) - 1, -1, -1):
        if i != len(layers) - 1:
            grad = np.multiply(grad, np.heaviside(hiddens[i + 1], 0))
        grads[f"w{i + 1}"] = hiddens[i].T @ grad
        grads[f"b{i + 1}"] = np.sum(grad, axis=0)
        grad = grad @ layers[i][0].T
    return grads


def fused_mlp_step(x: np.ndarray, y: np.ndarray,
                   layers: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The same network with softmax and NLL fused by hand (gradient p - y), and no gradient
    for the data: the fastest a person writes it in NumPy."""
    (w1, b1), (w2, b2) = layers
    h1 = x @ w1 + b1
    a1 = np.maximum(h1, 0.0)
    logits = a1 @ w2 + b2
    loss, d_logits = fused_softmax_step(logits, y)
    grads: dict[str, np.ndarray] = {"loss": np.asarray(loss)}
    grads["w2"], grads["b2"] = a1.T @ d_logits, d_logits.sum(axis=0)
    d_h1 = d_logits @ w2.T
    d_h1 *= h1 > 0
    grads["w1"], grads["b1"] = x.T @ d_h1, d_h1.sum(axis=0)
    return grads


def w2(batch: int, n_in: int, hidden: int, n_out: int) -> Workload:
    rng = np.random.default_rng(1)
    x, y = rng.random((batch, n_in)), one_hot(rng, batch, n_out)
    spec = W2_SPEC.format(batch=batch, n_in=n_in, hidden=hidden, n_out=n_out,
                          std1=round(n_in ** -0.5, 6), std2=round(hidden ** -0.5, 6))
    graph = engine.loads(spec, file="w2.yaml")
    ex = engine.Executor(graph)
    layers = [(ex.parameters["w1"], ex.parameters["b1"]), (ex.parameters["w2"],
                                                           ex.parameters["b2"])]
    feeds = {"x": x, "y": y}

    def run_engine() -> np.ndarray:
        ex.forward(feeds)
        return ex.backward()["w1"]

    others: dict[str, Step] = {}
    jax = _jax()
    if jax is not None:
        jnp = jax.numpy

        def network(params: tuple[Any, ...], x: Any, y: Any) -> Any:
            w1, b1, w2, b2 = params
            logits = jnp.maximum(x @ w1 + b1, 0.0) @ w2 + b2
            return -jnp.sum(y * jnp.log(jax.nn.softmax(logits, axis=-1)))

        params = tuple(jnp.asarray(a) for pair in layers for a in pair)
        others["engine jax"] = _engine_jax(jax, graph, feeds, "w1")
        others["jax.jit"] = _jitted(jax, network, params, jnp.asarray(x), jnp.asarray(y))
    torch = _torch()
    if torch is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tensors = [torch.from_numpy(a.copy()) for pair in layers for a in pair]

        def logits_of(tw1: Any, tb1: Any, tw2: Any, tb2: Any) -> Any:
            return torch.relu(tx @ tw1 + tb1) @ tw2 + tb2

        def run_torch() -> Any:
            tw1, tb1, tw2, tb2 = (p.detach().requires_grad_() for p in tensors)
            logits = logits_of(tw1, tb1, tw2, tb2)
            loss = -(ty * torch.log(torch.softmax(logits, dim=-1))).sum()
            loss.backward()
            return tw1.grad

        def run_torch_fused() -> Any:
            tw1, tb1, tw2, tb2 = (p.detach().requires_grad_() for p in tensors)
            torch.nn.functional.cross_entropy(logits_of(tw1, tb1, tw2, tb2), ty,
                                              reduction="sum").backward()
            return tw1.grad

        others["PyTorch"], others["PyTorch fused"] = run_torch, run_torch_fused
    others["fused NumPy"] = lambda: fused_mlp_step(x, y, layers)["w1"]
    label = f"{n_in}-{hidden}-{n_out}, batch {batch}"
    return Workload("W2", label, run_engine, lambda: lesson_mlp_step(x, y, layers), 7,
                    lesson_mlp_step(x, y, layers)["w1"], others, rtol=1e-8)


# -- Chain: N alternating Mul-by-constant and Exp on a 4x4 array -----------------------------

CHAIN_FACTOR = -1.0  # x -> exp(-x) has an attracting fixed point: no overflow at any length


def chain_spec(length: int) -> str:
    lines = ["name: chain",
             "inputs: {x: {shape: [4, 4], requires_grad: true}}",
             f"constants: {{c: {CHAIN_FACTOR}}}", "nodes:"]
    previous = "x"
    for i in range(length):
        inputs = f"[{previous}, c]" if i % 2 == 0 else f"[{previous}]"
        lines.append(f"  n{i}: {{op: {'Mul' if i % 2 == 0 else 'Exp'}, inputs: {inputs}}}")
        previous = f"n{i}"
    lines += [f"  loss: {{op: Sum, inputs: [{previous}]}}", "loss: loss"]
    return "\n".join(lines) + "\n"


def chain_numpy(x: np.ndarray, length: int) -> np.ndarray:
    """The same chain by hand: a forward loop that keeps values, a backward loop."""
    values = [x]
    for i in range(length):
        values.append(values[-1] * CHAIN_FACTOR if i % 2 == 0 else np.exp(values[-1]))
    np.sum(values[-1])
    grad = np.ones_like(x)
    for i in range(length - 1, -1, -1):
        grad = grad * CHAIN_FACTOR if i % 2 == 0 else grad * values[i + 1]
    return grad


#: Longer chains are not compiled by jax.jit (nor the engine on jax): XLA's compile time
#: grows faster than the graph.
JAX_MAX_NODES = 2_000


def _x_gradient_sides(spec: str, file: str, x: np.ndarray, nodes: int,
                      graph_of: Callable[[Any, Any], Any]) -> tuple[Step, dict[str, Step]]:
    """The engine's run of a one-input graph returning d loss / d x, and the other sides:
    ``graph_of(namespace, x)`` builds the same graph in ``jax.numpy`` or ``torch``, its sum
    the loss."""
    graph = engine.loads(spec, file=file)
    ex = engine.Executor(graph)
    feeds = {"x": x}

    def run_engine() -> np.ndarray:
        ex.forward(feeds)
        return ex.backward()["x"]

    others: dict[str, Step] = {}
    jax = _jax() if nodes <= JAX_MAX_NODES else None
    if jax is not None:
        jnp = jax.numpy
        others["engine jax"] = _engine_jax(jax, graph, feeds, "x")
        others["jax.jit"] = _jitted(jax, lambda v: jnp.sum(graph_of(jnp, v)), jnp.asarray(x))
    torch = _torch()
    if torch is not None:
        tx = torch.from_numpy(x)

        def run_torch() -> Any:
            xr = tx.detach().requires_grad_()
            graph_of(torch, xr).sum().backward()
            return xr.grad

        others["PyTorch"] = run_torch
    return run_engine, others


def chain(length: int) -> Workload:
    x = np.random.default_rng(2).random((4, 4))

    def chain_of(xp: Any, v: Any) -> Any:
        for i in range(length):
            v = v * CHAIN_FACTOR if i % 2 == 0 else xp.exp(v)
        return v

    run_engine, others = _x_gradient_sides(chain_spec(length), "chain.yaml", x, length + 1,
                                           chain_of)
    return Workload("Chain", f"N = {length:,}", run_engine, lambda: chain_numpy(x, length),
                    length + 1, chain_numpy(x, length), others)


# -- Diamond: x = Exp(x) * (x * c), every value feeding two nodes ----------------------------

DIAMOND_FACTOR = 0.5


def diamond_spec(depth: int) -> str:
    lines = ["name: diamond",
             "inputs: {x: {shape: [4, 4], requires_grad: true}}",
             f"constants: {{c: {DIAMOND_FACTOR}}}", "nodes:"]
    previous = "x"
    for i in range(depth):
        lines += [f"  e{i}: {{op: Exp, inputs: [{previous}]}}",
                  f"  m{i}: {{op: Mul, inputs: [{previous}, c]}}",
                  f"  d{i}: {{op: Mul, inputs: [e{i}, m{i}]}}"]
        previous = f"d{i}"
    lines += [f"  loss: {{op: Sum, inputs: [{previous}]}}", "loss: loss"]
    return "\n".join(lines) + "\n"


def diamond_numpy(x: np.ndarray, depth: int) -> np.ndarray:
    """The diamond by hand, each shared value computed once and its two gradients summed."""
    saved = []
    for _ in range(depth):
        e, m = np.exp(x), x * DIAMOND_FACTOR
        saved.append((e, m))
        x = e * m
    np.sum(x)
    grad = np.ones_like(x)
    for e, m in reversed(saved):
        grad = grad * m * e + grad * e * DIAMOND_FACTOR
    return grad


def diamond(depth: int) -> Workload:
    x = -np.random.default_rng(3).random((4, 4))  # x <= 0 stays bounded through the levels

    def diamond_of(xp: Any, v: Any) -> Any:
        for _ in range(depth):
            v = xp.exp(v) * (v * DIAMOND_FACTOR)
        return v

    run_engine, others = _x_gradient_sides(diamond_spec(depth), "diamond.yaml", x,
                                           3 * depth + 1, diamond_of)
    return Workload("Diamond", f"depth {depth}", run_engine, lambda: diamond_numpy(x, depth),
                    3 * depth + 1, diamond_numpy(x, depth), others)
