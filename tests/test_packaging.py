"""A non-editable install works away from the checkout: the wheel holds the standard
function library and the JSON Schema, and a spec in any folder imports ``nn.yaml``.

Builds the wheel offline (no build isolation, so setuptools comes from this environment),
installs it without dependencies into a fresh venv, and lets that venv find NumPy & co.
in this environment's site-packages (as a plain path: this checkout's editable install
is not activated there).  Slow (seconds), but needs no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

SPEC = """name: anywhere
imports:
  nn: nn.yaml                 # the standard library, from no particular folder
inputs:
  x: {shape: [2, 3], init: {value: [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]}}
nodes:
  p: {op: nn.softmax, inputs: [x]}
outputs: [p]
"""


def test_the_packaged_library_is_a_plain_copy_of_graphs_lib() -> None:
    """A symlink in git is a text file holding the link's target where symlinks are off
    (Windows' default), and that text would be installed as the library: the package keeps
    a plain copy, and this keeps the two the same."""
    packaged = ROOT / "engine" / "stdlib" / "nn.yaml"
    documented = ROOT / "graphs" / "lib" / "nn.yaml"
    assert not packaged.is_symlink() and not documented.is_symlink()
    assert packaged.read_bytes() == documented.read_bytes(), \
        "graphs/lib/nn.yaml changed: copy it to engine/stdlib/nn.yaml"


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", out, ROOT, cwd=out)
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_library_and_the_schema(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "engine/stdlib/nn.yaml" in names and "schemas/graph.schema.json" in names
    library = zipfile.ZipFile(wheel).read("engine/stdlib/nn.yaml")
    assert library == (ROOT / "graphs" / "lib" / "nn.yaml").read_bytes()


def test_an_installed_wheel_imports_the_library_from_any_folder(wheel: Path,
                                                                tmp_path: Path) -> None:
    venv = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
        cwd=tmp_path)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
               cwd=tmp_path).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "model.yaml").write_text(SPEC)
    where = run(python, "-c", "import engine.cli, schemas; print(engine.cli.__file__); "
                "print(schemas.__file__)", cwd=work).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where  # the wheel, not ROOT
    result = run(venv / "bin" / "engine", "run", "model.yaml", "--json", cwd=work)
    probabilities = json.loads(result.stdout)["outputs"]["p"]
    assert probabilities[1] == pytest.approx([1 / 3] * 3)
    schema = run(python, "-c", "import importlib.resources as r; print(r.files('schemas')"
                 ".joinpath('graph.schema.json').read_text()[:40])", cwd=work).stdout
    assert '"$schema"' in schema
