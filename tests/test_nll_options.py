"""NLL's class weights, ignore_index and reduction none, against independent sources: ONNX's
own reference implementation of NegativeLogLikelihoodLoss (where onnx is installed; it takes
log-probabilities with the classes on axis 1), PyTorch's nll_loss (where torch is installed)
and a hand computation; and what the spec layer says about them (located errors, label checks,
lint, the fuse pass leaving them alone)."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest

import engine
from engine.ops import REGISTRY
from engine.runtime.backends import install_hint, installed
from engine.transform.optimize import optimize_spec

NLL = REGISTRY["NLL"]
RNG = np.random.default_rng(7)
PROBS = RNG.uniform(0.1, 1.0, size=(6, 4))
LABELS = np.array([0, 3, 1, -100, 2, 1])
WEIGHT = np.array([0.5, 2.0, 1.0, 3.0])

SETTINGS = [
    ({"reduction": r}, w, ii)
    for r in ("none", "sum", "mean") for w in (None, WEIGHT) for ii in (None, -100, 1)
]


def _engine(attrs: dict, weight, ignore: int | None, labels: np.ndarray) -> np.ndarray:
    inputs = (PROBS, labels) if weight is None else (PROBS, labels, weight)
    return np.asarray(NLL.forward(np, NLL.attrs(**attrs, ignore_index=ignore), *inputs))


def _labels(ignore: int | None) -> np.ndarray:
    return LABELS if ignore == -100 else np.where(LABELS == -100, 0, LABELS)


def test_the_weighted_mean_divides_by_the_weights_applied() -> None:
    """By hand: rows 0..5 with labels 0 3 1 (ignored) 2 1."""
    p, w = PROBS, WEIGHT
    picked = [(0, 0), (1, 3), (2, 1), (4, 2), (5, 1)]
    total = -sum(w[c] * np.log(p[r, c]) for r, c in picked)
    got = _engine({"reduction": "mean"}, WEIGHT, -100, LABELS)
    assert got == pytest.approx(total / sum(w[c] for _, c in picked), rel=1e-13)
    none = _engine({"reduction": "none"}, WEIGHT, -100, LABELS)
    assert none[3] == 0.0 and none[1] == pytest.approx(-w[3] * np.log(p[1, 3]), rel=1e-13)


@pytest.mark.skipif(find_spec("onnx") is None,
                    reason="onnx not installed: pip install onnx")
@pytest.mark.parametrize(("attrs", "weight", "ignore"), SETTINGS)
def test_equals_onnx_reference(attrs: dict, weight, ignore) -> None:
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    labels = _labels(ignore)
    names = ["logp", "t"] + ([] if weight is None else ["w"])
    extra = {} if ignore is None else {"ignore_index": ignore}
    node = helper.make_node("NegativeLogLikelihoodLoss", names, ["loss"],
                            reduction=attrs["reduction"], **extra)
    inputs = [helper.make_tensor_value_info("logp", TensorProto.DOUBLE, None),
              helper.make_tensor_value_info("t", TensorProto.INT64, None)]
    if weight is not None:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.DOUBLE, None))
    graph = helper.make_graph([node], "nll", inputs,
                              [helper.make_tensor_value_info("loss", TensorProto.DOUBLE, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"logp": np.log(PROBS), "t": labels}  # [N, C]: the class axis is axis 1 and last
    if weight is not None:
        feeds["w"] = weight
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    np.testing.assert_allclose(_engine(attrs, weight, ignore, labels), want, rtol=1e-12)


@pytest.mark.skipif(not installed("torch"), reason=f"torch not installed: {install_hint('torch')}")
@pytest.mark.parametrize(("attrs", "weight", "ignore"), SETTINGS)
def test_value_and_gradient_equal_torch(attrs: dict, weight, ignore) -> None:
    import torch

    labels = _labels(ignore)
    probs = torch.tensor(PROBS, requires_grad=True)
    loss = torch.nn.functional.nll_loss(
        torch.log(probs), torch.tensor(labels), reduction=attrs["reduction"],
        weight=None if weight is None else torch.tensor(weight),
        ignore_index=-100 if ignore is None else ignore)
    upstream = np.random.default_rng(3).normal(size=tuple(loss.shape))
    loss.backward(torch.tensor(upstream))
    got = _engine(attrs, weight, ignore, labels)
    np.testing.assert_allclose(got, loss.detach().numpy(), rtol=1e-12)
    node_attrs = NLL.attrs(**attrs, ignore_index=ignore)
    inputs = [PROBS, labels] + ([] if weight is None else [weight])
    parts = NLL.vjp(np, node_attrs, upstream, got, inputs, (True, False, False)[:len(inputs)])
    np.testing.assert_allclose(parts[0], probs.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_a_mean_over_ignored_rows_only_is_nan() -> None:
    with np.errstate(invalid="ignore"):
        got = _engine({"reduction": "mean"}, None, 5, np.full(6, 5))
    assert np.isnan(got)


SPEC = """\
name: weighted
inputs:
  x: {{shape: [batch, 3], init: ones, requires_grad: true}}
  y: {{shape: [batch], dtype: int64, init: {{labels: {{classes: 3}}}}}}
constants:
  w: {weight}
nodes:
  p: {{op: Softmax, inputs: [x]}}
  l: {{op: NLL, inputs: [p, y, w], {attrs}}}
loss: l
"""


def _spec(weight: str = "[1.0, 2.0, 0.5]", attrs: str = "reduction: mean") -> str:
    return SPEC.format(weight=weight, attrs=attrs)


def test_fed_ignored_labels_pass_the_label_check_and_others_do_not() -> None:
    ex = engine.Executor(engine.loads(_spec(attrs="reduction: mean, ignore_index: -100")))
    x = np.zeros((3, 3))
    ex.forward({"x": x, "y": np.array([0, -100, 2])})
    # uniform p: each kept row's loss is w[t] log 3, and the mean divides by w[0] + w[2]
    assert ex.loss == pytest.approx(np.log(3.0))
    with pytest.raises(engine.DataError, match=r"row 1 holds label -1, .*0\.\.2 \(or its "
                                               r"ignore_index -100\)"):
        ex.forward({"x": x, "y": np.array([0, -1, 2])})


def test_a_literal_ignored_label_is_accepted() -> None:
    spec = _spec(attrs="reduction: sum, ignore_index: 9").replace(
        "init: {labels: {classes: 3}}", "init: {value: [0, 9, 2]}").replace("[batch", "[3")
    graph = engine.loads(spec)
    loss = engine.Executor(graph).forward()
    assert graph.values["l"].shape == () and loss is not None


@pytest.mark.parametrize(("weight", "attrs", "message"), [
    ("[1.0, 2.0]", "reduction: mean",
     r"node 'l' \(NLL\): weight \[2\] must hold one number per class"),
    ("[[1.0, 2.0, 0.5]]", "reduction: mean",
     r"node 'l' \(NLL\): weight must hold one number per class, shape \[3\], got \[1, 3\]"),
    ("{value: [1, 2, 3], dtype: int64}", "reduction: mean",
     r"weight must be floating point, got int64"),
])
def test_a_wrong_weight_is_a_located_error(weight: str, attrs: str, message: str) -> None:
    with pytest.raises(engine.SpecError, match=r"<string>:\d+:\d+: .*" + message):
        engine.loads(_spec(weight, attrs))


def test_ignore_index_with_one_hot_rows_is_a_located_error() -> None:
    spec = _spec(attrs="ignore_index: 0").replace(
        "{shape: [batch], dtype: int64, init: {labels: {classes: 3}}}",
        "{shape: [batch, 3], init: one_hot}")
    with pytest.raises(engine.SpecError, match=r"ignore_index applies to class-index targets"):
        engine.loads(spec)


def test_reduction_none_is_not_a_loss_but_an_output() -> None:
    with pytest.raises(engine.SpecError, match=r"loss 'l' must be a scalar"):
        engine.loads(_spec(attrs="reduction: none"))
    spec = _spec(attrs="reduction: none").replace("loss: l", "outputs: [l]")
    out = engine.Executor(engine.loads(spec)).forward({"x": np.zeros((4, 3)),
                                                     "y": np.array([0, 1, 2, 1])})
    np.testing.assert_allclose(out["l"], np.log(3.0) * np.array([1.0, 2.0, 0.5, 2.0]))


@pytest.mark.parametrize(("weight", "message"), [
    ("[1.0, -2.0, 0.5]", r"class weight -2 \(class 1\) of NLL node 'l' is negative"),
    ("[0.0, 0.0, 0.0]", r"every class weight of NLL node 'l' is 0"),
])
def test_lint_warns_about_negative_or_zero_class_weights(weight: str, message: str) -> None:
    with pytest.raises(engine.SpecError, match=message):
        engine.loads(_spec(weight), strict=True)


@pytest.mark.parametrize("attrs", ["reduction: mean", "reduction: sum"])
def test_the_fuse_pass_leaves_weighted_nll_alone(attrs: str) -> None:
    """The cross-entropy rewrite knows only the unweighted NLL of one-hot rows."""
    spec = _spec(attrs=attrs).replace(
        "{shape: [batch], dtype: int64, init: {labels: {classes: 3}}}",
        "{shape: [batch, 3], init: one_hot}")
    made = optimize_spec(engine.loads(spec))
    fused = next(r for r in made.reports if r.name == "fuse")
    assert "l" not in [m.node for m in fused.matches]
    assert "CrossEntropy" not in [n.op.name for n in made.graph.nodes.values()]
