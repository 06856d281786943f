"""What the registry tests cannot see: subgradient conventions at kinks, ONNX semantics of
the indexing ops, Dropout's modes through the executor, and numerical robustness.

Every expectation is written by hand or computed by independent NumPy code.
"""

from __future__ import annotations

import json
import math
import shutil
import textwrap

import numpy as np
import pytest
from conftest import GRAPHS

import engine
from engine.cli.main import main
from engine.ops import REGISTRY
from engine.train.checkpoint import load_checkpoint


def vjp(name: str, inputs: list[np.ndarray], upstream: np.ndarray | None = None, **attrs):
    op = REGISTRY[name]
    parsed = op.attrs(**attrs)
    out = op.forward(np, parsed, *inputs)
    g = np.ones_like(out) if upstream is None else upstream
    needs = tuple(op.is_differentiable(i) for i in range(len(inputs)))
    return op.vjp(np, parsed, g, out, inputs, needs)


def test_conventions_are_declared() -> None:
    for name in ("Abs", "Clip", "Maximum", "Minimum", "Gather", "Dropout", "Sqrt"):
        assert REGISTRY[name].convention, name


def test_abs_gradient_at_zero_is_zero() -> None:
    (grad,) = vjp("Abs", [np.array([-2.0, 0.0, 3.0])])
    np.testing.assert_array_equal(grad, [-1.0, 0.0, 1.0])


def test_clip_passes_the_gradient_at_its_bounds_and_not_beyond() -> None:
    (grad,) = vjp("Clip", [np.array([-1.5, -1.0, 0.0, 1.0, 1.5])], min=-1.0, max=1.0)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 1.0, 0.0])


def test_clip_refuses_reversed_bounds() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        REGISTRY["Clip"].attrs(min=2.0, max=1.0)


@pytest.mark.parametrize(("name", "winner"), [("Maximum", [1.0, 0.5, 0.0]),
                                              ("Minimum", [0.0, 0.5, 1.0])])
def test_extrema_split_the_gradient_of_a_tie(name: str, winner: list[float]) -> None:
    a, b = np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0])
    d_a, d_b = vjp(name, [a, b])
    np.testing.assert_array_equal(d_a, winner)
    np.testing.assert_array_equal(d_b, 1.0 - np.array(winner))


def test_gather_adds_the_gradients_of_repeated_indices() -> None:
    table = np.arange(12.0).reshape(4, 3)
    indices = np.array([[1, 1, 3], [1, -1, 0]])  # row 1 three times, row 3 twice (-1)
    upstream = np.random.default_rng(0).normal(size=(2, 3, 3))
    d_table, d_indices = vjp("Gather", [table, indices], upstream, axis=0)
    want = np.zeros_like(table)
    np.add.at(want, indices % 4, upstream)  # NumPy's own scatter-add
    np.testing.assert_allclose(d_table, want, rtol=1e-15)
    assert d_indices is None


def test_gather_out_of_range_index_is_a_located_data_error(build) -> None:
    graph = build("""
        name: g
        inputs:
          table: {shape: [4, 2], init: ones, requires_grad: true}
          ids: {shape: [3], dtype: int64, init: zeros}
        nodes:
          rows: {op: Gather, inputs: [table, ids]}
        outputs: [rows]
    """)
    with pytest.raises(engine.DataError, match=r"node 'rows' \(Gather, test.yaml:7:3\)"):
        engine.Executor(graph).forward({"ids": np.array([0, 4, 1])})


def test_gather_refuses_float_indices_at_load(build) -> None:
    # the rule's own advice, and not the float-dtype hint meant for ops that want floats
    with pytest.raises(engine.SpecError, match=r"indices must be int64 \(declare them with "
                       r"dtype: int64\), got float64 \(table is float64, ids is float64\)$"):
        build("""
            name: g
            inputs:
              table: {shape: [4, 2]}
              ids: {shape: [3]}
            nodes:
              rows: {op: Gather, inputs: [table, ids]}
        """)


@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), [
    ([1], [-1], None, None),
    ([-2], [-2**63], [0], [-1]),       # ONNX's INT_MIN end: down to the first element
    ([0, 2**63 - 1], [2**63 - 1, -2**63], [0, 1], [2, -3]),
    ([10], [20], [1], None),           # clamped: empty
])
def test_slice_follows_onnx(starts, ends, axes, steps) -> None:
    x = np.arange(30.0).reshape(5, 6)
    attrs = REGISTRY["Slice"].attrs(starts=starts, ends=ends, axes=axes, steps=steps)
    got = REGISTRY["Slice"].forward(np, attrs, x)
    # ONNX's definition: clamp start to [0, dim] ([0, dim-1] for negative steps) and end to
    # [0, dim] ([-1, dim-1]), after adding dim to negative values.
    index = [slice(None)] * 2
    for i, axis in enumerate(axes if axes is not None else range(len(starts))):
        dim, step = x.shape[axis], (steps or [1] * len(starts))[i]
        start, end = starts[i], ends[i]
        start += dim if start < 0 else 0
        end += dim if end < 0 else 0
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        index[axis] = np.arange(start, end, step)
    np.testing.assert_array_equal(got, x[np.ix_(*[np.arange(d)[s] if isinstance(s, slice)
                                                   else s for d, s in zip(x.shape, index,
                                                                          strict=True)])])


def test_concat_takes_any_number_of_inputs_but_not_none(build) -> None:
    graph = build("""
        name: c
        inputs:
          a: {shape: [2, 1], init: zeros}
          b: {shape: [2, 2], init: ones}
        nodes:
          joined: {op: Concat, inputs: [a, b, a, b], axis: 1}
        outputs: [joined]
    """)
    assert graph.values["joined"].shape == (2, 6)
    with pytest.raises(engine.SpecError, match=r"takes 1 or more inputs \(inputs\), found 0"):
        build("""
            name: c
            nodes:
              joined: {op: Concat, inputs: [], axis: 0}
        """)


def test_erf_matches_python_at_the_extremes() -> None:
    x = np.array([-40.0, -6.0, -1e-8, 0.0, 1e-300, 0.3, 1.9999999, 2.0, 5.5, 26.0])
    got = REGISTRY["Erf"].forward(np, REGISTRY["Erf"].attrs(), x)
    np.testing.assert_allclose(got, [math.erf(v) for v in x], rtol=2e-15, atol=1e-300)


def test_softplus_does_not_overflow() -> None:
    x = np.array([-800.0, 0.0, 800.0])
    got = REGISTRY["Softplus"].forward(np, REGISTRY["Softplus"].attrs(), x)
    np.testing.assert_allclose(got, [0.0, math.log(2.0), 800.0], rtol=1e-15)
    (grad,) = vjp("Softplus", [x])
    np.testing.assert_allclose(grad, [0.0, 0.5, 1.0], rtol=1e-15)


def test_layer_norm_is_accurate_on_a_large_offset() -> None:
    """E[x^2] - E[x]^2 would lose every digit here; the centred two-pass form keeps them."""
    rng = np.random.default_rng(0)
    small = rng.normal(size=(3, 8))
    op = REGISTRY["LayerNorm"]
    attrs = op.attrs(eps=1e-12)
    got = op.forward(np, attrs, 1e8 + small)
    centred = small - small.mean(axis=-1, keepdims=True)
    want = centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(got, want, atol=1e-7)
    (d_x, *_) = vjp("LayerNorm", [1e8 + small], np.ones((3, 8)), eps=1e-12)
    np.testing.assert_allclose(d_x, 0.0, atol=1e-7)  # a shift of the row changes nothing


DROPOUT_SPEC = """
    name: drop
    seed: 3
    inputs:
      x: {shape: [200, 50], init: ones, requires_grad: true}
    nodes:
      a: {op: Dropout, inputs: [x], rate: 0.3}
      b: {op: Dropout, inputs: [x], rate: 0.3}
      both: {op: Add, inputs: [a, b]}
      loss: {op: Sum, inputs: [both]}
    outputs: [a, b]
    loss: loss
"""


def test_dropout_is_the_identity_unless_training() -> None:
    graph = engine.loads(textwrap.dedent(DROPOUT_SPEC), file="drop.yaml")
    out = engine.Executor(graph).forward()
    np.testing.assert_array_equal(out["a"], 1.0)


def test_dropout_in_training_drops_at_its_rate_and_scales_the_rest() -> None:
    graph = engine.loads(textwrap.dedent(DROPOUT_SPEC), file="drop.yaml")
    ex = engine.Executor(graph, training=True)
    out = ex.forward()
    a, b = np.asarray(out["a"]), np.asarray(out["b"])
    assert set(np.unique(a)) == {0.0, 1.0 / 0.7}
    assert abs(np.mean(a == 0) - 0.3) < 0.02  # 10,000 draws: 4 standard deviations
    assert not np.array_equal(a, b), "two Dropout nodes must draw different masks"
    grads = ex.backward()
    np.testing.assert_array_equal(grads["x"], a + b)  # the derivative is the mask itself


def test_dropout_masks_depend_on_seed_and_step_only() -> None:
    graph = engine.loads(textwrap.dedent(DROPOUT_SPEC), file="drop.yaml")
    first, again = (engine.Executor(graph, training=True) for _ in range(2))
    mask = np.asarray(first.forward()["a"])
    np.testing.assert_array_equal(again.forward()["a"], mask)
    again.step = 1
    assert not np.array_equal(again.forward()["a"], mask)
    other_seed = engine.Executor(graph, training=True, seed=4)
    assert not np.array_equal(other_seed.forward()["a"], mask)
    again.training = False
    np.testing.assert_array_equal(again.forward()["a"], 1.0)


def test_training_with_dropout_resumes_bit_for_bit(tmp_path, capsys) -> None:
    """The masks depend on (seed, step, node) only, so a resumed run draws the same ones."""
    (tmp_path / "data").mkdir()
    shutil.copy(GRAPHS / "data" / "wine.csv", tmp_path / "data" / "wine.csv")
    text = (GRAPHS / "mlp.yaml").read_text().replace(
        "  z2:     {op: MatMul, inputs: [a1, w2]}",
        "  d1:     {op: Dropout, inputs: [a1], rate: 0.5}\n"
        "  z2:     {op: MatMul, inputs: [d1, w2]}")
    assert "Dropout" in text
    spec = tmp_path / "drop.yaml"
    spec.write_text(text)

    def train(*args: str) -> dict:
        code = main(["train", str(spec), "--json", *args])
        out = capsys.readouterr().out
        assert code == 0, out
        return json.loads(out)

    whole, half = tmp_path / "whole.npz", tmp_path / "half.npz"
    straight = train("--epochs", "4", "--save", str(whole))
    train("--epochs", "2", "--save", str(half))
    resumed = train("--epochs", "4", "--resume", str(half), "--save", str(half))
    a, b = load_checkpoint(whole), load_checkpoint(half)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert straight["history"] == resumed["history"]
    spec.write_text(text.replace("rate: 0.5", "rate: 0.0"))
    plain = tmp_path / "plain.npz"
    train("--epochs", "4", "--save", str(plain))
    assert not np.array_equal(load_checkpoint(plain).params["w1"], a.params["w1"]), \
        "Dropout changed nothing: training did not run in training mode"
