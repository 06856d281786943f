"""Time per training epoch: ``engine train``'s loop against a hand-written NumPy loop.

Both train the same network (graphs/mlp.yaml: 13 -> 10 -> 3, Relu, Softmax, NLL
mean) on the same standardised Wine training rows, with the same batch size,
batch order and Adam, and both evaluate the train and validation loss and
accuracy at the end of each epoch, as ``engine train`` does.  Rounds are interleaved (engine,
NumPy, engine, NumPy, ...) so that a machine shared with other work slows both
alike; the reported figure is the median of the per-round ratios.

    python benchmarks/train_epoch.py [--rounds 15] [--epochs 20] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.runtime.feeds import tensor_rng  # noqa: E402
from engine.spec.loader import load  # noqa: E402
from engine.train.data import load_dataset  # noqa: E402
from engine.train.loop import NoProgress, Trainer  # noqa: E402


class NumpyMLP:
    """The network by hand: forward, the fused softmax-NLL gradient p - y, Adam."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, seed: int):
        self.p = {k: v.copy() for k, v in params.items()}
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t, self.lr = 0, lr
        self.rng = tensor_rng(seed, "train/order")

    def loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
        p = self.p
        h1 = x @ p["w1"] + p["b1"]
        a1 = np.maximum(h1, 0)
        logits = a1 @ p["w2"] + p["b2"]
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = e / e.sum(axis=-1, keepdims=True)
        return float(-np.sum(y * np.log(probs)) / len(x)), (h1, a1, probs)

    def step(self, x: np.ndarray, y: np.ndarray) -> None:
        p = self.p
        _, (h1, a1, probs) = self.loss(x, y)
        dlogits = (probs - y) / len(x)
        da1 = dlogits @ p["w2"].T
        dh1 = da1 * (h1 > 0)
        grads = {"w2": a1.T @ dlogits, "b2": dlogits.sum(axis=0),
                 "w1": x.T @ dh1, "b1": dh1.sum(axis=0, keepdims=True)}
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            mhat = self.m[k] / (1 - b1 ** self.t)
            vhat = self.v[k] / (1 - b2 ** self.t)
            p[k] -= self.lr * mhat / (np.sqrt(vhat) + eps)

    def epoch(self, train: dict[str, np.ndarray], val: dict[str, np.ndarray],
              batch_size: int) -> None:
        x, y = train["x"], train["y"]
        order = self.rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            self.step(x[index], y[index])
        for part in (train, val):  # loss and accuracy, as engine train reports them
            _, (_, _, probs) = self.loss(part["x"], part["y"])
            np.mean(np.argmax(probs, axis=-1) == np.argmax(part["y"], axis=-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved rounds (engine, NumPy) whose median ratio is reported")
    parser.add_argument("--epochs", type=int, default=20, help="epochs timed per round")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="rows per batch, for both loops")
    args = parser.parse_args()
    graph = load(ROOT / "graphs" / "mlp.yaml")
    assert graph.spec.train is not None
    config = graph.spec.train.model_copy(update={"batch_size": args.batch_size})
    seed = graph.spec.seed
    dataset = load_dataset(graph, config, graph.base_dir / str(config.data), seed)
    trainer = Trainer(graph, config, dataset, seed)
    by_hand = NumpyMLP(trainer.params, config.lr, seed)
    progress, never = NoProgress(), (lambda: False)
    # the same work: after one epoch from the same start both hold the same parameters
    trainer.train_epoch(progress, never)
    by_hand.epoch(dataset.train, dataset.val, args.batch_size)
    for name, value in trainer.params.items():
        np.testing.assert_allclose(value, by_hand.p[name], rtol=1e-9, atol=1e-12)

    def engine_epochs() -> None:
        for _ in range(args.epochs):
            trainer.train_epoch(progress, never)
            trainer.evaluate()

    def numpy_epochs() -> None:
        for _ in range(args.epochs):
            by_hand.epoch(dataset.train, dataset.val, args.batch_size)

    engine_epochs()  # warm up both (imports, caches)
    numpy_epochs()
    engine_times, numpy_times, ratios = [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        engine_epochs()
        middle = time.perf_counter()
        numpy_epochs()
        end = time.perf_counter()
        engine_times.append((middle - start) / args.epochs)
        numpy_times.append((end - middle) / args.epochs)
        ratios.append(engine_times[-1] / numpy_times[-1])
    batches = -(-dataset.n_train // args.batch_size)
    print(f"mlp 13-10-3, Adam, {dataset.n_train} training rows, batch size {args.batch_size} "
          f"({batches} batches/epoch), {args.rounds} rounds x {args.epochs} epochs")
    print(f"engine train epoch: median {statistics.median(engine_times) * 1e3:.3f} ms")
    print(f"NumPy by hand:      median {statistics.median(numpy_times) * 1e3:.3f} ms")
    print(f"ratio engine/NumPy: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
