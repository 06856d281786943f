"""`engine explain`: derivative chains as sums over paths, their count, text and LaTeX."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
from conftest import GRAPHS, ROOT, SQUARE_SPEC

import engine
from engine.graph.explain import as_latex, as_text, count_paths, derivative_chains

SOFTMAX = GRAPHS / "softmax.yaml"


def engine_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def routes(chains) -> set[tuple[str, ...]]:
    return {(chains.wrt, *(f.node for f in reversed(path))) for path in chains.paths}


def test_softmax_wrt_x_gives_the_lessons_two_paths() -> None:
    chains = derivative_chains(engine.load(SOFTMAX), "x")
    assert chains.count == 2
    # The lesson: raised feeds Sum (then Pow, then Mul) and Mul directly; the two
    # gradients on raised are summed.
    assert routes(chains) == {("x", "raised", "summed", "inverted", "softmax", "loss"),
                              ("x", "raised", "softmax", "loss")}
    text = as_text(chains)
    assert "∂loss/∂x = sum over 2 paths" in text
    assert ("∂loss/∂softmax · ∂softmax/∂inverted · ∂inverted/∂summed · ∂summed/∂raised · "
            "∂raised/∂x") in text
    assert "∂loss/∂softmax · ∂softmax/∂raised · ∂raised/∂x" in text


def _balanced(text: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_structure_and_compiles_when_latex_is_present(tmp_path: Path) -> None:
    latex = as_latex(derivative_chains(engine.load(SOFTMAX), "x"))
    assert latex.startswith("\\begin{aligned}\n") and latex.endswith("\\end{aligned}\n")
    rows = latex.split("\n")[1:-2]
    assert len(rows) == 2 and rows[0].endswith(" \\\\") and rows[1].startswith("{}+{}&")
    assert rows[0].startswith(r"\frac{\partial \mathrm{loss}}{\partial \mathrm{x}} ={}&")
    assert [row.count(r"\frac") for row in rows] == [1 + 5, 3]  # the left side, then factors
    assert _balanced(latex)
    program = shutil.which("pdflatex") or shutil.which("latex")
    if program:  # compile with a minimal template when a TeX program is installed
        document = tmp_path / "chains.tex"
        document.write_text("\\documentclass{article}\\usepackage{amsmath}\\begin{document}\n"
                            f"\\[\n{latex}\\]\n\\end{{document}}\n")
        result = subprocess.run([program, "-interaction=nonstopmode", "-halt-on-error",
                                 document.name], cwd=tmp_path, capture_output=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:]


def test_latex_escapes_names() -> None:
    graph = engine.loads("""
name: esc
inputs: {a_b: {shape: [2], requires_grad: true, init: ones}}
nodes:
  c_d: {op: Exp, inputs: [a_b]}
  loss: {op: Sum, inputs: [c_d]}
loss: loss
""", file="esc.yaml")
    latex = as_latex(derivative_chains(graph, "a_b"))
    assert r"\mathrm{a\_b}" in latex and r"\mathrm{c\_d}" in latex and "a_b" not in latex
    assert _balanced(latex)


def test_a_value_used_twice_gives_two_named_paths(build) -> None:
    graph = build(SQUARE_SPEC)
    text = as_text(derivative_chains(graph, "x"))
    assert "sum over 2 paths" in text
    assert "(∂sq/∂x as a)" in text and "(∂sq/∂x as b)" in text


def diamonds(layers: int) -> str:
    """Each layer feeds Exp and Neg, then multiplies them: the paths double per layer."""
    lines = ["name: diamonds", "inputs: {h0: {shape: [2], requires_grad: true, init: ones}}",
             "nodes:"]
    for i in range(layers):
        lines += [f"  a{i}: {{op: Exp, inputs: [h{i}]}}", f"  b{i}: {{op: Neg, inputs: [h{i}]}}",
                  f"  h{i + 1}: {{op: Mul, inputs: [a{i}, b{i}]}}"]
    lines += [f"  loss: {{op: Sum, inputs: [h{layers}]}}", "loss: loss"]
    return "\n".join(lines) + "\n"


def test_two_to_the_forty_paths_are_counted_not_enumerated() -> None:
    graph = engine.loads(diamonds(40), file="diamonds.yaml")
    chains = derivative_chains(graph, "h0")  # listing 2^40 paths would never end
    text = as_text(chains)
    assert chains.count == 2 ** 40 == 1099511627776
    assert chains.paths is None
    assert "1099511627776 paths (2^40)" in text and "--max-paths" in text


def test_count_matches_networkx_enumeration_on_small_graphs() -> None:
    for layers in (1, 3, 5):
        graph = engine.loads(diamonds(layers), file="d.yaml")
        chains = derivative_chains(graph, "h0", limit=1000)
        listed = {tuple(f.node for f in path) for path in chains.paths}
        expected = list(nx.all_simple_paths(graph.dag, "h0", "loss"))
        assert chains.count == len(listed) == len(expected) == 2 ** layers
    counts = count_paths(engine.load(SOFTMAX), "loss")
    assert counts["x"] == 2 and counts["raised"] == 2 and counts["summed"] == 1


def test_no_path_says_why(build) -> None:
    chains = derivative_chains(engine.load(SOFTMAX), "y")
    assert chains.count == 0
    assert as_text(chains).startswith("∂loss/∂y = 0")
    assert "takes no derivative in its input 'target'" in as_text(chains)


def test_of_a_chosen_node() -> None:
    chains = derivative_chains(engine.load(SOFTMAX), "raised", of="inverted")
    assert [[(f.node, f.ref) for f in p] for p in chains.paths] == [
        [("inverted", "summed"), ("summed", "raised")]]


def test_cli_text_latex_and_errors() -> None:
    result = engine_cli("explain", str(SOFTMAX), "--wrt", "x")
    assert result.returncode == 0 and "path 2" in result.stdout
    result = engine_cli("explain", str(SOFTMAX), "--wrt", "x", "--latex")
    assert result.returncode == 0 and result.stdout.startswith("\\begin{aligned}")
    for args, message, code in ((["--wrt", "xx"], "did you mean 'x'", 1),
                                (["--wrt", "x", "--of", "y"], "is not a node", 1),
                                (["--wrt", "x", "--max-paths", "0"], "from 1 to 1,000,000", 2)):
        result = engine_cli("explain", str(SOFTMAX), *args)
        assert result.returncode == code, args
        assert message in result.stderr and "Traceback" not in result.stderr


def test_listing_stays_within_the_limit() -> None:
    graph = engine.loads(diamonds(4), file="d.yaml")
    assert derivative_chains(graph, "h0", limit=15).paths is None
    listed = derivative_chains(graph, "h0", limit=16).paths
    assert listed is not None and len(set(listed)) == 16
    assert all(path[-1].ref == "h0" and path[0].node == "loss" for path in listed)


def test_a_node_with_respect_to_itself_is_one() -> None:
    chains = derivative_chains(engine.load(SOFTMAX), "loss")
    assert chains.count == 1
    assert "= 1\n" in as_text(chains) and as_latex(chains).count("={}& 1\n") == 1
