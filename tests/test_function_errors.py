"""Errors in functions and imports: each names the file, line and column, and the call site."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

import engine
import engine.spec.inline


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def problems(path: Path, **kwargs) -> list[engine.Problem]:
    with pytest.raises(engine.SpecError) as info:
        engine.load(path, **kwargs)
    return info.value.problems


def only(found: list[engine.Problem], pattern: str) -> engine.Problem:
    """The one problem whose text matches ``pattern``."""
    matching = [p for p in found if re.search(pattern, str(p))]
    assert len(matching) == 1, f"{pattern!r} matches {len(matching)} of {[str(p) for p in found]}"
    return matching[0]


HEAD = """\
name: t
inputs:
  x: {shape: [2, 3]}
"""

# (lines after HEAD, line, column, path, regex): errors found in the spec's own file.
CASES = {
    "attribute given by the call has the wrong type": (
        """\
        functions:
          total:
            inputs: [v]
            attrs: {axis: -1}
            nodes:
              s: {op: Sum, inputs: [v], axis: $axis}
            outputs: [s]
        nodes:
          t: {op: total, inputs: [x], axis: two}
        """, 9, 33, "functions.total.nodes.s.axis",
        r"expected an integer or a list, found 'two' \(in 'total' called by node 't' at "
        r"\S*main.yaml:12:3\)"),
    "unknown attribute of an op in a body": (
        """\
        functions:
          total:
            inputs: [v]
            nodes:
              s: {op: Sum, inputs: [v], axes: 0}
            outputs: [s]
        nodes:
          t: {op: total, inputs: [x]}
        """, 8, 33, "functions.total.nodes.s.axes",
        r"unknown key 'axes' \(did you mean 'axis'\?\); allowed here: .*\(in 'total' called by "
        r"node 't'"),
    "shape error inside a body": (
        """\
        functions:
          square:
            inputs: [v]
            nodes:
              m: {op: MatMul, inputs: [v, v]}
            outputs: [m]
        nodes:
          sq: {op: square, inputs: [x]}
        """, 8, 7, "functions.square.nodes.m",
        r"node 'sq' \(MatMul\): inner dimensions differ.* \(in 'square' called by node 'sq' "
        r"at \S*main.yaml:11:3\)"),
    "unknown op in a body": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              e: {op: Expp, inputs: [v]}
            outputs: [e]
        nodes:
          y: {op: f, inputs: [x]}
        """, 8, 11, "functions.f.nodes.e.op", r"unknown op 'Expp' \(did you mean 'Exp'\?\)"),
    "unknown function with suggestions from functions and ops": (
        """\
        functions:
          softmax_staged:
            inputs: [v]
            nodes:
              e: {op: Exp, inputs: [v]}
            outputs: [e]
        nodes:
          y: {op: softmax_stagd, inputs: [x]}
        """, 11, 3, "nodes.y", r"unknown op 'softmax_stagd' \(did you mean 'softmax_staged'"
                               r".*functions: softmax_staged"),
    "input names nothing in a body": (
        """\
        functions:
          f:
            inputs: [value]
            nodes:
              e: {op: Exp, inputs: [valeu]}
            outputs: [e]
        nodes:
          y: {op: f, inputs: [x]}
        """, 8, 29, "functions.f.nodes.e.inputs[0]",
        r"node 'e' \(Exp\) of function 'f': input 'valeu' names nothing \(did you mean "
        r"'value'\?\); a function's nodes read its inputs \(value\) and its own nodes"),
    "a body cannot read the caller's values": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              e: {op: Add, inputs: [v, x]}
            outputs: [e]
        nodes:
          y: {op: f, inputs: [x]}
        """, 8, 32, "functions.f.nodes.e.inputs[1]", r"input 'x' names nothing"),
    "unknown call attribute": (
        """\
        functions:
          f:
            inputs: [v]
            attrs: {axis: -1}
            nodes:
              s: {op: Sum, inputs: [v], axis: $axis}
            outputs: [s]
        nodes:
          y: {op: f, inputs: [x], axes: 0}
        """, 12, 27, "nodes.y.axes",
        r"unknown attribute 'axes' for function 'f' \(did you mean 'axis'\?\); its attributes: "
        r"axis"),
    "wrong number of inputs": (
        """\
        functions:
          f:
            inputs: [a, b]
            nodes:
              s: {op: Add, inputs: [a, b]}
            outputs: [s]
        nodes:
          y: {op: f, inputs: [x]}
        """, 11, 14, "nodes.y.inputs", r"node 'y' calls 'f', which takes 2 inputs \(a, b\), "
                                       r"found 1"),
    "undeclared attribute reference": (
        """\
        functions:
          f:
            inputs: [v]
            attrs: {axis: -1}
            nodes:
              s: {op: Sum, inputs: [v], axis: $axs}
            outputs: [s]
        nodes:
          y: {op: f, inputs: [x]}
        """, 9, 33, "functions.f.nodes.s.axis",
        r"\$axs names no attribute of function 'f' \(did you mean 'axis'\?\); declare it"),
    "output names nothing": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              e: {op: Exp, inputs: [v]}
            outputs: [ee]
        nodes:
          y: {op: f, inputs: [x]}
        """, 9, 15, "functions.f.outputs[0]",
        r"output 'ee' names no node of function 'f' \(did you mean 'e'\?\)"),
    "output is an input": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              e: {op: Exp, inputs: [v]}
            outputs: [v]
        nodes:
          y: {op: f, inputs: [x]}
        """, 9, 15, "functions.f.outputs[0]", r"output 'v' is an input of function 'f'"),
    "output is a call with several outputs": (
        """\
        functions:
          two:
            inputs: [v]
            nodes:
              a: {op: Exp, inputs: [v]}
              b: {op: Neg, inputs: [v]}
            outputs: [a, b]
          f:
            inputs: [v]
            nodes:
              t: {op: two, inputs: [v]}
            outputs: [t]
        nodes:
          y: {op: f, inputs: [x]}
        """, 15, 15, "functions.f.outputs[0]",
        r"output 't' is a call of 'two', which has several outputs"),
    "an input listed twice": (
        """\
        functions:
          f:
            inputs: [v, v]
            nodes:
              e: {op: Add, inputs: [v, v]}
            outputs: [e]
        nodes:
          y: {op: f, inputs: [x, x]}
        """, 6, 17, "functions.f.inputs[1]", r"input 'v' of function 'f' is listed twice"),
    "attribute named like a node key": (
        """\
        functions:
          f:
            inputs: [v]
            attrs: {inputs: 1}
            nodes:
              e: {op: Exp, inputs: [v]}
            outputs: [e]
        nodes:
          y: {op: f, inputs: [x]}
        """, 7, 13, "functions.f.attrs.inputs",
        r"attribute 'inputs' of function 'f' has the name of a key every node has"),
    "function named like an op": (
        """\
        functions:
          Exp:
            inputs: [v]
            nodes:
              e: {op: Neg, inputs: [v]}
            outputs: [e]
        nodes:
          y: {op: Exp, inputs: [x]}
        """, 5, 3, "functions.Exp", r"a function's name starts with a lowercase letter or _ "
                                    r"\(built-in ops are CamelCase.*found 'Exp'; rename it 'exp'"),
    "recursion through two functions": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              r: {op: g, inputs: [v]}
            outputs: [r]
          g:
            inputs: [v]
            nodes:
              r: {op: f, inputs: [v]}
            outputs: [r]
        nodes:
          y: {op: f, inputs: [x]}
        """, 8, 7, "functions.f.nodes.r", r"recursion: f -> g -> f; a function cannot call "
                                          r"itself"),
    "a function calling itself": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              r: {op: f, inputs: [v]}
            outputs: [r]
        nodes:
          y: {op: Exp, inputs: [x]}
        """, 8, 7, "functions.f.nodes.r", r"recursion: f -> f"),
    "bare reference to a call with several outputs": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              a: {op: Exp, inputs: [v]}
              b: {op: Neg, inputs: [v]}
            outputs: [a, b]
        nodes:
          y: {op: f, inputs: [x]}
          z: {op: Exp, inputs: [y]}
        """, 13, 25, "nodes.z.inputs[0]",
        r"input 'y' is a call of 'f', which has several outputs; write one of y\.a, y\.b"),
    "unknown output of a call": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              a: {op: Exp, inputs: [v]}
              b: {op: Neg, inputs: [v]}
            outputs: [a, b]
        nodes:
          y: {op: f, inputs: [x]}
          z: {op: Exp, inputs: [y.c]}
        """, 13, 25, "nodes.z.inputs[0]",
        r"reads output 'c', but 'f' has no such output; its outputs: a, b"),
    "output of a node that is not a call": (
        """\
        nodes:
          y: {op: Exp, inputs: [x]}
          z: {op: Exp, inputs: [y.out]}
        """, 6, 25, "nodes.z.inputs[0]", r"'y', which is not a function call"),
    "an uncalled function is checked with its defaults": (
        """\
        functions:
          f:
            inputs: [v]
            attrs: {keep: maybe}
            nodes:
              s: {op: Sum, inputs: [v], keepdims: $keep}
            outputs: [s]
        nodes:
          y: {op: Exp, inputs: [x]}
        """, 9, 33, "functions.f.nodes.s.keepdims",
        r"expected true or false, found 'maybe' \(in function 'f', checked with its default "
        r"attributes since no node calls it\)"),
    "a call named like an input": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              e: {op: Exp, inputs: [v]}
            outputs: [e]
        nodes:
          x: {op: f, inputs: [x]}
        """, 11, 3, "nodes.x", r"name 'x' is defined twice"),
    "a cycle through a call": (
        """\
        functions:
          f:
            inputs: [v]
            nodes:
              e: {op: Exp, inputs: [v]}
            outputs: [e]
        nodes:
          a: {op: f, inputs: [b]}
          b: {op: Add, inputs: [a, x]}
        """, 8, 7, "functions.f.nodes.e",
        r"cycle: a -> b -> a; a graph must be acyclic \(in 'f' called by node 'a'"),
    "an attribute used as an input that the function does not declare": (
        """\
        functions:
          shift:
            inputs: [v]
            attrs: {eps: 0.1}
            nodes:
              s: {op: Add, inputs: [v, $epz]}
            outputs: [s]
        nodes:
          t: {op: shift, inputs: [x]}
        """, 9, 32, "functions.shift.nodes.s.inputs[1]",
        r"\$epz names no attribute of function 'shift' \(did you mean 'eps'\?\)"),
    "an attribute used as an input outside a function": (
        """\
        nodes:
          t: {op: Add, inputs: [x, $eps]}
        """, 5, 28, "nodes.t.inputs[1]",
        r"input '\$eps' refers to a function attribute, but this node is not in a function"),
    "an attribute used as an input is not a number": (
        """\
        functions:
          shift:
            inputs: [v]
            attrs: {eps: 0.1}
            nodes:
              s: {op: Add, inputs: [v, $eps]}
            outputs: [s]
        nodes:
          t: {op: shift, inputs: [x], eps: [1, 2]}
        """, 9, 32, "functions.shift.nodes.s.inputs[1]",
        r"input '\$eps' is \[1, 2\], but an input given by an attribute must be a number "
        r"\(in 'shift' called by node 't'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_function_error_is_located(tmp_path: Path, case: str) -> None:
    body, line, col, path, pattern = CASES[case]
    write(tmp_path, {"main.yaml": HEAD + textwrap.dedent(body)})
    found = problems(tmp_path / "main.yaml")
    problem = only(found, pattern)
    assert (Path(problem.file).name, problem.line, problem.col, problem.path) == \
        ("main.yaml", line, col, path), str(problem)


def test_error_in_an_imported_function_points_into_its_file_and_names_the_call(
        tmp_path: Path) -> None:
    write(tmp_path, {
        "main.yaml": HEAD + textwrap.dedent("""\
        imports: {mylib: lib/mylib.yaml}
        nodes:
          outer: {op: mylib.wrap, inputs: [x], axis: 5}
        """),
        "lib/mylib.yaml": """\
        name: mylib
        functions:
          total:
            inputs: [v]
            attrs: {axis: -1}
            nodes:
              s: {op: Sum, inputs: [v], axis: $axis}
            outputs: [s]
          wrap:
            inputs: [v]
            attrs: {axis: -1}
            nodes:
              inner: {op: total, inputs: [v], axis: $axis}
            outputs: [inner]
        """})
    problem = only(problems(tmp_path / "main.yaml"), r"axis 5 is out of range")
    lib = os.path.normpath(tmp_path / "lib" / "mylib.yaml")
    assert (problem.file, problem.line, problem.col) == (lib, 7, 7)
    assert problem.path == "functions.total.nodes.s"
    assert (f"in 'total' called by node 'outer/inner' at {lib}:13:7, in 'mylib.wrap' called "
            f"by node 'outer' at {tmp_path / 'main.yaml'}:6:3") in problem.message


def test_unknown_imported_function_suggests_the_qualified_name(tmp_path: Path) -> None:
    write(tmp_path, {"main.yaml": HEAD + "imports: {nn: nn.yaml}\nnodes:\n"
                                         "  p: {op: nn.softmx, inputs: [x]}\n"
                                         "  q: {op: mm.softmax, inputs: [x]}\n",
                     "nn.yaml": (ROOT / "graphs" / "lib" / "nn.yaml").read_text()})
    found = problems(tmp_path / "main.yaml")
    assert only(found, r"unknown op 'nn\.softmx' \(did you mean 'nn\.softmax'").line == 6
    assert only(found, r"unknown op 'mm\.softmax' .*'mm' is not an import of this file").line == 7


def test_imports_resolve_across_folders(tmp_path: Path) -> None:
    """spec -> lib/a.yaml -> lib/sub/b.yaml: each path is relative to the importing file."""
    write(tmp_path, {
        "main.yaml": HEAD + textwrap.dedent("""\
        imports: {a: lib/a.yaml, b: lib/sub/b.yaml}
        nodes:
          y: {op: a.twice_negated, inputs: [x]}
          z: {op: b.negate, inputs: [y]}
        outputs: [z]
        """),
        "lib/a.yaml": """\
        name: a
        imports: {b: sub/b.yaml}
        functions:
          twice_negated:
            inputs: [v]
            nodes:
              once: {op: b.negate, inputs: [v]}
              twice: {op: b.negate, inputs: [once]}
            outputs: [twice]
        """,
        "lib/sub/b.yaml": """\
        name: b
        functions:
          negate:
            inputs: [v]
            nodes:
              n: {op: Neg, inputs: [v]}
            outputs: [n]
        """})
    graph = engine.load(tmp_path / "main.yaml")
    assert list(graph.nodes) == ["y/once", "y", "z"]
    import numpy as np
    out = engine.Executor(graph).forward({"x": np.ones((2, 3))})
    np.testing.assert_array_equal(out["z"], -np.ones((2, 3)))


ESCAPES = {
    "parent folder": ("../outside.yaml", r"'\.\./outside\.yaml' goes up a folder \('\.\.'\); "
                                         r"a spec may only name files below its own folder"),
    "absolute path": (None, r"is an absolute path; a spec names files relative to its own "
                            r"folder"),
    "url": ("https://example.com/nn.yaml", r"is a URL; a spec names files on disk, and nothing "
                                          r"is fetched"),
    "missing file": ("lib/none.yaml", r"no such file 'lib/none\.yaml'"),
    "symlink": ("link.yaml", r"resolves to .*outside\.yaml', outside"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_an_import_outside_its_roots_is_refused(tmp_path: Path, case: str) -> None:
    target, pattern = ESCAPES[case]
    write(tmp_path, {"outside.yaml": "name: o\nfunctions: {}\n"})
    spec_dir = tmp_path / "project"
    spec_dir.mkdir()
    (spec_dir / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    target = target or str(tmp_path / "outside.yaml")
    write(spec_dir, {"main.yaml": HEAD + f"imports: {{o: '{target}'}}\nnodes: {{}}\n"})
    problem = only(problems(spec_dir / "main.yaml"), pattern)
    assert (problem.line, problem.col, problem.path) == (4, 11, "imports.o")
    assert problem.message.startswith("import 'o': ")


def test_a_nested_import_may_not_escape_its_own_folder(tmp_path: Path) -> None:
    write(tmp_path, {"main.yaml": HEAD + "imports: {a: lib/a.yaml}\nnodes: {}\n",
                     "lib/a.yaml": "name: a\nimports: {c: ../common.yaml}\nfunctions: {}\n",
                     "common.yaml": "name: c\nfunctions: {}\n"})
    problem = only(problems(tmp_path / "main.yaml"), r"'\.\./common\.yaml' goes up a folder")
    assert (Path(problem.file).name, problem.line, problem.path) == ("a.yaml", 2, "imports.c")


def test_import_path_allows_another_folder(tmp_path: Path) -> None:
    write(tmp_path, {"project/main.yaml": HEAD + "imports: {nn: shared_nn.yaml}\nnodes:\n"
                                                 "  p: {op: nn.softmax, inputs: [x]}\n",
                     "shared/shared_nn.yaml": (ROOT / "graphs" / "lib" / "nn.yaml").read_text()})
    only(problems(tmp_path / "project" / "main.yaml"), r"no such file 'shared_nn\.yaml'")
    graph = engine.load(tmp_path / "project" / "main.yaml", import_paths=[tmp_path / "shared"])
    assert "p/raised" in graph.nodes


def test_import_path_on_the_command_line(tmp_path: Path) -> None:
    head = HEAD.replace("[2, 3]}", "[2, 3], init: zeros}")
    write(tmp_path, {"project/main.yaml": head + "imports: {nn: shared_nn.yaml}\nnodes:\n"
                                                 "  p: {op: nn.softmax, inputs: [x]}\n"
                                                 "outputs: [p]\n",
                     "shared/shared_nn.yaml": (ROOT / "graphs" / "lib" / "nn.yaml").read_text()})
    command = [sys.executable, "-m", "engine", "run", str(tmp_path / "project" / "main.yaml")]
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert refused.returncode == 1 and "no such file 'shared_nn.yaml'" in refused.stderr
    assert "Traceback" not in refused.stderr
    ok = subprocess.run([*command, "--import-path", str(tmp_path / "shared"), "--json"],
                        capture_output=True, text=True, cwd=ROOT, check=False)
    assert ok.returncode == 0, ok.stderr
    assert '"p": [[0.333' in ok.stdout  # x defaults to zeros: every probability is 1/3
    for verb in (["graph", "--format", "mermaid", "-o", "-"], ["explain", "--wrt", "x",
                                                               "--of", "p"]):
        ran = subprocess.run([sys.executable, "-m", "engine", verb[0], command[-1], *verb[1:],
                              "--import-path", str(tmp_path / "shared")],
                             capture_output=True, text=True, cwd=ROOT, check=False)
        assert ran.returncode == 0, ran.stderr
        assert "p/raised" in ran.stdout
    usage = subprocess.run([*command, "--import-path", str(tmp_path / "none")],
                           capture_output=True, text=True, cwd=ROOT, check=False)
    assert usage.returncode == 2 and "is not a folder" in usage.stderr


def test_running_a_library_says_what_it_is() -> None:
    result = subprocess.run([sys.executable, "-m", "engine", "run", "graphs/lib/nn.yaml"],
                            capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "no nodes: a library of functions (staged_softmax, softmax, log_softmax" in \
        result.stdout


def test_import_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    write(tmp_path, {"main.yaml": HEAD + "imports: {a: a.yaml}\nnodes: {}\n",
                     "a.yaml": "name: a\nimports: {b: b.yaml}\nfunctions: {}\n",
                     "b.yaml": "name: b\nimports: {a: a.yaml}\nfunctions: {}\n"})
    problem = only(problems(tmp_path / "main.yaml"), r"import cycle")
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert f"import cycle: {a} -> {b} -> {a}" in problem.message
    assert (problem.file, problem.line, problem.path) == (a, 2, "imports.b")


def test_a_spec_importing_itself_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, {"main.yaml": HEAD + "imports: {me: main.yaml}\nnodes: {}\n"})
    problem = only(problems(tmp_path / "main.yaml"), r"import cycle")
    assert f"{tmp_path / 'main.yaml'} -> {tmp_path / 'main.yaml'}" in problem.message


def test_schema_error_in_an_imported_file_names_the_import(tmp_path: Path) -> None:
    write(tmp_path, {"main.yaml": HEAD + "imports: {a: a.yaml}\nnodes: {}\n",
                     "a.yaml": "name: a\nfunctions:\n  f: {inputs: [v], nodez: {}}\n"})
    problem = only(problems(tmp_path / "main.yaml"), r"unknown key 'nodez'")
    assert (Path(problem.file).name, problem.line, problem.col) == ("a.yaml", 3, 20)
    assert "did you mean 'nodes'" in problem.message
    assert f"(imported as 'a' at {tmp_path / 'main.yaml'}:4:11)" in problem.message


def test_expansion_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls nested in calls multiply; a spec cannot make the loader build without end."""
    monkeypatch.setattr(engine.spec.inline, "MAX_NODES", 10)
    write(tmp_path, {"main.yaml": HEAD + textwrap.dedent("""\
        functions:
          two:
            inputs: [v]
            nodes:
              a: {op: Exp, inputs: [v]}
              b: {op: Exp, inputs: [a]}
            outputs: [b]
          four:
            inputs: [v]
            nodes:
              a: {op: two, inputs: [v]}
              b: {op: two, inputs: [a]}
            outputs: [b]
          eight:
            inputs: [v]
            nodes:
              a: {op: four, inputs: [v]}
              b: {op: four, inputs: [a]}
            outputs: [b]
        nodes:
          y: {op: eight, inputs: [x]}
          z: {op: eight, inputs: [y]}
        """)})
    only(problems(tmp_path / "main.yaml"), r"expand to more than 10 nodes")
