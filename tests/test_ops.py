"""Registry-driven op tests: every registered op is checked the day it is added."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest

from engine.graph.shapes import Dims
from engine.ops import REGISTRY, OpDef, Sample
from engine.testing.gradcheck import (
    analytic_vjp,
    central_difference,
    compare,
    numeric_vjp,
    sample_needs,
)

CASES = [
    pytest.param(op, sample, id=f"{name}-{index}-{sample.note}")
    for name, op in sorted(REGISTRY.items())
    for index, sample in enumerate(op.samples(np.random.default_rng(0)))
]


def test_every_op_has_samples_and_a_reference() -> None:
    for name, op in REGISTRY.items():
        samples = op.samples(np.random.default_rng(0))
        assert samples, f"op {name} has no sample inputs: it cannot be gradient-checked"
        assert len(samples) >= 2, f"op {name} needs several samples"
        assert op.doc, f"op {name} has no doc"


def test_binary_elementwise_ops_have_broadcasting_samples() -> None:
    for name in ("Add", "Sub", "Mul", "Div", "Pow"):
        samples = REGISTRY[name].samples(np.random.default_rng(0))
        assert any(a.shape != b.shape for a, b in (s.inputs for s in samples)), name


@pytest.mark.parametrize(("op", "sample"), CASES)
def test_forward_matches_numpy_reference(op: OpDef, sample: Sample) -> None:
    attrs = op.attrs(**sample.attrs)
    got = op.forward(np, attrs, *sample.inputs)
    want = op.reference(attrs, *sample.inputs)
    if np.asarray(want).dtype.kind in "bi":  # comparisons and casts: exact
        np.testing.assert_array_equal(got, want)
        assert np.asarray(got).dtype == np.asarray(want).dtype
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("op", "sample"), CASES)
def test_shape_rule_matches_actual_shape(op: OpDef, sample: Sample) -> None:
    attrs = op.attrs(**sample.attrs)
    predicted = op.shape(attrs, Dims(), *[x.shape for x in sample.inputs])
    assert tuple(predicted) == op.forward(np, attrs, *sample.inputs).shape


@pytest.mark.parametrize(("op", "sample"), CASES)
def test_vjp_matches_central_finite_differences(op: OpDef, sample: Sample) -> None:
    attrs = op.attrs(**sample.attrs)
    out = op.forward(np, attrs, *sample.inputs)
    upstream = np.random.default_rng(1).normal(size=np.shape(out))
    analytic = analytic_vjp(op, sample, upstream)
    for index, (x, needed) in enumerate(zip(sample.inputs, sample_needs(op, sample),
                                            strict=True)):
        if not needed:
            assert analytic[index] is None, f"{op.name} returned a gradient for input {index}"
            continue
        numeric = numeric_vjp(lambda *a: op.forward(np, attrs, *a), sample.inputs, index,
                              upstream)
        assert analytic[index] is not None
        assert analytic[index].shape == x.shape
        report = compare(f"{op.name} input {index}", analytic[index], numeric, atol=1e-7,
                         rtol=1e-6)
        assert report.ok, report


@pytest.mark.parametrize(("op", "sample"), CASES)
def test_runs_under_array_api_strict(op: OpDef, sample: Sample) -> None:
    """Forward and vjp use only the array API standard, so other array libraries can run them."""
    attrs = op.attrs(**sample.attrs)
    inputs = [xps.asarray(x) for x in sample.inputs]
    out = op.forward(xps, attrs, *inputs)
    np.testing.assert_allclose(np.asarray(out), op.forward(np, attrs, *sample.inputs),
                               rtol=1e-12, atol=1e-12)
    needs = sample_needs(op, sample)
    upstream = xps.ones_like(out)
    parts = op.vjp(xps, attrs, upstream, out, inputs, needs)
    want = op.vjp(np, attrs, np.ones_like(np.asarray(out)), np.asarray(out),
                  list(sample.inputs), needs)
    for part, ref in zip(parts, want, strict=True):
        assert (part is None) == (ref is None)
        if part is not None:
            np.testing.assert_allclose(np.asarray(part), ref, rtol=1e-12, atol=1e-12)


def test_vjp_skips_inputs_that_need_no_gradient() -> None:
    op = REGISTRY["MatMul"]
    a, b = np.ones((2, 3)), np.ones((3, 4))
    out = op.forward(np, op.attrs(), a, b)
    d_a, d_b = op.vjp(np, op.attrs(), np.ones_like(out), out, [a, b], (True, False))
    assert d_b is None and d_a.shape == (2, 3)


def test_relu_gradient_at_zero_is_zero() -> None:
    op = REGISTRY["Relu"]
    x = np.array([-1.0, 0.0, 2.0])
    (grad,) = op.vjp(np, op.attrs(), np.ones(3), op.forward(np, op.attrs(), x), [x], (True,))
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0])


def test_max_shares_the_gradient_of_a_tie_equally() -> None:
    op = REGISTRY["Max"]
    attrs = op.attrs(axis=-1)
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    out = op.forward(np, attrs, x)
    (grad,) = op.vjp(np, attrs, np.array([1.0, 1.0]), out, [x], (True,))
    np.testing.assert_array_equal(grad, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_pow_exponent_gradient_is_power_times_log_base() -> None:
    op = REGISTRY["Pow"]
    base, exponent = np.array([2.0, 3.0]), np.array([3.0, 0.5])
    out = op.forward(np, op.attrs(), base, exponent)
    _, d_exp = op.vjp(np, op.attrs(), np.ones(2), out, [base, exponent], (False, True))
    np.testing.assert_allclose(d_exp, base**exponent * np.log(base))


def test_pow_exponent_gradient_at_base_zero_is_the_limit() -> None:
    """d/dy x^y = x^y ln x: at x = 0 and y > 0 the limit is 0 (x^y -> 0 faster than ln x
    diverges; PyTorch's value), not 0 * -inf = NaN; at y < 0 the power is inf and so is
    nothing finite: NaN; at x < 0 ln x is not real: NaN. Checked against the one-sided
    difference quotient (x^(y+h) - x^y) / h at x = 0, which is exactly 0 for y > 0."""
    op = REGISTRY["Pow"]
    base, exponent = np.array([0.0, 0.0, 0.0, -2.0]), np.array([2.0, 0.5, -1.0, 3.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = op.forward(np, op.attrs(), base, exponent)
        _, d_exp = op.vjp(np, op.attrs(), np.ones(4), out, [base, exponent], (False, True))
    h = 1e-6
    quotient = (np.power(0.0, exponent[:2] + h) - np.power(0.0, exponent[:2])) / h
    np.testing.assert_array_equal(d_exp[:2], quotient)
    assert np.isnan(d_exp[2]) and np.isnan(d_exp[3])


def test_ops_declare_their_subgradient_conventions() -> None:
    for name in ("Relu", "Max", "Pow", "NLL"):
        assert REGISTRY[name].convention, f"{name} must document its convention"


@pytest.mark.parametrize(("op", "sample"), CASES)
def test_vjp_reads_only_what_the_op_declares(op: OpDef, sample: Sample) -> None:
    """The executor frees forward values a vjp does not declare it reads: the vjp must work
    when handed None in their place, and give the same gradients."""
    attrs = op.attrs(**sample.attrs)
    out = op.forward(np, attrs, *sample.inputs)
    upstream = np.random.default_rng(2).normal(size=np.shape(out))
    needs = sample_needs(op, sample)
    want = op.vjp(np, attrs, upstream, out, list(sample.inputs), needs)
    inputs = list(sample.inputs) if op.vjp_uses_inputs else [None] * len(sample.inputs)
    got = op.vjp(np, attrs, upstream, out if op.vjp_uses_output else None, inputs, needs)
    for part, ref in zip(got, want, strict=True):
        assert (part is None) == (ref is None)
        if part is not None:
            np.testing.assert_array_equal(part, ref)


FAST_CASES = [case for case in CASES
              if case.values[0].fast_forward or case.values[0].fast_vjp]


def test_fast_paths_sit_beside_some_rules() -> None:
    assert {case.values[0].name for case in FAST_CASES} >= {"Relu", "Mul", "Sum", "Softmax",
                                                           "NLL"}


@pytest.mark.parametrize(("op", "sample"), FAST_CASES)
def test_numpy_fast_paths_give_the_rules_numbers(op: OpDef, sample: Sample) -> None:
    """A fast path is a NumPy lowering of the rule: the same values (and the vjp reads only
    what the op declares), also on an input large enough to take its large-array branch."""
    attrs = op.attrs(**sample.attrs)
    rank = max(x.ndim for x in sample.inputs)
    grown = tuple(np.tile(x, (2048,) + (1,) * x.ndim)
                  if x.ndim == rank or (op.name == "NLL" and i < 2) else x  # not NLL's weight
                  for i, x in enumerate(sample.inputs))  # a batch axis in front: large arrays
    cases = [sample.inputs]
    if op.name in ("Mul", "Sum", "Mean", "NLL"):
        cases.append(grown)
    for inputs in cases:
        fast_forward, fast_vjp = op.lowered(True)
        out = op.forward(np, attrs, *inputs)
        np.testing.assert_allclose(fast_forward(np, attrs, *inputs), out, rtol=1e-13, atol=0)
        upstream = np.random.default_rng(3).normal(size=np.shape(out))
        needs = tuple(op.is_differentiable(i) for i in range(len(inputs)))
        want = op.vjp(np, attrs, upstream, out, list(inputs), needs)
        given = list(inputs) if op.vjp_uses_inputs else [None] * len(inputs)
        got = fast_vjp(np, attrs, upstream, out if op.vjp_uses_output else None, given, needs)
        for part, ref, x in zip(got, want, inputs, strict=True):
            assert (part is None) == (ref is None)
            if part is not None:
                np.testing.assert_allclose(part, np.broadcast_to(ref, part.shape), rtol=1e-12,
                                           atol=1e-15)
                assert part.ndim <= max(x.ndim, np.ndim(out))


def test_ops_that_need_less_say_so() -> None:
    """Declaring less than the vjp reads fails the test above; declaring more wastes memory."""
    reads = {name: (op.vjp_uses_inputs, op.vjp_uses_output) for name, op in REGISTRY.items()}
    assert reads["Add"] == reads["Neg"] == reads["Transpose"] == (False, False)
    assert reads["Exp"] == reads["Relu"] == reads["Softmax"] == (False, True)
    assert reads["Mul"] == reads["MatMul"] == reads["NLL"] == (True, False)


# -- second derivatives: the traced vjp, differentiated again ---------------------------------

def _op_spec(op: OpDef, sample: Sample, upstream: np.ndarray) -> str:
    """``s = Sum(Mul(op(inputs), u))`` as a spec, the sample's values as literal inits (a
    bool's as 0 and 1), in the sample's dtypes."""
    lines = ["name: second", "inputs:"]
    refs = []
    for i, x in enumerate(sample.inputs):
        x = np.asarray(x)
        value = x.astype(np.int64) if x.dtype == bool else x
        lines.append(f"  a{i}: {{shape: {list(x.shape)}, dtype: {x.dtype.name}, "
                     f"init: {{value: {value.tolist()}}}}}")
        refs.append(f"a{i}")
    lines.append(f"  u: {{shape: {list(upstream.shape)}, init: {{value: {upstream.tolist()}}}}}")
    attrs = "".join(f", {key}: {value!r}".replace("None", "null").replace("True", "true")
                    .replace("False", "false") for key, value in sample.attrs.items())
    lines += ["nodes:", f"  out: {{op: {op.name}, inputs: [{', '.join(refs)}]{attrs}}}",
              "  prod: {op: Mul, inputs: [out, u]}", "  s: {op: Sum, inputs: [prod]}",
              "outputs: [s]", "loss: s"]
    return "\n".join(lines) + "\n"


#: Ops whose vjp cannot be written as graph nodes yet, and why: engine grad refuses them with a
#: located message (checked below), and so does a second derivative through them.
NO_GRAPH_DERIVATIVE = {
    "Dropout": "with training: true its vjp reuses the forward's random mask, which no node "
               "holds; engine grad differentiates the evaluation pass (and says so)",
}


@pytest.mark.parametrize(("op", "sample"), CASES)
def test_second_derivative_matches_differences_of_the_first(op: OpDef, sample: Sample) -> None:
    """d/da_j and d/du of phi = sum_i <v_i, vjp_i(a, u)>, from the gradient graph differentiated
    again, against central differences of the runtime vjp (float64)."""
    import engine
    from engine.transform.grad import grad, reached
    from engine.transform.hvp import hvp_spec

    attrs = op.attrs(**sample.attrs)
    out = np.asarray(op.forward(np, attrs, *sample.inputs))
    needs = sample_needs(op, sample)
    if out.dtype.kind != "f" or not any(needs):
        # nothing flows back: the first derivative is absent, the second zero
        assert not any(p is not None for p in analytic_vjp(op, sample, np.ones(out.shape))
                       if out.dtype.kind == "f"), op.name
        # integers and bools never get a gradient (an engine-wide rule): a float must say why
        assert op.convention or not any(np.asarray(x).dtype.kind == "f"
                                        for x in sample.inputs), \
            f"{op.name} must say why it passes no gradient"
        return
    if out.size == 0 or any(np.size(x) == 0 for x in sample.inputs):
        return  # nothing to differentiate
    rng = np.random.default_rng(3)
    upstream = rng.normal(size=out.shape)
    graph = engine.loads(_op_spec(op, sample, upstream), file="second.yaml")
    if op.name in NO_GRAPH_DERIVATIVE and not (op.name == "Dropout" and
                                               not sample.attrs.get("training")):
        with pytest.raises(engine.EngineError, match=rf"node 'out' \({op.name}, second.yaml:\d+:"
                                                     r"\d+\)[:a-z ]*(its derivative|random mask)"):
            grad(graph, [f"a{i}" for i, need in enumerate(needs) if need])
        return
    wrt = [f"a{i}" for i, need in enumerate(needs) if need]
    made = hvp_spec(graph, wrt)
    dot = engine.loads(made.text, file="second_hvp.yaml")
    vectors = {t: rng.normal(size=np.shape(sample.inputs[int(t[1:])])) for t in wrt}
    linear = [t for t in [*wrt, "u"] if t not in reached(dot)]  # their second derivative is 0
    twice = grad(dot, [t for t in [*wrt, "u"] if t not in linear])
    got = engine.Executor(twice).forward({made.vectors[t]: v for t, v in vectors.items()})
    shapes = {t: np.shape(sample.inputs[int(t[1:])]) for t in wrt} | {"u": upstream.shape}
    second = {t: got[twice.gradients[t]] for t in twice.gradients} | \
        {t: np.zeros(shapes[t]) for t in linear}

    def phi(inputs: list[np.ndarray], u: np.ndarray) -> float:
        parts = analytic_vjp(op, Sample(tuple(inputs), sample.attrs), u)
        return sum(float(np.sum(vectors[t] * parts[int(t[1:])])) for t in wrt)

    inputs = [np.asarray(x) for x in sample.inputs]
    for t in wrt:
        j = int(t[1:])
        numeric = central_difference(
            lambda x, j=j: phi([*inputs[:j], x, *inputs[j + 1:]], upstream), inputs[j], 1e-5)
        report = compare(f"{op.name} d2/d{t}", second[t], numeric, atol=1e-6, rtol=1e-5)
        assert report.ok, report
    numeric_u = central_difference(lambda u: phi(inputs, u), upstream, 1e-5)
    report = compare(f"{op.name} d2/du", second["u"], numeric_u, atol=1e-6, rtol=1e-5)
    assert report.ok, report


def test_pow_exponent_gradient_at_base_zero_is_zero_as_pytorch() -> None:
    """d/de x^e at x = 0 is the limit 0 for e > 0 (it was 0 * -inf = NaN)."""
    op = REGISTRY["Pow"]
    base, exponent = np.array([0.0, 0.0, 2.0]), np.array([2.0, 0.5, 3.0])
    out = op.forward(np, op.attrs(), base, exponent)
    _, d_exp = op.vjp(np, op.attrs(), np.ones(3), out, [base, exponent], (False, True))
    np.testing.assert_allclose(d_exp, [0.0, 0.0, 8.0 * np.log(2.0)])
    with np.errstate(invalid="ignore"):
        _, negative = op.vjp(np, op.attrs(), np.ones(1), np.array([4.0]),
                             [np.array([-2.0]), np.array([2.0])], (False, True))
    assert np.isnan(negative).all()  # base < 0: no derivative in the exponent (convention)


def test_piecewise_linear_ops_state_their_zero_second_derivative() -> None:
    for name in ("Relu", "Max", "Greater", "Less", "Equal", "Count"):
        convention = REGISTRY[name].convention
        assert "second derivative" in convention and ("0" in convention or "zero" in convention)
