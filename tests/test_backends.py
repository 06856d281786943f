"""Every op and every example graph on every installed array library, against NumPy.

The ops' rules are array-API code; these tests run them on PyTorch (CPU), JAX and
Dask through ``engine.runtime.backends``.  Forward values are compared with each
op's independent NumPy reference, gradients with central finite differences of
that reference (float64), and whole graphs with the NumPy backend to 1e-10.  A
library that is not installed skips its tests, with the pip command as the reason.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.errors import EngineError
from engine.ops import REGISTRY, OpDef, Sample
from engine.runtime import backends
from engine.runtime.backends import get_backend, install_hint, installed, to_numpy
from engine.runtime.kernels import sum_to
from engine.testing.gradcheck import compare, numeric_vjp, sample_needs

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
OTHERS = ("torch", "jax", "dask")


def _backend_param(name: str):
    return pytest.param(name, id=name, marks=pytest.mark.skipif(
        not installed(name), reason=f"backend {name} is not installed: {install_hint(name)}"))


BACKEND_PARAMS = [_backend_param(name) for name in OTHERS]

OP_CASES = [
    pytest.param(name, index, id=f"{name}-{index}-{sample.note}")
    for name, op in sorted(REGISTRY.items())
    for index, sample in enumerate(op.samples(np.random.default_rng(0)))
]


def _sample(name: str, index: int) -> tuple[OpDef, Sample]:
    op = REGISTRY[name]
    return op, op.samples(np.random.default_rng(0))[index]


def _on(backend: backends.Backend, array: np.ndarray):
    return backend.asarray(array, np.asarray(array).dtype.name)


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
@pytest.mark.parametrize(("name", "index"), OP_CASES)
def test_op_forward_matches_the_numpy_reference(backend_name: str, name: str, index: int) -> None:
    op, sample = _sample(name, index)
    backend = get_backend(backend_name)
    attrs = op.attrs(**sample.attrs)
    lacking = [x.dtype.name for x in sample.inputs if x.dtype.name in backends.LACKS.get(
        backend_name, ())]
    if lacking:  # torch's uint16/32/64: refused by name before any op runs, never a crash
        with pytest.raises(EngineError, match=rf"is {lacking[0]}, which the {backend_name} "
                                              r"backend cannot compute with .* Cast it"):
            [_on(backend, x) for x in sample.inputs]
        return
    got = to_numpy(op.forward(backend.xp, attrs, *[_on(backend, x) for x in sample.inputs]))
    want = np.asarray(op.reference(attrs, *sample.inputs))
    assert got.shape == want.shape
    if want.dtype.kind in "bi":  # comparisons and casts: exact, and of the same dtype
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@cache
def _numeric(name: str, index: int, input_index: int) -> np.ndarray:
    """d sum(upstream * reference) / d input by central differences, once per case."""
    op, sample = _sample(name, index)
    attrs = op.attrs(**sample.attrs)
    return numeric_vjp(lambda *a: op.reference(attrs, *a), sample.inputs, input_index,
                       _upstream(name, index))


@cache
def _upstream(name: str, index: int) -> np.ndarray:
    op, sample = _sample(name, index)
    out = op.reference(op.attrs(**sample.attrs), *sample.inputs)
    return np.random.default_rng(1).normal(size=np.shape(out))


#: The samples where some float input takes a gradient (not comparisons, casts, counts).
VJP_CASES = [case for case in OP_CASES if any(sample_needs(*_sample(*case.values)))]


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
@pytest.mark.parametrize(("name", "index"), VJP_CASES)
def test_op_vjp_matches_finite_differences(backend_name: str, name: str, index: int) -> None:
    op, sample = _sample(name, index)
    needs = sample_needs(op, sample)
    backend, attrs = get_backend(backend_name), op.attrs(**sample.attrs)
    xp = backend.xp
    inputs = [_on(backend, x) for x in sample.inputs]
    out = op.forward(xp, attrs, *inputs)
    upstream = _on(backend, _upstream(name, index))
    parts = op.vjp(xp, attrs, upstream, out, inputs, needs)
    for input_index, (x, needed) in enumerate(zip(sample.inputs, needs, strict=True)):
        part = parts[input_index]
        if not needed:
            assert part is None, f"{name} returned a gradient for input {input_index}"
            continue
        analytic = to_numpy(sum_to(xp, part, tuple(np.shape(x))))
        assert analytic.shape == np.shape(x)
        report = compare(f"{name} input {input_index}", analytic,
                         _numeric(name, index, input_index), atol=1e-7, rtol=1e-6)
        assert report.ok, report


# -- whole graphs ----------------------------------------------------------------------------

def _random_feeds(graph: engine.Graph) -> dict[str, np.ndarray]:
    """Feeds other than the defaults: floats drawn afresh, labels reversed."""
    defaults = engine.Executor(graph)
    defaults.forward()
    rng = np.random.default_rng(5)
    return {name: rng.uniform(0.1, 1.0, size=defaults.value(name).shape)
            if value.dtype.startswith("float") else np.flip(defaults.value(name))
            for name, value in graph.values.items() if value.kind == "input"}


@pytest.mark.filterwarnings("ignore::engine.errors.DataWarning")  # soft targets, as meant
@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_graph_equals_numpy(backend_name: str, path: Path) -> None:
    graph = engine.load(path)
    assert all(v.dtype == "float64" for v in graph.values.values()
               if v.dtype.startswith("float")), "the 1e-10 comparison assumes float64"
    for feeds in ({}, _random_feeds(graph)):
        on_numpy, other = engine.Executor(graph), engine.Executor(graph, backend=backend_name)
        want, got = on_numpy.forward(feeds), other.forward(feeds)
        assert got.keys() == want.keys()
        for key in want:
            assert not isinstance(got[key], np.ndarray), "results stay the backend's arrays"
            np.testing.assert_allclose(to_numpy(got[key]), want[key], rtol=1e-10, atol=1e-12,
                                       err_msg=key)
        if graph.loss is None:
            continue
        assert other.loss == pytest.approx(on_numpy.loss, rel=1e-10, abs=1e-12)
        want_grads, got_grads = on_numpy.backward(), other.backward()
        assert got_grads.keys() == want_grads.keys() and want_grads
        for key in want_grads:
            np.testing.assert_allclose(to_numpy(got_grads[key]), want_grads[key], rtol=1e-10,
                                       atol=1e-12, err_msg=key)


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_numpy_fast_paths_never_reach_another_backend(backend_name: str) -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    assert engine.Executor(graph).plan.fast  # the NumPy run takes them
    plan = engine.Executor(graph, backend=backend_name).plan
    assert not plan.fast
    with_fast = [step for step in plan.steps if step.op.fast_forward or step.op.fast_vjp]
    assert with_fast, "mlp.yaml should hold ops with NumPy fast paths"
    for step in with_fast:
        assert step.forward is step.op.forward and step.vjp is step.op.vjp, step.name


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_numpy_parameters_assigned_on_another_backend_are_converted(backend_name: str) -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    on_numpy, other = engine.Executor(graph), engine.Executor(graph, backend=backend_name)
    for name, value in on_numpy.parameters.items():
        on_numpy.parameters[name] = other.parameters[name] = np.asarray(value) * 0.5
    on_numpy.forward()
    other.forward()
    assert other.loss == pytest.approx(on_numpy.loss, rel=1e-10)
    if backend_name == "jax":  # passed into the compiled call as they are; read back as JAX
        assert all(isinstance(p, np.ndarray) for p in other.parameters.values())
        assert not isinstance(other.value("w1"), np.ndarray)
    else:
        assert not any(isinstance(p, np.ndarray) for p in other.parameters.values())


# -- JAX: forward and backward compiled with jax.jit -----------------------------------------

needs_jax = pytest.mark.skipif(not installed("jax"),
                               reason=f"backend jax is not installed: {install_hint('jax')}")


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(to_numpy(got[key]), want[key], rtol=1e-10, atol=1e-12,
                                   err_msg=key)


def _mlp_feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(rows, 13)), "y": np.eye(3)[rng.integers(0, 3, size=rows)]}


@needs_jax
def test_jax_compiles_each_pass_once_per_set_of_shapes() -> None:
    """Traced (so compiled) once per function and set of feed shapes: new values, even new
    parameters, reuse the compiled function and still give NumPy's numbers."""
    graph = engine.load(GRAPHS / "mlp.yaml")
    on_numpy, on_jax = engine.Executor(graph), engine.Executor(graph, backend="jax")
    compiled = on_jax._jit
    assert compiled is not None and compiled.traces == 0
    for rows, seed, traces in ((10, 0, 1), (10, 1, 1), (7, 2, 2), (10, 3, 2)):
        feeds = _mlp_feeds(rows, seed)
        if seed == 3:  # new parameter values: arguments, not constants of the trace
            for name, value in on_numpy.parameters.items():
                on_numpy.parameters[name] = on_jax.parameters[name] = np.asarray(value) * 0.5
        want = on_numpy.forward(feeds)
        want_grads = on_numpy.backward()
        got, got_grads = on_jax.forward_backward(feeds)
        assert compiled.traces == traces
        _assert_same(got, want)
        _assert_same(got_grads, want_grads)
        assert on_jax.loss == pytest.approx(on_numpy.loss, rel=1e-10)
    for _ in range(2):  # forward alone and backward alone: one function each
        _assert_same(on_jax.forward(feeds), want)
        _assert_same(on_jax.backward(), want_grads)
    assert compiled.traces == 4


@needs_jax
@pytest.mark.filterwarnings("ignore::engine.errors.DataWarning")  # soft targets, as meant
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "plain"])
@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.name)
def test_jax_compiled_training_step_equals_numpy(path: Path, optimize: bool) -> None:
    """forward_backward in training mode, two steps: Dropout's masks (attention.yaml) are
    drawn per step on the host and passed in, so each step drops what NumPy's drops."""
    graph = engine.load(path)
    feeds = _random_feeds(graph)
    on_numpy = engine.Executor(graph, training=True, optimize=optimize)
    on_jax = engine.Executor(graph, backend="jax", training=True, optimize=optimize)
    assert on_jax._jit is not None
    losses = []
    for step in (0, 1):
        on_numpy.step = on_jax.step = step
        want = on_numpy.forward(feeds)
        want_grads = on_numpy.backward() if graph.loss is not None else {}
        got, got_grads = on_jax.forward_backward(feeds) if graph.loss is not None \
            else (on_jax.forward(feeds), {})
        _assert_same(got, want)
        _assert_same(got_grads, want_grads)
        losses.append(on_numpy.loss)
        if graph.loss is not None:
            assert on_jax.loss == pytest.approx(on_numpy.loss, rel=1e-10, abs=1e-12)
    random = any(node.op.stochastic for node in graph.nodes.values())
    assert (losses[0] != losses[1]) == random  # the masks change with the step


@needs_jax
def test_jax_backward_from_upstream_and_kept_gradients_equal_numpy() -> None:
    graph = engine.load(GRAPHS / "softmax.yaml")
    upstream = {"softmax": np.random.default_rng(3).normal(size=(5, 3))}
    for optimize in (True, False):
        on_numpy = engine.Executor(graph, optimize=optimize)
        on_jax = engine.Executor(graph, backend="jax", optimize=optimize)
        on_numpy.forward()
        on_jax.forward()
        _assert_same(on_jax.backward(keep=["raised", "summed"]),
                     on_numpy.backward(keep=["raised", "summed"]))
        _assert_same(on_jax.backward(upstream), on_numpy.backward(upstream))


def _sort_feeds() -> dict[str, np.ndarray]:
    tokens = np.random.default_rng(4).integers(0, 10, size=(4, 8))
    return {"tokens": tokens, "target": np.sort(tokens, axis=1)}


@needs_jax
def test_jax_checks_labels_on_every_call() -> None:
    """The label check runs on the host before each compiled call, also when the shapes
    (and so the compiled function) are those of an earlier call."""
    graph = engine.load(GRAPHS / "attention.yaml")
    on_jax = engine.Executor(graph, backend="jax")
    feeds = _sort_feeds()
    on_jax.forward_backward(feeds)
    feeds["target"][2, 5] = 10  # the classes are 0..9
    with pytest.raises(engine.DataError, match="holds label 10"):
        on_jax.forward_backward(feeds)
    with pytest.raises(engine.DataError, match="holds label 10"):
        on_jax.forward(feeds)


@needs_jax
@pytest.mark.parametrize("token", [10, 12, -11])
def test_jax_gather_out_of_range_is_an_error_as_on_numpy(token: int) -> None:
    """A compiled gather fills NaN for an index out of range; the engine raises, naming the
    node, as NumPy does (whose IndexError is the independent reference)."""
    graph = engine.load(GRAPHS / "attention.yaml")
    feeds = _sort_feeds()
    on_numpy, on_jax = engine.Executor(graph), engine.Executor(graph, backend="jax")
    on_jax.forward_backward(feeds)  # compiled with good tokens first
    feeds["tokens"][1, 3] = token
    for run in (on_numpy.forward, on_jax.forward, on_jax.forward_backward):
        with pytest.raises(engine.DataError, match=rf"node 'token_vectors' \(Gather.*index "
                                                   rf"{token} is out of bounds for axis 0 "
                                                   r"with size 10"):
            run(feeds)
    feeds["tokens"][1, 3] = -10  # counted from the end: the first row, on both
    on_numpy.forward(feeds)
    _assert_same(on_jax.forward_backward(feeds)[0], on_numpy.forward(feeds))


@needs_jax
def test_jax_results_do_not_change_when_the_fed_array_is_written_after_the_call(build) -> None:
    """JAX may read a NumPy argument in place while its call runs on asynchronously; the
    engine's call returns only when its results are computed, so writing into the fed
    array afterwards (as an optimizer writes its parameters) changes nothing."""
    graph = build("""
        name: cube
        inputs: {x: {shape: [1000, 1000], requires_grad: true}}
        nodes:
          square: {op: MatMul, inputs: [x, x]}
          cube: {op: MatMul, inputs: [square, x]}
          loss: {op: Sum, inputs: [cube]}
        outputs: [loss]
        loss: loss
    """)
    ex = engine.Executor(graph, backend="jax")
    x = np.ones((1000, 1000))
    ex.forward_backward({"x": x})  # compiled
    outputs, grads = ex.forward_backward({"x": x})
    x[:] = 0.0
    assert float(outputs["loss"]) == 1000.0 ** 4  # sum of x @ x @ x with x all ones
    assert float(to_numpy(grads["x"])[0, 0]) == 3 * 1000.0 ** 2


@needs_jax
@pytest.mark.parametrize("option", ["trace", "check_finite"])
def test_jax_tracing_and_finite_checks_run_op_by_op(option: str) -> None:
    """Per-node timings and NaN reports need each node's value as it is computed: those
    runs are not compiled, and give the same numbers."""
    graph = engine.load(GRAPHS / "mlp.yaml")
    on_jax = engine.Executor(graph, backend="jax", **{option: True})
    assert on_jax._jit is None
    on_numpy = engine.Executor(graph)
    _assert_same(on_jax.forward_backward()[1], on_numpy.forward_backward()[1])


@needs_jax
def test_a_jax_executor_belongs_to_one_thread() -> None:
    import threading

    ex = engine.Executor(engine.load(GRAPHS / "mlp.yaml"), backend="jax")
    ex.forward_backward()
    errors: list[Exception] = []

    def other() -> None:
        try:
            ex.forward_backward()
        except EngineError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other, name="intruder")
    thread.start()
    thread.join()
    assert len(errors) == 1 and "may not use it" in str(errors[0])


# -- choosing a backend ----------------------------------------------------------------------

def test_a_missing_library_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(backends, "installed", lambda name: name == "numpy")
    for name in OTHERS:
        with pytest.raises(EngineError, match=rf'pip install -e "\.\[{name}\]"'):
            engine.Executor(engine.load(GRAPHS / "mlp.yaml"), backend=name)


def test_an_unknown_backend_lists_the_backends() -> None:
    with pytest.raises(EngineError, match=r"unknown backend 'troch' \(did you mean 'torch'\?\)"):
        get_backend("troch")


def test_a_device_is_refused_off_torch() -> None:
    with pytest.raises(EngineError, match="only on the torch backend"):
        get_backend("numpy", device="cuda")


def test_numpy_is_the_default_and_returns_numpy_arrays() -> None:
    ex = engine.Executor(engine.load(GRAPHS / "mlp.yaml"))
    assert ex.backend.name == "numpy" and ex.xp is np
    assert all(isinstance(v, np.ndarray | np.generic) for v in ex.forward().values())


@pytest.mark.skipif(not installed("torch"), reason=f"torch not installed: {install_hint('torch')}")
def test_torch_results_are_tensors_on_the_chosen_device() -> None:
    import torch

    ex = engine.Executor(engine.load(GRAPHS / "mlp.yaml"), backend="torch", device="cpu")
    ex.forward()
    grads = ex.backward()
    assert all(isinstance(g, torch.Tensor) and g.device.type == "cpu" for g in grads.values())
    assert isinstance(ex.loss, float)


# -- the command line ------------------------------------------------------------------------

def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from engine.cli.main import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_run_backend_prints_numpys_numbers(capsys, backend_name: str) -> None:
    import json

    spec = str(GRAPHS / "mlp.yaml")
    code, out, _ = _cli(capsys, "run", spec, "--json")
    assert code == 0
    want = json.loads(out)
    code, out, _ = _cli(capsys, "run", spec, "--json", "--backend", backend_name)
    assert code == 0
    got = json.loads(out)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-10)
    for kind in ("outputs", "grads"):
        assert got[kind].keys() == want[kind].keys()
        for key in want[kind]:
            np.testing.assert_allclose(got[kind][key], want[kind][key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend_name", BACKEND_PARAMS)
def test_gradcheck_passes_on_the_backend(capsys, backend_name: str) -> None:
    code, out, _ = _cli(capsys, "gradcheck", str(GRAPHS / "softmax.yaml"), "--backend",
                        backend_name, "--json")
    assert code == 0 and '"ok": true' in out


def test_cli_names_the_pip_command_for_a_missing_backend(capsys, monkeypatch) -> None:
    monkeypatch.setattr(backends, "installed", lambda name: name == "numpy")
    code, _, err = _cli(capsys, "run", str(GRAPHS / "mlp.yaml"), "--backend", "dask")
    assert code == 1
    assert 'backend \'dask\' needs dask, which is not installed: pip install -e ".[dask]"' in err
    assert "Traceback" not in err


def test_cli_device_without_torch_is_an_error(capsys) -> None:
    code, _, err = _cli(capsys, "run", str(GRAPHS / "mlp.yaml"), "--device", "cpu")
    assert code == 1 and "only on the torch backend" in err


# -- Dask: inputs chunked along the batch, one graph computed once ---------------------------

needs_dask = pytest.mark.skipif(not installed("dask"),
                                reason=f"backend dask is not installed: {install_hint('dask')}")


@needs_dask
@pytest.mark.filterwarnings("ignore::engine.errors.DataWarning")  # soft targets, as meant
@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.name)
def test_chunked_dask_computes_numpys_numbers_in_one_graph(path: Path) -> None:
    from dask.callbacks import Callback

    graph = engine.load(path)
    feeds = _random_feeds(graph)
    on_numpy = engine.Executor(graph)
    want = on_numpy.forward(feeds)
    want_grads = on_numpy.backward() if graph.loss is not None else {}
    chunked = engine.Executor(graph, backend="dask", chunk_rows=3)
    lazy = chunked.forward(feeds)
    lazy_grads = chunked.backward() if graph.loss is not None else {}
    batched = [name for name, v in graph.values.items() if v.kind == "input"
               and len(v.shape) and chunked.value(name).shape[0] > 3]
    assert batched and all(chunked.value(name).numblocks[0] > 1 for name in batched)
    started = []
    with Callback(start=lambda dsk: started.append(len(dsk))):
        got, got_grads = chunked.compute(lazy, lazy_grads)
        loss = chunked.loss
    assert len(started) == 1, "outputs, gradients and loss: one Dask graph, computed once"
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)
    for key in want_grads:
        np.testing.assert_allclose(got_grads[key], want_grads[key], rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    if graph.loss is not None:
        assert loss == pytest.approx(on_numpy.loss, rel=1e-10, abs=1e-12)


@needs_dask
def test_the_default_chunk_is_about_64_mib() -> None:
    backend = get_backend("dask")
    rows = np.zeros((3 * (1 << 20), 4))  # 32 bytes a row: 2**21 rows a chunk
    assert backend.asarray(rows, "float64", rows=True).chunks[0][0] == 1 << 21
    assert backend.asarray(rows[:5], "float64").numblocks == (1, 1)  # not a batch: one chunk


@needs_dask
def test_run_chunk_rows_prints_numpys_numbers(capsys) -> None:
    import json

    spec = str(GRAPHS / "digits.yaml")
    want = json.loads(_cli(capsys, "run", spec, "--json")[1])
    code, out, _ = _cli(capsys, "run", spec, "--json", "--backend", "dask", "--chunk-rows", "5")
    assert code == 0
    got = json.loads(out)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-10)
    for key in want["grads"]:
        np.testing.assert_allclose(got["grads"][key], want["grads"][key], rtol=1e-10,
                                   atol=1e-12)


def test_chunk_rows_off_dask_is_an_error(capsys) -> None:
    code, _, err = _cli(capsys, "run", str(GRAPHS / "mlp.yaml"), "--chunk-rows", "4")
    assert code == 1 and "only on the dask backend" in err
