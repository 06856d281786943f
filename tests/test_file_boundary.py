"""One rule for every file a spec names (imports, init files, training data): relative, no
'..', and below the spec's folder or an --import-path folder after symbolic links."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.cli.main import main

SPEC = """\
name: t
dims: {{batch: 2}}
{imports}inputs:
  x: {{shape: [2], init: {init}}}
  y: {{shape: [batch, 2], init: one_hot}}
parameters:
  w: {{shape: [2, 2], init: zeros}}
nodes:
  e: {{op: Exp, inputs: [x]}}
  z: {{op: MatMul, inputs: [y, w]}}
  p: {{op: Softmax, inputs: [z]}}
  l: {{op: NLL, inputs: [p, y]}}
outputs: [e]
loss: l
train:
  data: {data}
  inputs: {{y: {{label: c}}}}
"""


def spec_naming(kind: str, path: str) -> str:
    """A spec that names ``path`` as an import, an init file or training data."""
    fields = {"imports": "", "init": "zeros", "data": "data.csv"}
    if kind == "import":
        fields["imports"] = f"imports: {{lib: '{path}'}}\n"
    elif kind == "init":
        fields["init"] = f"{{file: '{path}'}}"
    else:
        fields["data"] = f"'{path}'"
    return SPEC.format(**fields)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """project/ (the spec's folder) beside secret files, and a link that leads out."""
    project = tmp_path / "project"
    project.mkdir()
    for folder in (tmp_path, project):
        np.save(folder / "secret.npy", np.array([7.0, 8.0]))
        (folder / "secret.csv").write_text("c\n0\n1\n")
        (folder / "secret.yaml").write_text("name: s\nfunctions: {}\n")
    (project / "data.csv").write_text("c\n0\n1\n0\n1\n")
    for suffix in ("npy", "csv", "yaml"):
        (project / f"link.{suffix}").symlink_to(tmp_path / f"secret.{suffix}")
    return project


SUFFIX = {"import": "yaml", "init": "npy", "data": "csv"}
ESCAPES = {
    "parent": ("../secret.{suffix}", r"goes up a folder \('\.\.'\)"),
    "absolute": ("{root}/secret.{suffix}", r"is an absolute path"),
    "symlink": ("link.{suffix}", r"resolves to .*secret\.\w+', outside the spec's folder"),
    "nested parent": ("sub/../../secret.{suffix}", r"goes up a folder"),
}


@pytest.mark.parametrize("kind", ["import", "init", "data"])
@pytest.mark.parametrize("case", list(ESCAPES))
def test_every_path_a_spec_names_follows_one_rule(tree: Path, kind: str, case: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    template, pattern = ESCAPES[case]
    path = template.format(suffix=SUFFIX[kind], root=tree.parent)
    spec = tree / "main.yaml"
    spec.write_text(spec_naming(kind, path))
    verb = "train" if kind == "data" else "run"
    assert main([verb, str(spec)]) == 1
    out, err = capsys.readouterr()
    field = {"import": "imports.lib", "init": "inputs.x.init.file", "data": "train.data"}[kind]
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "main.yaml:" in line and f" {field}: " in line, err
    assert re.search(pattern, line), err
    assert "7." not in out + err and "8." not in out + err  # the secret's numbers: never shown


@pytest.mark.parametrize("kind", ["import", "init", "data"])
def test_a_file_below_the_spec_or_an_import_path_is_read(tree: Path, kind: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    lib = tree.parent / "lib"
    lib.mkdir()
    np.save(lib / "ok.npy", np.array([1.0, 2.0]))
    (lib / "ok.csv").write_text("c\n0\n1\n0\n1\n")
    (lib / "ok.yaml").write_text("name: s\nfunctions: {}\n")
    spec = tree / "main.yaml"
    spec.write_text(spec_naming(kind, f"ok.{SUFFIX[kind]}"))
    verb = ["train", "--epochs", "1"] if kind == "data" else ["run"]
    assert main([*verb, str(spec)]) == 1  # not below the spec's folder
    capsys.readouterr()
    assert main([*verb, str(spec), "--import-path", str(lib)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("paths", ["lib/", b"lib", Path("lib"), 3, ["lib", 3]])
def test_a_string_where_a_list_of_folders_is_expected_is_refused(paths: object) -> None:
    with pytest.raises(engine.EngineError, match="import_paths must be a list of folders"):
        engine.loads("name: t\nnodes: {}\n", import_paths=paths)  # type: ignore[arg-type]
    with pytest.raises(engine.EngineError, match="import_paths must be a list of folders"):
        engine.load("graphs/softmax.yaml", import_paths=paths)  # type: ignore[arg-type]
