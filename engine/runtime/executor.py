"""Runs a compiled plan: forward in order, then backward in reverse, as micrograd does.

Forward is a flat loop writing each node's value into its slot; each node runs
once however many consumers it has, and a value is dropped after its last use
unless it is an output or backward reads it (the plan decides which, once).
Backward starts the loss at 1, walks the steps that lead to a tensor requiring
grad in reverse, asks each vjp only for the gradients that are needed, sums a
gradient back to the shape of a broadcast input, and adds the gradients of a
value that feeds several nodes.  There is no recursion, so 100,000-node graphs run.
Arrays the user passes in are never written to.

``Executor(graph, optimize=False)`` is the reference path: the graph as written,
the ops' plain rules alone, every value kept, every gradient's shape checked,
nothing updated in place; its backward (``_backward_reference``) reads like
micrograd's.  The optimized path (the default) runs the graph after the
optimization passes (``engine.transform.passes.optimized``: fusion, folding,
simplification, common subexpressions, dead code), on NumPy with the ops' NumPy
fast paths; it frees values and gradients as soon as they are dead, sums back only
where the inferred shapes differ, and adds into buffers it created itself.  A
request about a node the passes rewrote away (its gradient, with ``keep``, or a
backward that starts there) is answered by the reference path, run on the same
feeds and parameters.  The tests compare the two paths on every example graph
and on random graphs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from itertools import chain, compress, count
from operator import attrgetter, itemgetter
from pathlib import Path
from threading import get_ident
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from engine.errors import ArgumentError, DataError, EngineError, did_you_mean
from engine.gcpause import collector_paused
from engine.graph.model import Graph
from engine.graph.shapes import Dims, ShapeError, format_shape
from engine.graph.targets import LabelCheck, label_check
from engine.io.trained import load_trained
from engine.ops import OpAttrs
from engine.ops.base import SMALL_ARRAY, Vjp
from engine.ops.stochastic import RunMode
from engine.runtime.backends import Backend, get_backend
from engine.runtime.feeds import (
    as_array,
    bind_feeds,
    check_seed,
    checks_values,
    fed_as,
    initial_value,
    names_mapping,
)
from engine.runtime.indexcheck import guard_indices
from engine.runtime.instrument import Trace, instrument
from engine.runtime.jitted import Compiled
from engine.runtime.kernels import numpy_sum_to, sum_to
from engine.runtime.plan import Block, Plan, Step, bind_mode, compile_plan, schedule
from engine.transform.passes import optimized

Array = Any
Getter = Callable[[list[Array]], tuple[Array, ...]]

_INPUTS, _NEEDS, _DTYPE = attrgetter("inputs"), attrgetter("needs"), attrgetter("dtype")
_new = tuple.__new__


#: backward's default ``keep``: nothing; a default left alone is not checked again
_NOTHING: tuple[str, ...] = ()


class Run(NamedTuple):
    """One forward instruction, a ``Block`` of the plan: ``slots[output] = call(*inputs(slots))``,
    then the ``frees`` slots are dropped."""

    call: Callable[..., Array]
    inputs: Getter
    output: int
    frees: tuple[int, ...]
    block: Block


class Target(NamedTuple):
    """Where one input gradient of a vjp goes: the vjp's ``parts[index]`` into ``slot``.

    ``reduces``: it may come broadcast and is summed back to the input's shape;
    ``shared``: the slot receives other gradients too, so they are added;
    ``cast``: the input's dtype where it differs from the node's (a float16 input of a
    float32 Mul), since a gradient comes in the dtype of what it is the gradient of.
    """

    index: int
    slot: int
    reduces: bool
    shared: bool
    cast: Any = None


class Back(NamedTuple):
    """One backward instruction: ``vjp`` of the step whose value is in ``output``."""

    vjp: Vjp
    attrs: OpAttrs
    inputs: Getter
    output: int
    needs: tuple[bool, ...]
    targets: tuple[Target, ...]
    step: Step


class Executor:
    """Compiles a graph once; ``forward(feeds)`` then ``backward()`` as often as needed.

    ``backend`` names the array library to run on: ``"numpy"`` (the default), ``"torch"``,
    ``"jax"`` or ``"dask"`` (``engine.runtime.backends``; each an optional extra, imported
    only when chosen), and ``device`` the torch device (``"cpu"``, ``"cuda"``); or it is a
    ``Backend`` that ``get_backend`` made (which carries its device and chunking).  Or ``xp``
    passes any namespace of the Python array API standard itself (``array_api_strict``).
    Off NumPy the ops run their plain array-API rules, never the NumPy fast paths.  On
    ``"jax"`` the forward and backward programs are compiled with ``jax.jit`` once per set
    of feed shapes (``engine.runtime.jitted``; not with ``trace`` or ``check_finite``,
    which watch every node), and ``forward_backward`` runs both in one call.
    Results (``forward``, ``backward``, ``value``, ``parameters``) are arrays of the chosen
    library, on its device, so that a caller can keep computing there;
    ``engine.runtime.backends.to_numpy`` turns any of them into a NumPy array.  Feeds and
    parameters may be assigned NumPy arrays on every backend (on jax, ones of the declared
    dtype stay NumPy in ``parameters`` and go into the compiled call as they are).
    ``seed`` overrides the spec's seed for default values of inputs and parameters.
    ``check_finite`` raises ``NonFiniteError`` at the first node whose value or gradient
    holds NaN or inf (and keeps every value, for its report); ``trace`` fills
    ``self.trace`` with per-node statistics and timings.
    ``optimize=False`` runs the plain path (see the module docstring): the graph as
    written, slower, and keeps every value, for debugging and as a reference.  By default
    the plan runs ``self.compiled``, the graph after the optimization passes (the same
    graph with ``check_finite``, whose report names the nodes as written).

    Feeds: an input that ``forward`` is not fed takes its ``init``, and
    ``self.defaulted`` names those inputs after each pass (``engine run`` prints
    them).  ``strict_feeds=True`` makes any unfed input an error instead, which is
    what evaluating real data wants: a forgotten label array would otherwise be
    random labels.  ``training`` switches random ops (Dropout) on.
    """

    def __init__(self, graph: Graph, *, xp: ModuleType | None = None, seed: int | None = None,
                 check_finite: bool = False, trace: bool = False, optimize: bool = True,
                 training: bool = False, strict_feeds: bool = False,
                 backend: str | Backend | None = None, device: str | None = None,
                 chunk_rows: int | None = None):
        if not isinstance(graph, Graph):
            raise ArgumentError(f"Executor takes the Graph that engine.load returns, found "
                                f"{type(graph).__name__}")
        self.graph = graph
        self.strict_feeds = strict_feeds
        #: The inputs that took their init in the last forward pass, because nothing fed them.
        self.defaulted: tuple[str, ...] = ()
        #: Per input: (mean, std) that ``load_params`` read; fed arrays are standardised.
        self._scaling: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        #: The graph the plan runs: ``graph`` after the passes, on the optimized path.  Each
        #: of its values has a name of ``graph`` and the dtype and shape inferred there.
        self.compiled: Graph = optimized(graph) if optimize and not check_finite else graph
        run = self.compiled
        self.trace: Trace | None = Trace(run) if trace else None
        self._plain: Executor | None = None  # the reference path, for what ``run`` lacks
        self._plain_args = {"xp": xp, "backend": backend, "device": device,
                            "chunk_rows": chunk_rows, "strict_feeds": strict_feeds}
        self._feeds: Mapping[str, Any] | None = None  # the last forward's, for the reference
        if backend is not None and xp is not None:
            raise EngineError("pass either backend= (a name) or xp= (a namespace), not both")
        if not isinstance(backend, str) and (device is not None or chunk_rows is not None):
            raise EngineError("device= and chunk_rows= go with backend= given by name (torch, "
                              "dask); a Backend object carries its own")
        if isinstance(backend, Backend):
            self.backend: Backend = backend
        elif xp is None:
            self.backend = get_backend(backend or "numpy", device, chunk_rows)
        else:
            self.backend = Backend(getattr(xp, "__name__", "xp"), xp)
        self.xp = self.backend.xp
        # before any op meets a dtype it lacks: each dtype once (a graph has a few, and
        # 100,000 values), named by the first value of it
        firsts: dict[str, str] = {}
        for name, dtype in zip(graph.values, map(_DTYPE, graph.values.values()), strict=True):
            if dtype not in firsts:
                firsts[dtype] = name
        for dtype, name in firsts.items():
            self.backend.check_dtype(dtype, f"{name!r} ({graph.where(name)})")
        self.optimize = optimize
        self._fast = optimize and self.xp is np  # the ops' NumPy fast paths, in-place sums
        self.seed = graph.spec.seed if seed is None else check_seed(seed)
        #: Read by random ops (Dropout) at run time; ``training`` and ``step`` set it.
        self.mode = RunMode(training=training, seed=self.seed)
        self._keep_values = check_finite or not optimize  # a NaN report reads the inputs
        #: jax.jit compiles the passes, except where every node is watched as it runs
        jitting = self.backend.name == "jax" and self.trace is None and not check_finite
        with collector_paused():
            plan = instrument(bind_mode(compile_plan(run, fast=self._fast), self.mode),
                              run, trace=self.trace, check_finite=check_finite)
            if not self._fast and not jitting:  # those check indices in their own way
                plan = guard_indices(plan, run)
            # buffers are reused only where nothing wraps the ops or reads every value
            self.plan: Plan = schedule(plan, run, self.xp, keep_values=self._keep_values,
                                       reuse=self._fast and not self._keep_values
                                       and self.trace is None)
        self._slots: list[Array] = [None] * len(self.plan.names)
        self._defaults: dict[tuple[str, tuple[Any, ...]], Array] = {}
        self._ran_forward = False
        self._computed_loss: float | None = None  # the loss ``compute`` computed
        self._owner: int | None = None  # the thread that ran the first forward (_claim)
        self._claim_lock = threading.Lock()
        self._frozen: Callable[[Array], Array] = _read_only if self.xp is np else _same
        self._dims: Dims = graph.dims
        self._bound: dict[tuple[tuple[str, Any, Any, Any], ...],
                          tuple[Dims, list[tuple[str, LabelCheck]]]] = {}
        #: Per input (name, slot, dtype, shape) of the last feeds bound exactly, their dims
        #: and label checks: ``_forward``'s fast path (``_accept_exact``); None: none yet.
        self._exact: list[tuple[str, int, np.dtype, tuple[int, ...]]] | None = None
        self._exact_dims: Dims = graph.dims
        self._exact_checks: list[tuple[str, LabelCheck]] = []
        dims = graph.dims.copy()  # a parameter's named dims can only come from dims: defaults
        dims.apply_defaults(graph.spec.dims)
        self.parameters: dict[str, Array] = {
            name: self._array(initial_value(graph, v, dims, self.seed), v.dtype)
            for name, v in graph.values.items() if v.kind == "parameter"
        }
        for name, v in run.values.items():
            if v.kind == "constant":
                self._slots[self.plan.slots[name]] = self._array(v.literal, v.dtype)
        with collector_paused():
            self._derive()  # last: whatever rewrote plan.steps before this is what runs
        #: backward's start when the loss's shape is static (``_static_loss_ones``), else None
        self._loss_ones = self._static_loss_ones()
        #: On the jax backend, the programs compiled with jax.jit (None: run op by op).  Not
        #: with ``trace`` or ``check_finite``: they time and check every node as it runs.
        self._jit: Compiled | None = None
        if jitting:
            self._jit = Compiled(
                plan=self.plan, program=self._forward_program, graph=run, mode=self.mode,
                backend=self.backend, dims=lambda: self._dims,
                run_forward=lambda slots, program: self._run_forward(slots, self._dims, program),
                backward_pass=self._backward_pass)
        if self._jit is not None:  # NumPy arrays go into the compiled call as they are
            self._frozen = self._on_backend

    def __repr__(self) -> str:
        path = "optimized" if self.optimize else "plain"
        return (f"<Executor {self.graph.summary()}, {path}, "
                f"on {getattr(self.xp, '__name__', self.xp)}>")

    def _derive(self) -> None:
        """Flatten the final plan into instructions, so the hot loops only index and call."""
        plan, optimize = self.plan, self.optimize
        # Built with tuple.__new__: a NamedTuple's own __new__ is a Python function that
        # doubles the cost of each of these 100,000 records.  A block and its step often
        # read the same slots: they share one getter.
        getters: dict[tuple[int, ...], Getter] = {}
        self._forward_program = [
            _new(Run, (block.call, getters.get(block.inputs) or getters.setdefault(
                block.inputs, _getter(block.inputs)), block.output, block.frees, block))
            for block in plan.blocks]
        differentiating = [step for step in reversed(plan.steps) if True in step.needs]
        # gradients each slot receives in backward
        fan_in = Counter(compress(chain.from_iterable(map(_INPUTS, differentiating)),
                                  chain.from_iterable(map(_NEEDS, differentiating))))
        values, names = self.graph.values, plan.names
        dtype_of = list(map(_DTYPE, map(values.__getitem__, names)))  # by slot
        # one answer per pair of dtype names (a graph has a few; it has 100,000 steps)
        casts: dict[tuple[str, str], Any] = {}
        self._backward_program = []
        for step in differentiating:
            output_dtype, inputs = dtype_of[step.output], step.inputs
            targets = []
            for index, slot, need, reduces in zip(count(), inputs, step.needs, step.reduces):
                if need:
                    pair = (dtype_of[slot], output_dtype)
                    cast = casts[pair] if pair in casts else \
                        casts.setdefault(pair, self._cast_to(*pair))
                    targets.append(_new(Target, (index, slot, reduces or not optimize,
                                                 fan_in[slot] > 1, cast)))
            getter = getters.get(inputs) or getters.setdefault(inputs, _getter(inputs))
            self._backward_program.append(_new(Back, (step.vjp, step.attrs, getter, step.output,
                                                      step.needs, tuple(targets), step)))
        self._expected = [] if optimize else self._expectations()  # what the plain path checks
        sources = [(name, values[name]) for name in names[:plan.sources]]
        self._inputs = [(name, plan.slots[name], np.dtype(v.dtype)) for name, v in sources
                        if v.kind == "input"]  # a dtype object compares faster than its name
        self._parameter_slots = [(name, plan.slots[name]) for name, v in sources
                                 if v.kind == "parameter"]
        self._no_values = (None,) * (len(plan.names) - plan.sources)
        self._slot_count, self._sources = len(plan.names), plan.sources
        self._outputs = [(name, plan.slots[name]) for name in self.graph.outputs]
        self._loss_slot = None if self.graph.loss is None else plan.slots[self.graph.loss]
        self._ones: dict[tuple[Any, Any], np.ndarray] = {}
        self._grad_slots = [(name, plan.slots[name]) for name in plan.grad_tensors]
        self._label_feeds = [name for name, target in self.graph.targets.items()
                             if not target.one_hot and values[name].kind == "input"]

    def _expectations(self) -> list[tuple[np.dtype, Any]]:
        """Each step's dtype and inferred shape, which the plain path checks its values against."""
        dtypes: dict[str, np.dtype] = {}  # one dtype object per name, not per step
        expected = []
        for step in self.plan.steps:
            value = self.graph.values[step.name]
            dtype = dtypes.get(value.dtype) or dtypes.setdefault(value.dtype,
                                                                 np.dtype(value.dtype))
            expected.append((dtype, value.shape))
        return expected

    def _on_backend(self, array: Array) -> Array:
        """A result on the jax backend: a source the compiled call took as NumPy (a fed
        array, a parameter), read back by ``value`` or as an output, becomes a JAX array."""
        return self.xp.asarray(array) if type(array) is np.ndarray else array

    def _cast_to(self, dtype: str, output_dtype: str) -> Any:
        """The dtype a gradient must be cast to, or None when the node keeps its input's."""
        if dtype == output_dtype:
            return None
        return np.dtype(dtype) if self.xp is np else getattr(self.xp, dtype)

    @property
    def training(self) -> bool:
        """Whether passes train (Dropout drops) or evaluate (the default); may be reassigned."""
        return self.mode.training

    @training.setter
    def training(self, training: bool) -> None:
        self.mode.training = training

    @property
    def step(self) -> int:
        """The training step, which seeds random ops with the seed; the trainer advances it."""
        return self.mode.step

    @step.setter
    def step(self, step: int) -> None:
        self.mode.step = step

    def _array(self, array: np.ndarray, dtype: str, rows: bool = False) -> Array:
        """``rows``: an input's, whose first axis is the batch (chunked on Dask)."""
        if self.xp is np:
            return np.asarray(array, dtype=dtype)
        return self.backend.asarray(array, dtype, rows=rows)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, feeds: Mapping[str, Any] | None = None) -> dict[str, Array]:
        """Run every node once; returns ``{output name: value}``.

        An input missing from ``feeds`` takes its init (listed in ``self.defaulted``),
        or, with ``strict_feeds``, is a DataError."""
        return self._forward(feeds, joint=False)[0]

    def forward_backward(self, feeds: Mapping[str, Any] | None = None
                         ) -> tuple[dict[str, Array], dict[str, Array]]:
        """``forward(feeds)``, then ``backward()`` from the loss: ``(outputs, gradients)``.
        On the jax backend this is one call of one compiled function (a training step);
        elsewhere it is exactly the two calls."""
        if self._jit is None or self._loss_slot is None:
            outputs = self.forward(feeds)
            return outputs, self.backward()
        outputs, grads = self._forward(feeds, joint=True)
        assert grads is not None
        return outputs, grads

    def _forward(self, feeds: Mapping[str, Any] | None, joint: bool
                 ) -> tuple[dict[str, Array], dict[str, Array] | None]:
        """``forward``; ``joint`` (compiled only): backward from the loss in the same call."""
        if self._owner != get_ident():
            self._claim()
        self._feeds = feeds
        self._ran_forward = False  # until this pass succeeds: a failed one leaves no values
        if self._scaling and feeds:
            feeds = {name: (np.asarray(array) - self._scaling[name][0]) / self._scaling[name][1]
                     if name in self._scaling else array for name, array in feeds.items()}
        slots = self._slots
        dims = None
        exact = self._exact
        # The feeds the last general binding accepted exactly (see _accept_exact) again:
        # every input fed, no other name, each an ndarray of the declared dtype (object
        # identity: a dtype compare costs more) and of the same shape.  Only the labels'
        # values need checking then; anything else takes the general path.
        if exact is not None and type(feeds) is dict and len(feeds) == len(exact):
            for name, slot, dtype, shape in exact:
                array = feeds.get(name)
                if type(array) is not np.ndarray or array.dtype is not dtype \
                        or array.shape != shape:
                    break
                slots[slot] = array
            else:
                dims = self._exact_dims
                for name, check in self._exact_checks:
                    check(feeds[name])
                self.defaulted = ()
        if dims is None:
            dims = self._feed(feeds or {}, slots)
        slots[self._sources:] = self._no_values  # last pass's values go
        self._computed_loss = None
        self._dims = dims
        parameters = self.parameters
        for name, slot in self._parameter_slots:
            slots[slot] = parameters[name]
        if self.xp is not np:  # a NumPy array assigned to a parameter (a checkpoint, finite
            passed = self._jit is not None  # differences); see _feed for ``passed``
            for name, slot in self._parameter_slots:
                array, dtype = parameters[name], self.graph.values[name].dtype
                if type(array) is np.ndarray and not (passed and array.dtype == dtype):
                    parameters[name] = slots[slot] = self._array(array, dtype)
        grads = None
        if self._jit is None:
            self._run_forward(slots, dims)
        elif joint:
            grads = self._jit.forward_backward(slots)
        else:
            self._jit.forward(slots)
        self._ran_forward = True
        frozen, outputs = self._frozen, {}
        for name, slot in self._outputs:  # a loop: a comprehension is a call (3.11)
            outputs[name] = frozen(slots[slot])
        return outputs, grads

    def _feed(self, feeds: Mapping[str, Any], slots: list[Array]) -> Dims:
        """The general binding: ``feeds`` checked (``_bind``), converted where their dtype
        differs, and unfed inputs given their defaults, into ``slots``; the bound dims."""
        fed, dims = self._bind(feeds)
        # On jax, a NumPy array of the right dtype (a fed array, a parameter the trainer
        # updates) is an argument of the compiled call as it is: copying it in there costs
        # a microsecond, converting it to a JAX array first tens (more than a small step).
        passed = self.xp is np or self._jit is not None
        defaulted = []
        for name, slot, dtype in self._inputs:
            array = fed.get(name)
            if array is None:
                if self.strict_feeds:
                    self._refuse_unfed(fed)
                slots[slot] = self._default(name, dims)
                defaulted.append(name)
            else:
                slots[slot] = array if passed and getattr(array, "dtype", None) == dtype \
                    else self._array(array, dtype.name, rows=True)
        self.defaulted = tuple(defaulted)
        if passed and not defaulted:
            self._accept_exact(feeds, dims)
        return dims

    def _accept_exact(self, feeds: Mapping[str, Any], dims: Dims) -> None:
        """Remember ``feeds``, just bound, for ``_forward``'s fast path when every one is an
        ndarray of its input's declared dtype: later feeds of the same names, dtypes and
        shapes pass the same checks (names, dtype, shape, the bound dims, the size budget;
        the dtype is the declared one, so no value needs converting or checking), except
        the labels of class targets, whose values change with every batch: their checks
        are kept here, made once.  (A shape is compared every call: ``a.shape = ...``
        reshapes an array object in place.)"""
        exact = []
        for name, slot, dtype in self._inputs:
            array = feeds[name]
            if type(array) is not np.ndarray or array.dtype is not dtype:
                return
            exact.append((name, slot, dtype, array.shape))
        self._exact, self._exact_dims = exact, dims
        self._exact_checks = self._label_checks(dims)

    def _run_forward(self, slots: list[Array], dims: Dims,
                     program: list[Run] | None = None) -> None:
        """The forward ``program`` (default: the executor's) over ``slots`` (the sources
        filled in): eagerly, or, traced by ``engine.runtime.jitted``, once per set of shapes
        inside one compiled function, with its own program (Gather's checked)."""
        program = self._forward_program if program is None else program
        block: Block | None = None
        try:  # Run's fields, unpacked in the loop's head: the fastest way to read them
            if self.optimize:
                for call, inputs, output, frees, block in program:  # noqa: B007 (the except reads block)
                    slots[output] = call(*inputs(slots))
                    for slot in frees:
                        slots[slot] = None
            else:
                for run, expected in zip(program, self._expected, strict=True):
                    block = run.block
                    slots[run.output] = run.call(*run.inputs(slots))
                    self._check_inferred(block.steps[-1], slots[run.output], expected, dims)
        except (ValueError, TypeError, IndexError) as exc:
            assert block is not None
            raise self._step_error(block.steps[-1], "forward", exc, slots, block) from exc

    def _check_inferred(self, step: Step, value: Array, expected: tuple[np.dtype, Any],
                        dims: Dims) -> None:
        """The plain path checks every node against what the graph inferred (and ``engine
        check`` printed): a difference is a bug in an op's dtype or shape rule."""
        dtype, shape = expected
        got_dtype = np.dtype(str(value.dtype).rsplit(".", 1)[-1])  # array-api-strict's too
        if got_dtype != dtype or tuple(value.shape) != dims.shape(shape):
            raise EngineError(f"node {step.name!r} ({step.op.name}): forward gave "
                              f"{format_shape(value.shape)} {got_dtype}, but the graph inferred "
                              f"{format_shape(dims.shape(shape))} {dtype}; the op's shape or "
                              "dtype rule is wrong (a bug in the engine)")

    def _claim(self) -> None:
        """Make the calling thread this executor's owner, or refuse it.

        An executor holds the values of its last forward pass, which ``backward`` and
        ``value`` read: two threads sharing one would read each other's passes (wrong
        losses and gradients, with no error).  So the first thread that runs ``forward``
        owns it, and any other thread's call is an error; make one Executor per thread
        (they may share the Graph).
        """
        with self._claim_lock:
            if self._owner is None:
                self._owner = get_ident()
                return
        self._refuse_thread()

    def _refuse_thread(self) -> None:
        owner = next((t.name for t in threading.enumerate() if t.ident == self._owner),
                     f"thread {self._owner}")
        raise EngineError(f"this Executor belongs to {owner!r}, which ran its first forward(); "
                          f"{threading.current_thread().name!r} may not use it: it keeps the "
                          "values of its last pass, so two threads would read each other's. "
                          "Make one Executor per thread (they may share the Graph)")

    def _refuse_unfed(self, fed: Mapping[str, Any]) -> None:
        unfed = [name for name, _, _ in self._inputs if name not in fed]
        raise DataError(f"input{'s' if len(unfed) > 1 else ''} {', '.join(map(repr, unfed))} "
                        f"of graph {self.graph.spec.name!r} {'were' if len(unfed) > 1 else 'was'}"
                        " not fed, and strict_feeds refuses to use an init; feed "
                        f"{'them' if len(unfed) > 1 else 'it'}")

    def load_params(self, path: str | Path) -> None:
        """Take the parameters of a checkpoint that ``engine train --save`` wrote (or an .npz
        named after the parameters), checked against the graph, and its standardisation:
        later feeds of standardised inputs are scaled as in training, so raw data goes in."""
        trained = load_trained(Path(path), self.graph)
        for name, array in trained.params.items():
            current = self.parameters[name]
            if isinstance(current, np.ndarray) and self.xp is np:
                np.copyto(current, array)  # in place: an optimizer may hold views of it
            else:
                self.parameters[name] = self._array(array, self.graph.values[name].dtype)
        self._scaling = dict(trained.scaling)
        self._bound.clear()
        self._exact = None

    def _bind(self, feeds: Mapping[str, Any]) -> tuple[Mapping[str, Any], Dims]:
        """``bind_feeds``, skipped when NumPy arrays of these names, dtypes and shapes have
        passed before and the checks depend on nothing else (not on values: an int64 array
        fed to a uint8 input is checked element by element every time).  A training loop
        feeds batches of a few shapes (full, last, the train and validation splits), and on
        small arrays the checks cost as much as the ops.  A few such keys are remembered."""
        try:
            key = tuple([(name, type(a), a.dtype, a.shape) for name, a in feeds.items()])
        except AttributeError:  # lists or scalars: checked (and converted) every time
            key = None
        else:
            bound = self._bound.get(key)
            if bound is not None:
                dims, checks = bound
                for name, check in checks:  # the labels change with every batch
                    labels = feeds.get(name)
                    if labels is not None:
                        check(labels)
                return feeds, dims
        fed, dims = bind_feeds(self.graph, feeds)
        if self.backend.name == "dask":
            _refuse_empty(self.graph, fed)
        if key is not None and all(kind is np.ndarray and not checks_values(self.graph, name, dtype)
                                   for name, kind, dtype, _ in key):
            if len(self._bound) >= _BOUND_KEYS:
                self._bound.clear()
            self._bound[key] = (dims, self._label_checks(dims))
        return fed, dims

    def _label_checks(self, dims: Dims) -> list[tuple[str, LabelCheck]]:
        """The value checks of the class-index labels fed to inputs, under ``dims``: made
        once per binding (their messages are formatted then), run on every batch."""
        graph, checks = self.graph, []
        for name in self._label_feeds:
            check = label_check(graph, name, dims, fed_as(graph, name))
            if check is not None:
                checks.append((name, check))
        return checks

    def _default(self, name: str, dims: Any) -> Array:
        value = self.graph.values[name]
        key = (name, dims.shape(value.shape))
        if key not in self._defaults:
            self._defaults[key] = self._array(initial_value(self.graph, value, dims, self.seed),
                                              value.dtype, rows=True)
        return self._defaults[key]

    def value(self, name: str) -> Array:
        """A value of the last forward pass: an output, input, parameter, constant, the loss,
        or a node that backward reads.  Other intermediate values are freed after their last
        use; list them under ``outputs`` (or use ``optimize=False``) to read them."""
        if not isinstance(name, str):
            raise ArgumentError(f"value() takes a name (a string), found {type(name).__name__}")
        slot = self.plan.slots.get(name)
        if slot is None and name in self.graph.values:
            raise EngineError(f"node {name!r} is not computed on the optimized path: the "
                              "optimization passes compute what reads it without it (engine "
                              "optimize --report lists the rewrites); list it under outputs "
                              "to keep it, or run Executor(graph, optimize=False), which runs "
                              "the graph as written and keeps every value")
        if slot is None:
            raise EngineError(f"{name!r} names no value of graph {self.graph.spec.name!r}"
                              f"{did_you_mean(name, self.plan.slots)}")
        if not self._ran_forward:
            raise EngineError(f"no value of {name!r} yet: run forward() first")
        if self._owner != get_ident():
            self._refuse_thread()
        value = self._slots[slot]
        if value is None:
            raise EngineError(f"the value of node {name!r} was freed after its last use in "
                              "forward to save memory; list it under outputs in the spec to "
                              "keep it, or run Executor(graph, optimize=False), which keeps "
                              "every value")
        return self._frozen(value)

    @property
    def loss(self) -> float | None:
        """The loss of the last forward pass, or None when the spec declares no loss."""
        if self._loss_slot is None or not self._ran_forward:
            return None
        if self._computed_loss is not None:
            return self._computed_loss
        return float(self._slots[self._loss_slot])  # kept: backward starts there

    def compute(self, *results: Mapping[str, Array]) -> tuple[dict[str, np.ndarray], ...]:
        """``results`` of the last pass (``forward``'s, ``backward``'s) as NumPy arrays,
        computed together with the loss: on Dask the forward and backward are one task graph,
        computed once (a Dask value read on its own would run its part of the graph again);
        ``loss`` then returns the loss computed here."""
        loss = self._slots[self._loss_slot] if self._loss_slot is not None \
            and self._ran_forward else None
        *computed, loss_value = self.backend.compute(*results, loss)
        if loss_value is not None:
            self._computed_loss = float(loss_value)
        return tuple(computed)

    # -- backward --------------------------------------------------------------------------

    def backward(self, upstream: Mapping[str, Any] | None = None, *,
                 keep: Iterable[str] = _NOTHING) -> dict[str, Array]:
        """Gradients ``{tensor: d loss / d tensor}`` for every input and parameter requiring grad.

        Without ``upstream`` backward starts at the spec's loss with gradient 1; with
        ``{node: gradient}`` it starts from those nodes with those upstream gradients.
        ``keep`` names nodes whose gradients are returned too (they are freed otherwise),
        which is how the lesson's intermediate gradients, such as the one on ``raised``,
        are seen; a kept node that backward does not reach is left out of the result.
        """
        if not self._ran_forward:
            raise EngineError("backward() needs a forward() first: it uses the forward values")
        if self._owner != get_ident():
            self._refuse_thread()
        if keep is not _NOTHING and (isinstance(keep, str) or not isinstance(keep, Iterable)):
            raise ArgumentError(f"keep= takes a list of node names, found "  # a str: characters
                                f"{type(keep).__name__}: write keep=[{keep!r}]")
        if self.compiled is not self.graph and (keep is not _NOTHING or upstream is not None):
            keep = list(keep)
            if self._asks_as_written(upstream, keep):
                return self._reference_backward(upstream, keep)
        starts = None if upstream is None else self._upstream_slots(upstream)
        if starts is None and self._loss_slot is None:
            raise EngineError("the spec declares no loss: pass backward({node: upstream}) "
                              "to say where backward starts")
        # Tensors that require grad are returned anyway; any other name must be a node.
        kept = {self._node_slot(name): name for name in keep
                if name not in dict(self._grad_slots)} if keep else {}
        if self._jit is not None:
            return self._jit.backward(self._slots, starts, kept)
        result = self._backward_pass(self._slots, starts, kept)
        frozen = self._frozen
        for name, value in result.items():  # a loop: a comprehension is a call (3.11)
            result[name] = frozen(value)
        return result

    def _backward_pass(self, slots: list[Array], starts: dict[int, Array] | None,
                       kept: dict[int, str]) -> dict[str, Array]:
        """The backward program over forward's ``slots``, from ``starts`` (slot: upstream
        gradient) or the loss: the gradients of the tensors that require grad, and of the
        ``kept`` nodes that it reaches.  Run eagerly, or traced by ``engine.runtime.jitted``.

        The optimized walk is the reference walk (``_backward_reference``) plus: a
        gradient is freed once consumed, summed back only where the plan says its shape
        may differ, and added in place into an array the executor made itself (never into
        one the user passed, nor a view).  It is written out here, not called: on small
        graphs a Python call is a measurable part of a step."""
        grads: list[Array] = [None] * self._slot_count
        if starts is None:
            ones = self._loss_ones
            grads[self._loss_slot] = self._ones_like_loss(slots[self._loss_slot]) \
                if ones is None else ones
        else:
            for slot, gradient in starts.items():
                grads[slot] = gradient
        result: dict[str, Array] = {}
        if not self.optimize:
            self._backward_reference(slots, grads, kept, result)
        else:
            xp, fast = self.xp, self._fast
            owned = set()  # slots holding buffers the executor created: safe to add into
            step: Step | None = None
            try:  # Back's and Target's fields unpacked in the loops' heads, as in forward
                for vjp, attrs, inputs, output, needs, targets, step in self._backward_program:
                    g = grads[output]
                    if g is None:
                        continue
                    if kept and output in kept:
                        result[kept[output]] = g
                    grads[output] = None  # consumed: free it
                    args = inputs(slots)
                    parts = vjp(xp, attrs, g, slots[output], args, needs)
                    for index, slot, reduces, shared, cast in targets:
                        part = parts[index]
                        if part is None:
                            continue
                        if reduces and part.shape != args[index].shape:
                            part = self._sum_to(step, part, tuple(args[index].shape))
                        if cast is not None:
                            part = part.astype(cast) if fast else xp.astype(part, cast)
                        if grads[slot] is None:
                            grads[slot] = part
                            # adding in place saves a new array; on small ones not the
                            # check's cost
                            if shared and fast and part.size > SMALL_ARRAY and \
                                    _is_fresh(part, g, args, parts):
                                owned.add(slot)
                        elif slot in owned:
                            grads[slot] += part
                        else:  # never write into an array we did not create
                            grads[slot] = grads[slot] + part
                            owned.add(slot)
            except (ValueError, TypeError, IndexError) as exc:
                assert step is not None
                raise self._step_error(step, "backward", exc, slots) from exc
        for name, slot in self._grad_slots:
            g = grads[slot]
            result[name] = self.xp.zeros_like(slots[slot]) if g is None else g
        return result

    def _asks_as_written(self, upstream: Mapping[str, Any] | None, keep: list[str]) -> bool:
        """Whether a backward needs the graph as written: the gradient of a node (``keep``),
        which the rewritten graph may reach by other paths or not at all, or a start at a
        node it does not compute."""
        tensors = dict(self._grad_slots)
        if any(name not in tensors for name in keep):
            return True
        return isinstance(upstream, Mapping) and any(
            isinstance(name, str) and name not in self.plan.slots for name in upstream)

    def _reference_backward(self, upstream: Mapping[str, Any] | None,
                            keep: list[str]) -> dict[str, Array]:
        """``backward`` on the reference path (``optimize=False``, the graph as written), run
        forward on this executor's last feeds, parameters (the same arrays), mode and
        scaling: the gradients of nodes the passes fused or removed, as written."""
        plain = self._plain
        if plain is None:
            plain = self._plain = Executor(self.graph, seed=self.seed, optimize=False,
                                           **self._plain_args)
        plain.parameters = self.parameters
        plain.mode.training, plain.mode.step = self.mode.training, self.mode.step
        plain._scaling = self._scaling
        plain._owner = self._owner
        plain.forward(self._feeds)
        return plain.backward(upstream, keep=keep)

    def _backward_reference(self, slots: list[Array], grads: list[Array],
                            kept: dict[int, str], result: dict[str, Array]) -> None:
        """The plain reverse walk, as micrograd's: each reached step's vjp, each part
        summed back to its input's shape (and checked), ``+`` where gradients meet."""
        xp = self.xp
        back: Back | None = None
        try:
            for back in self._backward_program:
                g = grads[back.output]
                if g is None:  # nothing reached this node
                    continue
                if back.output in kept:
                    result[kept[back.output]] = g
                args = back.inputs(slots)
                parts = back.vjp(xp, back.attrs, g, slots[back.output], args, back.needs)
                for target in back.targets:
                    part = parts[target.index]
                    if part is not None:
                        part = self._sum_to(back.step, part, tuple(args[target.index].shape))
                        if target.cast is not None:
                            part = xp.astype(part, target.cast)
                        known = grads[target.slot]
                        grads[target.slot] = part if known is None else known + part
        except (ValueError, TypeError, IndexError) as exc:
            assert back is not None
            raise self._step_error(back.step, "backward", exc, slots) from exc

    def _ones_like_loss(self, loss: Array) -> Array:
        """The start d loss / d loss = 1: on NumPy one remembered read-only array of ones per
        shape and dtype, cheaper than ``np.ones``, whose Python-level body shows on small
        graphs.  Read-only, since backward never writes into an upstream gradient (a vjp
        may hand it on to two inputs) and nor may a caller it reaches as a result.  A loss
        of a static shape (a reduced loss: no named dimension) has its ones made once, in
        ``_loss_ones``; this serves the rest (a per-row loss, whose rows the feeds bind)."""
        if self.xp is not np:
            return self.xp.ones_like(loss)
        key = (loss.shape, loss.dtype)
        ones = self._ones.get(key)
        if ones is None:
            ones = self._ones[key] = _read_only_ones(*key)
        return ones

    def _static_loss_ones(self) -> np.ndarray | None:
        """``_ones_like_loss`` made once, when the loss's inferred shape has no named
        dimension (that shape and dtype are what runs); None on other array libraries."""
        if self.xp is not np or self.graph.loss is None:
            return None
        value = self.compiled.values[self.graph.loss]
        if not all(isinstance(size, int) for size in value.shape):
            return None
        return _read_only_ones(tuple(value.shape), np.dtype(value.dtype))

    def _upstream_slots(self, upstream: Mapping[str, Any]) -> dict[int, Array]:
        """The upstream gradients by slot, as arrays, each checked against its node's shape."""
        graph = self.graph
        starts = {}
        for name, gradient in names_mapping(upstream, "backward's upstream").items():
            slot = self._node_slot(name)
            if isinstance(gradient, (np.ndarray, list, float, int)):
                gradient = self._array(as_array(gradient, f"upstream gradient for {name!r}"),
                                       graph.values[name].dtype)
            value = self._slots[slot]
            shape = tuple(value.shape) if value is not None else \
                self._dims.shape(graph.values[name].shape)  # freed: its inferred shape
            if len(gradient.shape) != len(shape) or any(
                    isinstance(want, int) and want != got
                    for want, got in zip(shape, gradient.shape, strict=True)):
                raise DataError(f"upstream gradient for {name!r} has shape "
                                f"{format_shape(gradient.shape)}, but {name!r} has shape "
                                f"{format_shape(shape)}")
            starts[slot] = gradient
        return starts

    def _node_slot(self, name: str) -> int:
        if not isinstance(name, str):
            raise ArgumentError(f"a node is named by a string, found {type(name).__name__} "
                                f"{name!r}")
        if name not in self.graph.nodes:
            raise DataError(f"{name!r} is not a node{did_you_mean(name, self.graph.nodes)}")
        return self.plan.slots[name]

    def _sum_to(self, step: Step, grad: Array, shape: tuple[int, ...]) -> Array:
        try:
            return numpy_sum_to(grad, shape) if self._fast else sum_to(self.xp, grad, shape)
        except ShapeError as exc:  # a vjp bug, not a user error: say which op
            raise EngineError(f"node {step.name!r} ({step.op.name}): its vjp is wrong: "
                              f"{exc}") from None

    def _step_error(self, step: Step, phase: str, exc: Exception, slots: list[Array],
                    block: Block | None = None) -> DataError:
        """``block``: the forward block that failed, whose last step is ``step``; the steps
        run before it in the block are named too (their values never reach a slot, so the
        failure may be theirs), and its inputs are listed."""
        fused = block.steps[:-1] if block is not None else ()
        shapes = ", ".join(
            f"{self.plan.names[i]}: {format_shape(getattr(slots[i], 'shape', ()))}"
            for i in (block.inputs if block is not None else step.inputs))
        node = self.graph.nodes[step.name]
        chain = f" (run as one step after {', '.join(repr(s.name) for s in fused)})" \
            if fused else ""
        return DataError(f"node {step.name!r} ({step.op.name}, {self.graph.where(node.name)}) "
                         f"failed in {phase}{chain} with inputs {shapes}: {exc}")


def _read_only(array: Array) -> Array:
    """A read-only view of an array the executor keeps (forward's and backward's results,
    ``value``): a caller's write would otherwise change what a later ``backward`` reads.
    A view costs a fraction of a microsecond; a copy, the array's size."""
    if type(array) is not np.ndarray:
        return array
    view = array.view()
    view.setflags(False)  # write=False: positional, as keyword parsing costs as much again
    return view


def _read_only_ones(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Backward's start: read-only, as ``Executor._ones_like_loss`` says why."""
    ones = np.ones(shape, dtype)
    ones.setflags(False)  # write=False
    return ones


def _same(array: Array) -> Array:
    return array


#: How many sets of feed shapes ``Executor._bind`` remembers as already checked.
_BOUND_KEYS = 8


def _getter(slots: tuple[int, ...]) -> Callable[[list[Array]], tuple[Array, ...]]:
    """A C-level function from the slot list to the values at ``slots``, as a tuple."""
    if len(slots) == 1:
        (slot,) = slots
        return lambda values: (values[slot],)
    return itemgetter(*slots) if slots else lambda values: ()


def _is_fresh(part: Array, g: Array, args: tuple[Array, ...], parts: tuple[Array, ...]) -> bool:
    """Whether a NumPy vjp result is a new array nothing else refers to, so we may add into it.

    Views, the upstream gradient passed through (Add returns ``g`` twice), an input
    handed back, and one array returned for two inputs are all shared.  (Plain loops:
    on these few items a generator costs more than the comparisons.)
    """
    if type(part) is not np.ndarray or not part.flags.owndata or not part.flags.writeable:
        return False
    if part is g:
        return False
    for arg in args:
        if part is arg:
            return False
    seen = 0
    for other in parts:
        if other is part:
            seen += 1
    return seen == 1


def _refuse_empty(graph: Graph, fed: Mapping[str, Any]) -> None:
    """A DataError for a feed without elements on Dask: Dask's max over an empty axis raises
    (NumPy's gives the empty result), and every row max (Softmax, CrossEntropy, Max) takes
    one, so the run would end in a traceback from inside Dask."""
    for name, array in fed.items():
        if 0 in array.shape:
            raise DataError(f"{fed_as(graph, name)}: has shape {format_shape(array.shape)}, "
                            "no elements, which the Dask backend cannot run (Dask refuses "
                            "a max over an empty axis); feed at least one row, or run it on "
                            "the NumPy backend")
