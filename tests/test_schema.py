"""The JSON Schema for editors: generated from the models, committed, and true to the loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import GRAPHS, ROOT

from engine.ops import REGISTRY
from engine.spec.models import OpSpec, schema_text
from schemas.spec import SCHEMA_FILE, json_schema

SCHEMA_PATH = ROOT / SCHEMA_FILE
EXAMPLES = sorted(GRAPHS.rglob("*.yaml"))


def test_committed_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "schemas/graph.schema.json is stale; regenerate it with "
        "python -m engine schema -o schemas/graph.schema.json")


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    printed = subprocess.run([sys.executable, "-m", "engine", "schema"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0 and printed.stdout == SCHEMA_PATH.read_text()
    target = tmp_path / "out.schema.json"
    written = subprocess.run([sys.executable, "-m", "engine", "schema", "-o", str(target)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0 and written.stdout == ""
    assert target.read_text() == SCHEMA_PATH.read_text()


def test_schema_is_valid_json_schema_with_every_op_and_its_attribute_descriptions() -> None:
    schema = json_schema(OpSpec)
    jsonschema.Draft202012Validator.check_schema(schema)
    definitions = schema["$defs"]
    for name, op in REGISTRY.items():
        node = definitions[f"{name}Node"]
        assert node["properties"]["op"]["const"] == name
        assert node["description"] == op.doc
        for attribute, field in op.attrs.model_fields.items():
            assert node["properties"][attribute]["description"] == field.description
    assert "axis" in definitions["SumNode"]["properties"]


@pytest.mark.parametrize("spec", EXAMPLES, ids=[str(p.relative_to(GRAPHS)) for p in EXAMPLES])
def test_every_example_names_the_schema_and_validates_against_it(spec: Path) -> None:
    text = spec.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (spec.parent / first.split("=", 1)[1]).resolve() == SCHEMA_PATH
    jsonschema.validate(yaml.safe_load(text), json_schema(OpSpec))


@pytest.mark.parametrize(("text", "found"), [
    # Built-in ops are CamelCase and functions lower_case: a misspelt op is no call.
    ("name: t\nnodes: {e: {op: Ex p, inputs: [x]}}\n", "Ex p"),
    ("name: t\nnodes: {p: {op: Sofmax, inputs: [x]}}\n", "Sofmax"),
    ("name: t\nnodes: {p: {op: nn.Softmax, inputs: [x]}}\n", "nn.Softmax"),
    ("name: t\nfunctions: {f: {inputs: [x], nodes: {y: {op: Tanhh, inputs: [x]}}, "
     "outputs: [y]}}\n", "Tanhh"),
    ("name: t\nfunctions: {MyLayer: {inputs: [x], nodes: {y: {op: Tanh, inputs: [x]}}, "
     "outputs: [y]}}\n", "MyLayer"),
    ("name: t\nnodes: {s: {op: Sum, inputs: [x], axes: 1}}\n", "axes"),
    ("name: t\ninputs: {x: {shape: [3], dtype: float8}}\nnodes: {}\n", "float8"),
    ("name: t\nnodez: {}\n", "nodez"),
])
def test_schema_rejects_what_the_loader_rejects(text: str, found: str) -> None:
    validator = jsonschema.Draft202012Validator(json_schema(OpSpec))
    errors = list(validator.iter_errors(yaml.safe_load(text)))
    assert errors and any(found in str(e) for e in errors), [e.message for e in errors]


def test_schema_accepts_every_kind_of_op() -> None:
    """Built-in ops, local functions, imported functions and, in a body, both."""
    spec = yaml.safe_load("name: t\nimports: {nn: lib/nn.yaml}\nfunctions:\n  my_layer:\n"
                          "    inputs: [x]\n    nodes: {y: {op: Tanh, inputs: [x]}, "
                          "z: {op: nn.softmax, inputs: [y]}}\n    outputs: [z]\n"
                          "nodes: {a: {op: Exp, inputs: [x]}, b: {op: my_layer, inputs: [a]}, "
                          "c: {op: nn.cross_entropy, inputs: [b, y]}, "
                          "d: {op: _private, inputs: [c]}}\n")
    jsonschema.validate(spec, json_schema(OpSpec))


def test_schema_accepts_the_short_forms_the_loader_accepts() -> None:
    spec = yaml.safe_load("name: t\ninputs:\n  y: {shape: [2, 3], init: one_hot}\n"
                          "constants: {minus_one: -1.0, table: [[1, 2]], "
                          "nan: {value: .nan, allow_nonfinite: true}}\nnodes: {}\n")
    jsonschema.validate(spec, json_schema(OpSpec))
