"""The fast reading of one-line entries (engine/spec/flowlines.py) against PyYAML's.

``parse_yaml`` reads the one-line entries of a block itself and leaves the rest to
PyYAML; ``source._parse`` is PyYAML reading the whole text, the reference.  For
every spec of the repository and for lines written to hit each YAML 1.1 rule
(booleans, nulls, every number form, quotes, comments, duplicates, ...) both must
give the same data (types and order included), the same position for every
place, the same booleans, and the same error text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import GRAPHS, ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from benchmarks.workloads import chain_spec
from engine.errors import SpecError
from engine.spec import flowlines, loader, source
from engine.spec.source import SourceMap, _parse, parse_yaml

SPECS = sorted([*GRAPHS.rglob("*.yaml"), *(ROOT / "tests" / "bad_specs").rglob("*.yaml"),
                *(ROOT / "engine" / "stdlib").rglob("*.yaml")])


def read(text: str, reader: Any) -> tuple[str, SourceMap | None]:
    """``repr`` of the data (it tells True from 1 and 1.0 from 1, and shows key order), or
    the error text."""
    try:
        data, source = reader(text, "spec.yaml")
    except SpecError as exc:
        return f"SpecError: {exc}", None
    return repr(data), source


def assert_same(text: str) -> None:
    """parse_yaml reads ``text`` exactly as PyYAML alone does."""
    fast, fast_source = read(text, parse_yaml)
    slow, slow_source = read(text, _parse)
    assert fast == slow
    if slow_source is None:
        assert fast_source is None
        return
    assert fast_source is not None
    for path in slow_source.positions:
        assert path in fast_source, path
        assert fast_source.position(path) == slow_source.position(path), path
        for extra in ("not_written", 10**6):  # unwritten: the nearest written ancestor's place
            assert (*path, extra) not in fast_source
            assert fast_source.position((*path, extra)) == slow_source.position((*path, extra))
    assert fast_source.positions == slow_source.positions  # once every place was asked for
    assert fast_source.booleans == slow_source.booleans


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_spec_of_the_repository_reads_as_pyyaml_reads_it(path: Path) -> None:
    assert_same(path.read_text())


def test_scalars_are_asked_of_the_resolver_pyyaml_composes_with() -> None:
    assert source._Loader.yaml_implicit_resolvers is yaml.resolver.Resolver.yaml_implicit_resolvers


def test_the_chain_benchmark_is_read_here_and_as_pyyaml_reads_it() -> None:
    text = chain_spec(300)
    rest, blocks = flowlines.split(text)
    assert [(b.key, len(b.values), b.composed) for b in blocks] == [("nodes", 301, [])]
    assert rest.count("\n") == text.count("\n") and "n12" not in rest
    assert blocks[0].values["n12"] == {"op": "Mul", "inputs": ["n11", "c"]}
    _, source = parse_yaml(text, "chain.yaml")
    assert source.deferred == {"nodes"}
    assert ("nodes", "n12", "inputs", 1) not in source.positions  # not recorded until asked
    # line 5 is n0: "  n12: {op: Mul, inputs: [n11, c]}" is line 17; c is at column 32
    assert source.position(("nodes", "n12", "inputs", 1)) == (17, 32)
    assert_same(text)


HEADER = "name: t\ninputs: {x: {shape: [2]}}\nconstants: {c: 1.0}\n"

#: Scalars in every YAML 1.1 form: some are text, most are not, and the fast reading may
#: take only the first kind.
SCALARS = [
    "x", "n12", "Mul", "nn.dense", "a_b", "a-b", "a/b", "~x", "x~", ".x", "-x", "+x", "-.x",
    "yes", "Yes", "YES", "no", "No", "NO", "y", "Y", "n", "N", "on", "On", "ON", "off", "Off",
    "OFF", "true", "True", "TRUE", "false", "False", "FALSE", "yess", "nope", "onn", "offf",
    "null", "Null", "NULL", "nul", "nulls", "~", "0", "7", "-1", "+1", "010", "0o17", "0x1F",
    "0x_1F", "0b101", "1_000", "1:30", "-1:30:00", "190:20:30.15", "1.5", "-1.5", "1.", ".5",
    "1e3", "1E+3", "1.5e-3", "-.5e3", "1.0e+3", ".inf", "-.inf", "+.inf", ".Inf", ".INF",
    ".nan", ".NaN", ".NAN", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "1-2", "1.2.3",
    "x1", "e3", "E3", "_", "=", "<<", "''", "'yes'", "'1'", "'it''s'", "''''", "' x '",
    "'a, b'", "'[x]'", "'{x}'", "'a: b'", "'# x'", "'null'", '""', '"no"', '"1.5"', '"a # b"',
    '"a, b: [c]"', '"x"', "'~'", "'ä'", '"ä"', "ä", "a\tb", "x" * 300, "'" + "y" * 300 + "'",
    "&a x", "*a", "!!str x", "!x y", "%x", "@x", "`x", "?x", "a b", "a#b", "a #b",
]


def _spec(*lines: str) -> str:
    return HEADER + "nodes:\n" + "".join(line + "\n" for line in lines) + "loss: n\n"


@pytest.mark.parametrize("scalar", SCALARS)
def test_each_scalar_form_reads_the_same_as_value_item_key_and_name(scalar: str) -> None:
    for line in (f"  n: {{op: {scalar}, inputs: [x, c]}}",
                 f"  n: {{op: Neg, inputs: [{scalar}]}}",
                 f"  n: {{op: Neg, inputs: [x, {scalar}, c]}}",
                 f"  n: {{op: Neg, inputs: [x], {scalar}: x}}",
                 f"  n: {{op: Neg, inputs: [x], attrs: {{{scalar}: [{scalar}, x]}}}}",
                 f"  {scalar}: {{op: Neg, inputs: [x]}}"):
        assert_same(_spec("  m: {op: Exp, inputs: [x]}", line, "  k: {op: Neg, inputs: [m]}"))


#: Whole lines: spacing, comments, empty collections, duplicates, nesting, and lines
#: outside the subset (each must leave its block to PyYAML, or be read the same).
LINES = [
    "  n: {op: Neg, inputs: [x]}",
    "  n: {op: Neg,inputs: [x]}",
    "  n:   {  op:  Neg , inputs :  [ x ,c ] }",
    "  n: {op: Neg, inputs: [x]}   ",
    "  n: {op: Neg, inputs: [x]}  # a comment: {op: X}",
    "  n: {op: Neg, inputs: [x]}#no space",
    "  n: {op: Neg, inputs: [x, c,]}",
    "  n: {op: Neg, inputs: []}",
    "  n: {op: Neg, inputs: [ ]}",
    "  n: {}",
    "  n: { }",
    "  n: {op: Neg, inputs: [x], attrs: {}}",
    "  n: {op: Neg, inputs: [x], attrs: {a: b, c: [d, e], f: []}}",
    "  n: {op: Neg, inputs: [x], attrs: {a: {b: c}}}",
    "  n: {op: Neg, op: Exp, inputs: [x]}",
    "  n: {op: Neg, inputs: [x], a: b, c: d, e: f, g: [h, i], j: k}",
    "  n: {op: Neg, inputs: [x], a: b, c: d, a: f}",
    "  n: {op: Neg, inputs: [x, x, x]}",
    "  n: {op: 'Neg', 'inputs': [\"x\", 'c']}",
    "  'n': {op: Neg, inputs: [x]}",
    '  "n": {op: Neg, inputs: [x]}',
    "  n: {op: Neg, inputs: [x]}",  # again: a duplicate node when used twice
    "  n: {op: Neg, inputs: [x]",
    "  n: {op: Neg, inputs: [x]}}",
    "  n: {op: Neg, inputs: [[x]]}",
    "  n: [x, y]",
    "  n: x",
    "  n:",
    "    op: Neg",
    "    inputs: [x]",
    "   n: {op: Neg, inputs: [x]}",
    "\tn: {op: Neg, inputs: [x]}",
    "  n: {op: Neg, inputs: [x]}\t",
    "",
    "   ",
    "  # a comment line",
    "# a comment at column 1",
    "  n: &a {op: Neg, inputs: [x]}",
    "  n: {op: Neg, inputs: *a}",
    "  n: !!map {op: Neg, inputs: [x]}",
    "  n: {op: Neg, inputs: [x], description: 'multi",
    "    line'}",
    "  n: {op: Neg, inputs: [x], s: \"a\\tb\"}",
    "  n: {op: Neg, inputs: [x], s: 'ä'}",
    "  ? n",
    "  : {op: Neg}",
    "  - n",
    "  n: {op: Neg, inputs: [" + ", ".join(f"v{i}" for i in range(2000)) + "]}",
    "  " + "k" * 300 + ": {op: Neg, inputs: [x]}",
    "  k: {" + "k" * 300 + ": x}",
    "  k: {" + "k" * 2000 + ": x}",
]

TAILS = ["loss: n\n", "loss: n", "", "\n\n", "nodes: {}\n", "nodes:\n  z: {op: Neg}\n",
         "outputs: [n]\n# end\n", "---\nx: 1\n", "...\n", "  extra: {op: Neg}\n"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(lines=st.lists(st.sampled_from(LINES), max_size=8), tail=st.sampled_from(TAILS),
       key=st.sampled_from(["nodes", "functions", "'nodes'", "nodes :", "nodes: # c",
                            "nodes:   ", "on", "1", "nodes: !!map", "- nodes"]))
def test_any_mix_of_lines_reads_the_same(lines: list[str], tail: str, key: str) -> None:
    assert_same(HEADER + f"{key}\n" + "".join(line + "\n" for line in lines) + tail)


@pytest.mark.parametrize("text", [
    # PyYAML reads the "entries" as the text of a quoted scalar or a flow collection
    'name: "t\nnodes:\n  n: {op: Neg}\n"\n',
    "name: [t,\nnodes:\n  n: {op: Neg}\n]\n",
    "{name: t,\nnodes:\n  n: {op: Neg}\n}\n",
    "name: |\n  text\nnodes:\n  n: {op: Neg}\n",
    "--- |\nnodes:\n  n: {op: Neg}\n",
    "- a\nnodes:\n  n: {op: Neg}\n",
    "nodes:\n  n: {op: Neg}\nnodes:\n  m: {op: Neg}\n",
    "nodes:\n  n: {op: Neg}\nnodes: 1\n",
    "nodes: 1\nnodes:\n  n: {op: Neg}\n",
    "nodes:\n  n: {op: Neg}\n  m: {op: 1}\n  n: {op: 2}\n",
    "nodes:\n  n: {op: 1}\n  n: {op: Neg}\n",
    "nodes:\n  n: {op: Neg}\n  yes: {op: Neg}\n  1: {op: Neg}\n  m: {op: Neg}\n",
    "nodes:\n  n: {op: Neg}\nx: \x01\n",
    "nodes:\n  n: {op: Neg}\nx: [\n",
    "a: &x 1\nnodes:\n  n: {op: Neg}\nb: *x\n",
    "nodes:\n  n: {op: Neg}\nb: *x\n",
    "nodes:\r\n  n: {op: Neg}\r\n",
    "nodes:\n  n: {op: Neg}\x85  m: {op: Neg}\n",
    "nodes:\n  n: {op: Neg}\u2028  m: {op: Neg}\n",
    "\ufeffnodes:\n  n: {op: Neg}\n",
    "x: 1\nnodes:\n  n: {op: Neg, inputs: [x]}\n  m: {op: Neg, v: " + "9" * 2000 + "}\n",
])
def test_texts_that_only_pyyaml_can_read_read_the_same(text: str) -> None:
    assert_same(text)


@pytest.mark.parametrize("line, message", [
    ("  n: {op: Nge, inputs: [x]}", "nodes.n.op"),
    ("  n: {op: Neg, inputs: [x], axiss: q}", "nodes.n.axiss"),
    ("  n: {op: Neg, inputs: x}", "nodes.n.inputs"),
    ("  n: {op: Neg, inputs: [x, zz]}", "nodes.n.inputs[1]"),
    ("  n: {op: Neg, inputs: [x], on: q}", "nodes.n"),
    ("  n: {op: Neg, inputs: [x, yes]}", "nodes.n.inputs[1]"),
])
def test_errors_inside_a_fast_line_are_located_as_pyyaml_locates_them(
        line: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEADER + "nodes:\n  m: {op: Exp, inputs: [x]}\n" + line + "\nloss: n\n"
    with pytest.raises(SpecError) as fast:
        engine.loads(text, file="spec.yaml")
    monkeypatch.setattr(loader, "parse_yaml", _parse)
    with pytest.raises(SpecError) as slow:
        engine.loads(text, file="spec.yaml")
    assert str(fast.value) == str(slow.value)
    assert "spec.yaml:6:" in str(fast.value) and message in str(fast.value)


def test_an_anchor_anywhere_leaves_the_whole_text_to_pyyaml(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The alias-expansion bound counts every value of the text, the fast lines' too."""
    monkeypatch.setattr(source, "MAX_VALUES", 40)
    text = ("name: t\na: &a [x, x]\nb: [*a, *a]\nnodes:\n"
            + "".join(f"  n{i}: {{op: Neg, inputs: [x]}}\n" for i in range(10)))
    assert "expands through YAML aliases" in read(text, _parse)[0]
    assert_same(text)
    assert flowlines.split(text) == (text, [])
