"""Every spec error is a SpecError that names the file, line, column and path, and says why."""

from __future__ import annotations

import textwrap

import pytest

import engine

BASE = """\
name: t
inputs:
  x: {shape: [5, 3], init: ones, requires_grad: true}
nodes:
"""

# (spec text, expected line, expected column, regex the message must match)
CASES = {
    "yaml syntax": ("name: t\nnodes: {a: [1, 2}\n", 2, 17, r"YAML syntax error"),
    "unknown op": (BASE + "  e: {op: Expp, inputs: [x]}\n", 5, 7,
                   r"nodes\.e\.op: unknown op 'Expp' \(did you mean 'Exp'\?\)"),
    "missing op": (BASE + "  e: {inputs: [x]}\n", 5, 3, r"missing key 'op'"),
    "unknown attribute": (BASE + "  s: {op: Sum, inputs: [x], axes: 1}\n", 5, 29,
                          r"nodes\.s\.axes: unknown key 'axes' \(did you mean 'axis'\?\)"),
    "wrong attribute type": (BASE + "  s: {op: Sum, inputs: [x], keepdims: maybe}\n", 5, 29,
                             r"nodes\.s\.keepdims: expected true or false, found 'maybe'"),
    "bad reduction": (BASE + "  p: {op: Softmax, inputs: [x]}\n"
                      "  l: {op: NLL, inputs: [p, x], reduction: average}\n", 6, 32,
                      r"nodes\.l\.reduction: expected 'sum', 'mean' or 'none', found 'average'"),
    "missing inputs key": (BASE + "  e: {op: Exp}\n", 5, 3, r"missing required key 'inputs'"),
    "input names nothing": (BASE + "  e: {op: Exp, inputs: [xx]}\n", 5, 25,
                            r"nodes\.e\.inputs\[0\]: node 'e' \(Exp\): input 'xx' names "
                            r"nothing \(did you mean 'x'\?\)"),
    "wrong arity": (BASE + "  e: {op: Exp, inputs: [x, x]}\n", 5, 16,
                    r"node 'e' \(Exp\): takes 1 input \(x\), found 2"),
    "name defined twice": (BASE + "  x: {op: Exp, inputs: [x]}\n", 5, 3,
                           r"name 'x' is defined twice: it is already an input \(line 3\)"),
    "duplicate yaml key": (BASE + "  e: {op: Exp, inputs: [x]}\n  e: {op: Neg, inputs: [x]}\n",
                           6, 3, r"duplicate key 'e' \(first defined at line 5\)"),
    "cycle": (BASE + "  a: {op: Exp, inputs: [c]}\n  b: {op: Exp, inputs: [a]}\n"
              "  c: {op: Add, inputs: [b, x]}\n", 5, 3, r"cycle: a -> b -> c -> a"),
    "self loop": (BASE + "  a: {op: Add, inputs: [a, x]}\n", 5, 3, r"cycle: a -> a"),
    "loss not a node": (BASE + "  e: {op: Exp, inputs: [x]}\nloss: x\n", 6, 1,
                        r"loss 'x' is an input, not a node"),
    "loss names nothing": (BASE + "  e: {op: Exp, inputs: [x]}\nloss: ee\n", 6, 1,
                           r"loss 'ee' names nothing \(did you mean 'e'\?\)"),
    "loss not scalar": (BASE + "  e: {op: Exp, inputs: [x]}\nloss: e\n", 6, 1,
                        r"loss 'e' must be a scalar .* shape \[5, 3\]; reduce it with Sum"),
    "output names nothing": (BASE + "  e: {op: Exp, inputs: [x]}\noutputs: [e, f]\n", 6, 14,
                             r"outputs\[1\]: output 'f' names nothing"),
    "matmul inner dims": (BASE + "  m: {op: MatMul, inputs: [x, x]}\n", 5, 3,
                          r"node 'm' \(MatMul\): inner dimensions differ: \[5, 3\] @ \[5, 3\]"),
    "broadcast mismatch": ("name: t\ninputs:\n  a: {shape: [2, 3]}\n  b: {shape: [4]}\n"
                           "nodes:\n  s: {op: Add, inputs: [a, b]}\n", 6, 3,
                           r"node 's' \(Add\): shapes cannot be broadcast together: \[2, 3\], "
                           r"\[4\]"),
    "axis out of range": (BASE + "  s: {op: Sum, inputs: [x], axis: 2}\n", 5, 3,
                          r"node 's' \(Sum\): axis 2 is out of range for \[5, 3\] \(rank 2\); "
                          r"valid: axes -2 to 1"),
    "integer input to float op": ("name: t\ninputs:\n  k: {shape: [3], dtype: int64}\n"
                                  "nodes:\n  e: {op: Exp, inputs: [k]}\n", 5, 3,
                                  r"node 'e' \(Exp\): needs floating-point inputs, got int64"),
    "bad dtype": ("name: t\ninputs:\n  x: {shape: [3], dtype: float8}\nnodes: {}\n", 3, 19,
                  r"inputs\.x\.dtype: expected 'float64', 'float32', 'float16', .* or 'bool'"),
    "bad init word": ("name: t\ninputs:\n  x: {shape: [3], init: random}\nnodes: {}\n", 3, 19,
                      r"inputs\.x\.init: unknown init 'random'"),
    "two init forms": ("name: t\ninputs:\n  x: {shape: [3], init: {zeros: true, ones: true}}\n"
                       "nodes: {}\n", 3, 19, r"exactly one init form .* found zeros, ones"),
    "uniform bounds": ("name: t\ninputs:\n  x: {shape: [3], init: {uniform: {low: 1, high: 0}}}"
                       "\nnodes: {}\n", 3, 26, r"low \(1\.0\) must be less than high"),
    "ragged value": ("name: t\ninputs:\n  x: {shape: [2, 2], init: {value: [[1, 2], [3]]}}\n"
                     "nodes: {}\n", 3, 29, r"rectangular nested list"),
    "value shape": ("name: t\ninputs:\n  x: {shape: [2, 2], init: {value: [1, 2]}}\n"
                    "nodes: {}\n", 3, 22, r"value has shape \[2\] but the tensor is declared "
                                          r"\[2, 2\]"),
    "parameter without init": ("name: t\nparameters:\n  w: {shape: [3]}\nnodes: {}\n", 3, 3,
                               r"a parameter needs an init"),
    "bad name": (BASE + "  2e: {op: Exp, inputs: [x]}\n", 5, 3, r"nodes"),
    "unknown top-level key": ("name: t\nnodez: {}\n", 2, 1,
                              r"unknown key 'nodez' \(did you mean 'nodes'\?\)"),
    "missing nodes": ("name: t\n", 1, 1, r"missing required key 'nodes'"),
    "not a mapping": ("- 1\n- 2\n", 1, 1, r"a spec is a mapping"),
    "python tag": ("name: !!python/object/apply:os.system ['echo hi']\nnodes: {}\n", 1, 7,
                   r"YAML tag .*python.* is not allowed"),
    "labels need int64": ("name: t\ninputs:\n  t: {shape: [3], init: {labels: {classes: 2}}}\n"
                          "nodes: {}\n", 3, 19, r"labels are integer class indices"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_spec_error_is_located(case: str) -> None:
    text, line, col, pattern = CASES[case]
    with pytest.raises(engine.SpecError) as info:
        engine.loads(text, file="bad.yaml")
    messages = [str(p) for p in info.value.problems]
    matching = [p for p in info.value.problems if __import__("re").search(pattern, str(p))]
    assert matching, f"no problem matches {pattern!r}; got {messages}"
    problem = matching[0]
    assert (problem.file, problem.line, problem.col) == ("bad.yaml", line, col), messages


def test_all_problems_are_reported_together_sorted_by_position() -> None:
    text = textwrap.dedent("""\
        name: t
        inputs:
          x: {shape: [3]}
        nodes:
          a: {op: Exp, inputs: [y]}
          b: {op: cbrt, inputs: [x]}
          c: {op: Neg, inputs: [z]}
        outputs: [q]
    """)
    with pytest.raises(engine.SpecError) as info:
        engine.loads(text, file="many.yaml")
    problems = info.value.problems
    # A lower_case op may name a function, so it is found with the names that name nothing
    # (both need the functions known);
    # the outputs are checked once every node is known.
    assert [p.line for p in problems] == [5, 6, 7]
    text = text.replace("cbrt", "Exp")
    with pytest.raises(engine.SpecError) as info:
        engine.loads(text, file="many.yaml")
    assert [(p.line, p.path) for p in info.value.problems] == [
        (5, "nodes.a.inputs[0]"), (7, "nodes.c.inputs[0]")]
    assert str(info.value).startswith("many.yaml:5:")
    text = text.replace("[y]", "[x]").replace("[z]", "[x]")
    with pytest.raises(engine.SpecError) as info:
        engine.loads(text, file="many.yaml")
    assert [(p.line, p.path) for p in info.value.problems] == [(8, "outputs[0]")]


def test_missing_file_is_a_spec_error(tmp_path) -> None:
    with pytest.raises(engine.SpecError, match="no such file"):
        engine.load(tmp_path / "absent.yaml")
