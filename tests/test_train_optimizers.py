"""The optimizers against their published update equations, on steps computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.train.optimizers import make_optimizer
from schemas.train import OptimizerConfig


def steps(config: OptimizerConfig, lr: float, w0: list[float],
          grads: list[list[float]], **options: float) -> list[np.ndarray]:
    params = {"w": np.array(w0)}
    opt = make_optimizer(config, lr, params, **options)
    seen = []
    for g in grads:
        opt.step({"w": np.array(g)})
        seen.append(params["w"].copy())
    return seen


def test_one_sgd_step_is_w_minus_lr_g() -> None:
    (w1,) = steps(OptimizerConfig(name="sgd"), 0.1, [1.0, 2.0], [[0.5, -1.0]])
    np.testing.assert_allclose(w1, [1.0 - 0.05, 2.0 + 0.1], rtol=0, atol=1e-15)


def test_momentum_two_steps_by_hand() -> None:
    # v1 = g1 = [1, -2]; w1 = [1, 1] - 0.1 v1 = [0.9, 1.2]
    # v2 = 0.9 v1 + g2 = [1.4, -1.3]; w2 = w1 - 0.1 v2 = [0.76, 1.33]
    w1, w2 = steps(OptimizerConfig(name="momentum", momentum=0.9), 0.1, [1.0, 1.0],
                   [[1.0, -2.0], [0.5, 0.5]])
    np.testing.assert_allclose(w1, [0.9, 1.2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w2, [0.76, 1.33], rtol=0, atol=1e-15)


def test_adam_two_steps_with_bias_correction_by_hand() -> None:
    # Kingma and Ba (2015), Algorithm 1, with b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 0.1.
    # t=1, g=2:  m = 0.2, v = 0.004; m^ = 0.2/0.1 = 2, v^ = 0.004/0.001 = 4;
    #            w = 1 - 0.1 * 2 / (2 + 1e-8)
    # t=2, g=-1: m = 0.18 - 0.1 = 0.08, v = 0.003996 + 0.001 = 0.004996;
    #            m^ = 0.08/0.19, v^ = 0.004996/0.001999; w -= 0.1 m^ / (sqrt(v^) + 1e-8)
    w1, w2 = steps(OptimizerConfig(name="adam"), 0.1, [1.0], [[2.0], [-1.0]])
    expected1 = 1.0 - 0.1 * 2.0 / (2.0 + 1e-8)
    expected2 = expected1 - 0.1 * (0.08 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8)
    assert w1[0] == pytest.approx(expected1, rel=1e-14)
    assert w2[0] == pytest.approx(expected2, rel=1e-13)
    # without bias correction the first step would be 0.1 * 0.2 / (sqrt(0.004) + eps) = 0.316
    assert abs(1.0 - w1[0] - 0.1) < 1e-6


def test_state_round_trips_and_a_foreign_state_is_refused() -> None:
    params = {"w": np.ones(3)}
    adam = make_optimizer(OptimizerConfig(name="adam"), 0.1, params)
    adam.step({"w": np.full(3, 0.5)})
    fresh = make_optimizer(OptimizerConfig(name="adam"), 0.1, {"w": np.ones(3)})
    fresh.load_state(adam.state)
    assert int(fresh.state["t"]) == 1
    np.testing.assert_array_equal(fresh.state["m/w"], adam.state["m/w"])
    momentum = make_optimizer(OptimizerConfig(name="momentum"), 0.1, {"w": np.ones(3)})
    with pytest.raises(ValueError, match="momentum keeps"):
        momentum.load_state(adam.state)


def test_parameters_of_several_shapes_and_dtypes_update_like_one_at_a_time() -> None:
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,)).astype(np.float32),
              "c": rng.normal(size=(1, 4))}
    grads = {k: rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}
    together = {k: v.copy() for k, v in params.items()}
    make_optimizer(OptimizerConfig(name="momentum"), 0.1, together).step(grads)
    for name, w in params.items():
        alone = {name: w.copy()}
        make_optimizer(OptimizerConfig(name="momentum"), 0.1, alone).step({name: grads[name]})
        np.testing.assert_array_equal(together[name], alone[name])
        assert together[name].dtype == w.dtype and together[name].shape == w.shape
        np.testing.assert_allclose(together[name], w - 0.1 * grads[name], rtol=1e-6)


def test_weight_decay_joins_the_gradient_for_sgd_and_momentum() -> None:
    # L2: g' = g + wd*w.  sgd: w1 = 2 - 0.1 * (1 + 0.5*2) = 1.8
    (w1,) = steps(OptimizerConfig(name="sgd"), 0.1, [2.0], [[1.0]], weight_decay=0.5)
    assert w1[0] == pytest.approx(1.8, abs=1e-15)
    # momentum: v1 = g1' = 2, w1 = 1.8; v2 = 0.9*2 + (1 + 0.5*1.8) = 3.7, w2 = 1.8 - 0.37
    _, w2 = steps(OptimizerConfig(name="momentum"), 0.1, [2.0], [[1.0], [1.0]],
                  weight_decay=0.5)
    assert w2[0] == pytest.approx(1.43, abs=1e-14)


def test_adamw_decays_the_weights_apart_from_the_adam_step() -> None:
    # Loshchilov and Hutter (2019), Algorithm 2 with schedule multiplier 1, as torch.optim.AdamW:
    # w1 = w0 * (1 - lr*wd) - lr * m^/(sqrt(v^) + eps), and m^/sqrt(v^) = g/|g| at t = 1.
    (w1,) = steps(OptimizerConfig(name="adamw"), 0.1, [3.0], [[2.0]], weight_decay=0.2)
    assert w1[0] == pytest.approx(3.0 * (1 - 0.02) - 0.1 * 2.0 / (2.0 + 1e-8), rel=1e-14)
    # adam with L2 instead: the decay joins g, and Adam's normalisation cancels most of it
    (coupled,) = steps(OptimizerConfig(name="adam"), 0.1, [3.0], [[2.0]], weight_decay=0.2)
    assert coupled[0] == pytest.approx(3.0 - 0.1 * 2.6 / (2.6 + 1e-8), rel=1e-14)


def test_clip_grad_norm_scales_the_global_norm_over_all_parameters() -> None:
    # g = ([3], [4]) has global norm 5; clipped to 1 it is ([0.6], [0.8])
    params = {"a": np.array([1.0]), "b": np.array([1.0], dtype=np.float32)}
    opt = make_optimizer(OptimizerConfig(name="sgd"), 1.0, params, clip_grad_norm=1.0)
    opt.step({"a": np.array([3.0]), "b": np.array([4.0], dtype=np.float32)})
    np.testing.assert_allclose(params["a"], [0.4], atol=1e-15)
    np.testing.assert_allclose(params["b"], [0.2], atol=1e-7)
    assert opt.grad_norm() == pytest.approx(1.0, rel=1e-7)
    # a norm under the limit is left alone
    (w1,) = steps(OptimizerConfig(name="sgd"), 1.0, [0.0], [[0.5]], clip_grad_norm=1.0)
    assert w1[0] == -0.5


def test_every_optimizer_name_has_one_implementation() -> None:
    """The names live in schemas.train alone; the engine implements exactly those."""
    from engine.train.optimizers import OPTIMIZERS as IMPLEMENTED
    from schemas.train import OPTIMIZERS

    assert sorted(IMPLEMENTED) == sorted(OPTIMIZERS)
