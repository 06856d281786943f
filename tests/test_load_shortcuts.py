"""The loader's shortcuts for large specs give exactly what the long way gives.

- ``engine.spec.inline._without_calls``: a spec without functions or imports skips the
  expander; its flat nodes must be the expander's, field by field, on every spec of
  ``graphs/``, ``examples/`` and the bad-spec corpus it accepts, and it must decline
  every spec the expander would refuse (so that the expander words the errors).
- ``engine.graph.build._Builder.known``: an op's shape and dtype rules are asked once per
  (op, input shapes, input dtypes) where ``_pure`` says they give the same answer
  everywhere; a build with the cache and one without it must agree on every value and
  node, and ops whose attributes differ between nodes must never share an answer.
- ``engine.graph.lint``: the walks skipped when backward from the loss reaches every
  node; the warnings were written by hand from the specs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

import engine
from benchmarks.workloads import chain_spec
from engine.errors import SpecError
from engine.graph import build
from engine.graph.shapes import Dims
from engine.ops import REGISTRY
from engine.spec.imports import Module
from engine.spec.inline import FlatNode, _Expander, _without_calls
from engine.spec.source import parse_yaml
from engine.spec.validation import validate_spec

SPECS = sorted([*(ROOT / "graphs").glob("*.yaml"), *(ROOT / "examples").rglob("*.yaml"),
                *(ROOT / "tests" / "bad_specs").glob("*.yaml")])


def _module(text: str, file: str = "test.yaml", folder: Path = Path(".")) -> Module:
    data, source = parse_yaml(textwrap.dedent(text), file)
    return Module(validate_spec(data, source), source, data, folder)


def _valid_modules() -> list[tuple[Path, Module]]:
    """Every corpus spec that parses and validates and imports nothing (expand's input)."""
    found = []
    for path in SPECS:
        try:
            module = _module(path.read_text(), str(path), path.parent)
        except SpecError:
            continue
        if not module.spec.imports:
            found.append((path, module))
    return found


def _record(node: FlatNode) -> tuple[Any, ...]:
    return (node.name, node.top, id(node.node), node.inputs, id(node.loc.source),
            node.loc.path, node.loc.calls, node.call)


def test_a_spec_without_calls_gets_the_expanders_flat_nodes() -> None:
    taken = 0
    for path, module in _valid_modules():
        fast = _without_calls(module)
        try:
            slow: list[FlatNode] | None = _Expander([module]).run()
        except SpecError:
            slow = None  # the expander refuses it: the shortcut must have declined
        if fast is None:
            assert slow is None or module.spec.functions, path
            continue
        taken += 1
        assert slow is not None, path
        assert [_record(n) for n in fast] == [_record(n) for n in slow], path
    assert taken >= 90  # nearly all the corpus takes it (96 of 98 when this was written)


@pytest.mark.parametrize("nodes", [
    "y: {op: softmax, inputs: [x]}",  # a call, but no function of that name
    "y: {op: Exp, inputs: [z]}",  # names nothing
    "y: {op: Exp, inputs: [$k]}",  # an attribute outside a function
    "y: {op: Exp, inputs: [x.out]}",  # an output of something that is not a call
])
def test_a_spec_the_expander_refuses_is_left_to_it(nodes: str) -> None:
    module = _module(f"""
        name: t
        inputs: {{x: {{shape: [2]}}}}
        nodes:
          {nodes}
        outputs: [y]
    """)
    assert _without_calls(module) is None
    with pytest.raises(SpecError):
        _Expander([module]).run()


def test_a_spec_with_functions_is_left_to_the_expander() -> None:
    module = _module("""
        name: t
        inputs: {x: {shape: [2]}}
        functions:
          twice: {inputs: [a], nodes: {b: {op: Add, inputs: [a, a]}}, outputs: [b]}
        nodes:
          y: {op: Exp, inputs: [x]}
        outputs: [y]
    """)
    assert _without_calls(module) is None


def _graph(path: Path, pure: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What loading ``path`` gives, with the rule cache (``pure``) or without it."""
    with monkeypatch.context() as patch:
        if not pure:
            patch.setattr(build, "_pure", lambda op, shapes: False)
        try:
            graph = engine.load(path, [ROOT / "graphs"])
        except SpecError as exc:
            return [str(p) for p in exc.problems]
    values = [(n, v.kind, v.shape, v.dtype, v.requires_grad, v.weak, v.loc.path)
              for n, v in graph.values.items()]
    nodes = [(n, node.op.name, node.inputs) for n, node in graph.nodes.items()]
    return (values, nodes, graph.order, graph.dims.bound,
            {k: str(v) for k, v in graph.dims.origins.items()},
            [str(p) for p in graph.warnings])


def test_builds_with_and_without_the_rule_cache_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in SPECS:
        assert _graph(path, True, monkeypatch) == _graph(path, False, monkeypatch), path


def test_a_chain_asks_each_rule_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    rules = build._Builder._rules

    def counted(self: Any, node: Any, *args: Any) -> Any:
        asked.append(node.op.name)
        return rules(self, node, *args)

    monkeypatch.setattr(build._Builder, "_rules", counted)
    graph = engine.loads(chain_spec(1_000))
    # x [4, 4] times the bare number c, Exp of [4, 4], then the Sum: one question each
    assert sorted(asked) == ["Exp", "Mul", "Sum"]
    assert graph.values["n999"].shape == (4, 4) and graph.values["loss"].shape == ()
    assert all(graph.values[f"n{i}"].requires_grad for i in range(1_000))


def test_nodes_whose_attributes_differ_never_share_an_answer() -> None:
    graph = engine.loads(textwrap.dedent("""
        name: t
        inputs: {x: {shape: [3, 4]}}
        nodes:
          rows: {op: Sum, inputs: [x], axis: 0}
          cols: {op: Sum, inputs: [x], axis: 1}
          wide: {op: Cast, inputs: [x], to: float32}
          whole: {op: Cast, inputs: [x], to: int64}
        outputs: [rows, cols, wide, whole]
    """))
    shapes = {name: (graph.values[name].shape, graph.values[name].dtype)
              for name in ("rows", "cols", "wide", "whole")}
    assert shapes == {"rows": ((4,), "float64"), "cols": ((3,), "float64"),
                      "wide": ((3, 4), "float32"), "whole": ((3, 4), "int64")}


def test_only_numbers_and_ops_without_attributes_are_pure() -> None:
    assert build._pure(REGISTRY["Mul"], ((4, 4), ()))
    assert not build._pure(REGISTRY["Mul"], (("batch", 4), ()))  # may bind batch
    assert not build._pure(REGISTRY["Sum"], ((4, 4),))  # axis differs between nodes
    # named dimensions still bind where the cache is not used
    graph = engine.loads(textwrap.dedent("""
        name: t
        inputs: {x: {shape: [batch, 3]}, y: {shape: [5, 3]}}
        nodes:
          a: {op: Add, inputs: [x, y]}
          b: {op: Add, inputs: [x, y]}
        outputs: [a, b]
    """))
    assert isinstance(graph.dims, Dims) and graph.dims.resolve("batch") == 5
    assert graph.values["b"].shape == (5, 3)


def test_lint_when_backward_reaches_every_node_and_when_it_does_not() -> None:
    reached = engine.loads(textwrap.dedent("""
        name: t
        inputs: {x: {shape: [2], requires_grad: true}}
        constants: {k: 2.0, u: 3.0}
        nodes:
          a: {op: Mul, inputs: [x, k]}
          loss: {op: Sum, inputs: [a]}
        loss: loss
    """))
    assert [p.message for p in reached.warnings] == [
        "constant 'u' is used by no node; remove it or list it among a node's inputs"]
    folded = engine.loads(textwrap.dedent("""
        name: t
        inputs: {x: {shape: [2], requires_grad: true}}
        parameters: {w: {shape: [2], init: {ones: true}}}
        nodes:
          loss: {op: Add, inputs: [1.0, 2.0]}
          y: {op: Exp, inputs: [x]}
          d: {op: Exp, inputs: [y]}
        outputs: [y]
        loss: loss
    """))
    assert sorted(p.message for p in folded.warnings) == sorted([
        "requires_grad has no effect: input 'x' does not reach the loss 'loss'; remove "
        "requires_grad",
        "parameter 'w' is used by no node; remove it or list it among a node's inputs",
        "node 'loss' (Add) is used by no node; remove it or list it among a node's inputs",
        "node 'd' (Exp) reaches neither an output nor the loss, so its value is computed and "
        "dropped; list it under outputs or remove it",
        "the loss 'loss' depends on no tensor that requires grad, so backward computes no "
        "gradient; declare parameters or set requires_grad: true on an input"])
