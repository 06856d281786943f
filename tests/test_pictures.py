"""`engine graph`: what the forward and backward pictures contain, in SVG, DOT and Mermaid.

Expected edges come from the spec text itself (each node's ``inputs`` list, read
with plain PyYAML) or, for the lesson's softmax, are written out by hand from
the lesson's backward code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import GRAPHS, ROOT, SQUARE_SPEC

import engine
from engine.draw.picture import backward_picture, forward_picture
from engine.draw.render import render, to_dot, to_mermaid

SPECS = sorted(GRAPHS.glob("*.yaml"))
SOFTMAX = GRAPHS / "softmax.yaml"
EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[(.*)\];$')


def engine_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def dot_edges(dot: str) -> list[tuple[str, str, str]]:
    """(tail, head, attributes) of every edge line of DOT text."""
    return [m.groups() for line in dot.splitlines() if (m := EDGE.match(line))]


def spec_edges(spec: Path) -> Counter[tuple[str, str]]:
    """Every (input, node) use in the spec, read with PyYAML alone; inline numbers are named
    as the engine names them, ``node.inputs[i]``."""
    data = yaml.safe_load(spec.read_text())
    edges: Counter[tuple[str, str]] = Counter()
    for node, body in data["nodes"].items():
        for index, ref in enumerate(body["inputs"]):
            edges[(ref if isinstance(ref, str) else f"{node}.inputs[{index}]", node)] += 1
    return edges


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_svg_parses_as_xml_and_names_every_value(spec: Path) -> None:
    graph = engine.load(spec)
    data = yaml.safe_load(spec.read_text())
    names = set(data["nodes"]) | set(data.get("inputs", {})) | set(data.get("parameters", {}))
    for picture in (forward_picture(graph), backward_picture(graph)):
        root = ET.fromstring(render(picture, "svg"))
        assert root.tag.endswith("svg")
        texts = {t.text.strip() for t in root.iter() if t.tag.endswith("text") and t.text}
        assert names <= texts, names - texts


PLAIN_SPECS = [s for s in SPECS if "functions" not in yaml.safe_load(s.read_text())
               and "imports" not in yaml.safe_load(s.read_text())]


@pytest.mark.parametrize("spec", PLAIN_SPECS, ids=[s.name for s in PLAIN_SPECS])
def test_forward_dot_has_exactly_the_spec_edges(spec: Path) -> None:
    edges = dot_edges(to_dot(forward_picture(engine.load(spec))))
    assert Counter((tail, head) for tail, head, _ in edges) == spec_edges(spec)
    for tail, _, attrs in edges:  # labelled with the value carried
        label = re.search(r'label="([^"]*)"', attrs)
        assert label is not None
        assert label.group(1) == tail or re.fullmatch(r"-?[\d.e+-]+", label.group(1))


def test_forward_dot_of_calls_has_the_edges_of_the_inlined_bodies() -> None:
    """graphs/mlp_functions.yaml, expanded by hand from the bodies in graphs/lib/nn.yaml."""
    expected = {
        "h1/linear/product": ["x", "w1"], "h1/linear": ["h1/linear/product", "b1"],
        "h1": ["h1/linear"], "logits/product": ["h1", "w2"],
        "logits": ["logits/product", "b2"], "probs/row_max": ["logits"],
        "probs/shifted": ["logits", "probs/row_max"], "probs/raised": ["probs/shifted"],
        "probs/summed": ["probs/raised"], "probs": ["probs/raised", "probs/summed"],
        "loss": ["probs", "y"],
    }
    edges = dot_edges(to_dot(forward_picture(engine.load(GRAPHS / "mlp_functions.yaml"))))
    assert Counter((tail, head) for tail, head, _ in edges) == Counter(
        (tail, head) for head, tails in expected.items() for tail in tails)


def test_softmax_backward_dot_is_the_lessons_backward_pass() -> None:
    # From the lesson: the loss gradient enters softmax (Mul), which sends gradients to
    # raised and to pow (inverted); inverted to summed; summed back to raised, where the two
    # gradients are summed; raised to x. y and the constant -1 get none.
    edges = dot_edges(to_dot(backward_picture(engine.load(SOFTMAX))))
    red = {(t, h): re.search(r'label="([^"]*)"', a).group(1)
           for t, h, a in edges if "#c62828" in a}
    assert red == {
        ("dloss", "loss"): "d(loss)",
        ("loss", "softmax"): "d(softmax)",
        ("softmax", "inverted"): "d(inverted)",
        ("softmax", "+raised"): "d(raised)",
        ("inverted", "summed"): "d(summed)",
        ("summed", "+raised"): "d(raised)",
        ("+raised", "raised"): "d(raised)",
        ("raised", "x"): "d(x)",
    }
    dotted = {(t, h) for t, h, a in edges if "dotted" in a}
    assert dotted == {("loss", "y"), ("inverted", "minus_one")}
    assert len(edges) == len(red) + len(dotted)


def test_backward_reverses_every_forward_edge_and_sums_repeated_uses(build) -> None:
    graph = build(SQUARE_SPEC)
    edges = Counter((t, h) for t, h, _ in dot_edges(to_dot(backward_picture(graph))))
    # x is used twice by sq: both gradients meet in a sum, as the executor adds them.
    assert edges == Counter({("dloss", "loss"): 1, ("loss", "sq"): 1, ("sq", "+x"): 2,
                             ("+x", "x"): 1})


def test_backward_greys_out_what_needs_no_gradient_and_marks_kept_values() -> None:
    graph = engine.load(GRAPHS / "mlp.yaml")
    boxes = {box.id: box for box in backward_picture(graph).boxes}
    assert {name for name, box in boxes.items() if box.muted} == {"x", "y"}
    # MatMul's vjp reads x to make d(w1), so x needs no gradient yet is kept for backward.
    assert boxes["x"].kept and boxes["w1"].kept
    dot = to_dot(backward_picture(graph))
    x_line = next(line for line in dot.splitlines() if line.startswith('  "x" ['))
    assert "dashed" in x_line and "peripheries=2" in x_line


def test_mermaid_structure() -> None:
    graph = engine.load(SOFTMAX)
    for picture in (forward_picture(graph), backward_picture(graph)):
        text = to_mermaid(picture)
        lines = text.splitlines()
        assert lines[0] == lines[2] == "---"
        assert yaml.safe_load(lines[1]) == {"title": picture.title}  # front matter is YAML
        assert lines[3] == f"flowchart {'RL' if picture.backward else 'LR'}"
        boxes = [line for line in lines if re.match(r"^  n\d+[\[(]", line)]
        arrows = [line for line in lines if re.match(r"^  n\d+ (-->|-\.-)", line)]
        assert len(boxes) == len(picture.boxes)
        assert len(arrows) == len(picture.arrows)
        declared = {re.match(r"^  (n\d+)", line).group(1) for line in boxes}
        for arrow in arrows:
            tail, head = re.findall(r"\bn\d+\b", arrow)
            assert {tail, head} <= declared
        for box in picture.boxes:
            assert f"<b>{box.title}</b>" in text
        red = [int(n) for n in re.findall(r"linkStyle (\d+) stroke:#c62828", text)]
        assert all(re.search(r'\|"d\(', arrows[i]) for i in red)
        assert len(red) == (8 if picture.backward else 0)


def test_cli_writes_beside_the_spec_and_prints_the_path(tmp_path: Path) -> None:
    spec = tmp_path / "softmax.yaml"
    shutil.copy(SOFTMAX, spec)
    result = engine_cli("graph", str(spec), "--backward", "--format", "png")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "softmax.backward.png"
    assert result.stdout.strip() == f"wrote {written}"
    assert written.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_cli_format_from_suffix_and_stdout(tmp_path: Path) -> None:
    result = engine_cli("graph", str(SOFTMAX), "-o", str(tmp_path / "f.dot"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f.dot").read_text().startswith("digraph G {")
    result = engine_cli("graph", str(SOFTMAX), "--format", "mermaid", "-o", "-")
    assert result.returncode == 0 and "flowchart LR" in result.stdout


def test_cli_without_dot_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH where no dot program lives
    result = engine_cli("graph", str(SOFTMAX), "-o", str(tmp_path / "f.svg"), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "apt-get install graphviz" in result.stderr
    assert "--format dot" in result.stderr and "--format mermaid" in result.stderr
    assert not (tmp_path / "f.svg").exists()
    text = engine_cli("graph", str(SOFTMAX), "--format", "dot", "-o", "-", env=env)
    assert text.returncode == 0 and text.stdout.startswith("digraph G {")


def test_backward_picture_of_a_spec_without_loss_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "noloss.yaml"
    spec.write_text("name: n\ninputs: {x: {shape: [2], init: ones}}\n"
                    "nodes: {e: {op: Exp, inputs: [x]}}\noutputs: [e]\n")
    result = engine_cli("graph", str(spec), "--backward", "--format", "dot", "-o", "-")
    assert result.returncode == 1
    assert "declares no loss" in result.stderr and "Traceback" not in result.stderr


def test_a_fresh_machine_gets_graphviz() -> None:
    # The tests above render with dot: CI and the README's commands must install it.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\s*"graphviz[>=<]', pyproject, flags=re.M)
    script = (ROOT / "scripts" / "install-graphviz.sh").read_text()
    assert "apt-get install -y -qq graphviz" in script
    assert "sh scripts/install-graphviz.sh" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert all("sh scripts/install-graphviz.sh" in block for block in blocks[:2])


def test_each_call_is_a_cluster_nested_in_its_caller() -> None:
    """Which box sits in which call, read from the DOT text; expected from the spec by hand."""
    graph = engine.load(GRAPHS / "mlp_functions.yaml")
    for picture in (forward_picture(graph), backward_picture(graph)):
        dot = to_dot(picture)
        inside: dict[str, str] = {}
        stack: list[str] = []
        for line in dot.splitlines():
            if opened := re.match(r'\s*subgraph "cluster_([^"]+)" \{$', line):
                stack.append(opened.group(1))
            elif line.strip() == "}" and stack:
                stack.pop()
            elif box := re.match(r'\s*"([^"]+)" \[label=', line):
                inside[box.group(1)] = "/".join(stack[-1:])
        assert inside["h1"] == "h1" and inside["h1/linear/product"] == "h1/linear"
        assert inside["probs/raised"] == "probs" and inside["probs"] == "probs"
        assert inside["x"] == inside["w1"] == inside["loss"] == ""
        assert re.search(r'subgraph "cluster_h1" \{\n.*label="h1: layer"', dot)
        assert re.search(r'subgraph "cluster_h1/linear" \{\n.*label="linear: nn\.dense"', dot)
    mermaid = to_mermaid(forward_picture(graph))
    assert mermaid.count("subgraph ") == 4 == len(re.findall(r"^\s*end$", mermaid, re.M))
    assert 'subgraph g0 ["h1: layer"]' in mermaid
