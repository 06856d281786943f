"""``engine check``, warnings on ``run``, ``--strict``, ``--max-bytes`` and error snippets."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import GRAPHS, ROOT

import engine
from engine.cli.diagnostics import render, snippet
from engine.cli.main import main
from engine.errors import Problem
from engine.limits import human_bytes, parse_bytes

WARNED = textwrap.dedent("""\
    name: warned
    inputs:
      x: {shape: [4, 3], init: ones, requires_grad: true}
      spare: {shape: [2], init: zeros}
    nodes:
      e: {op: Exp, inputs: [x]}
      total: {op: Sum, inputs: [e]}
    loss: total
""")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_check_summarizes_mlp(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(GRAPHS / "mlp.yaml")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # 7 nodes; parameters w1 13x10, b1 1x10, w2 10x3, b2 3: 130 + 10 + 30 + 3 = 173 elements.
    assert out.startswith(f"{GRAPHS / 'mlp.yaml'}: ok: mlp, 7 nodes, 4 parameters (173 elements)")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["x"] == ["x", "input", "[batch,", "13]", "float64", "130"]  # batch: 10 default
    assert rows["loss"] == ["loss", "node", "[]", "float64", "1"]
    assert rows["b1"][1:] == ["parameter", "[1,", "10]", "float64", "10"]


def test_check_json_reports_every_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(GRAPHS / "softmax.yaml")]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert err == "" and document["ok"] is True
    (spec,) = document["specs"]
    values = {v["name"]: v for v in spec["values"]}
    assert values["summed"] == {"name": "summed", "kind": "node", "shape": [5, 1],
                                "dtype": "float64", "elements": 5, "bytes": 40}
    assert spec["parameters"] == {"count": 0, "elements": 0}
    # x, y, raised, softmax: 4 x 15; summed, inverted: 2 x 5; minus_one and loss: 2 x 1.
    assert spec["bytes"] == 8 * (4 * 15 + 2 * 5 + 2)


def test_check_many_specs_exits_1_if_any_fails(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", "name: bad\nnodes:\n  e: {op: Exp, inputs: [nope]}\n")
    code = main(["check", str(GRAPHS / "softmax.yaml"), str(bad), str(GRAPHS / "mlp.yaml")])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{bad}: 1 error" in out and "checked 3 specs: 2 ok, 1 with errors" in out
    assert f"error: {bad}:3:25: nodes.e.inputs[0]:" in err
    assert main(["check", "--json", str(bad)]) == 1
    document = json.loads(capsys.readouterr().out)
    error = document["specs"][0]["errors"][0]
    assert (error["line"], error["col"], error["path"]) == (3, 25, "nodes.e.inputs[0]")


def test_warnings_do_not_fail_unless_strict(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "w.yaml", WARNED)
    assert main(["check", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert "1 warning" in out
    assert err == (f"warning: {spec}:4:3: inputs.spare: input 'spare' is used by no node; "
                   "remove it or list it among a node's inputs\n")
    assert main(["check", "--strict", str(spec)]) == 1
    assert f"error: {spec}:4:3: inputs.spare:" in capsys.readouterr().err
    assert [str(w) for w in engine.load(spec).warnings] == [err.removeprefix("warning: ").strip()]
    with pytest.raises(engine.SpecError, match="used by no node"):
        engine.load(spec, strict=True)


def test_run_prints_warnings_and_honours_strict(tmp_path: Path) -> None:
    spec = write(tmp_path, "w.yaml", WARNED)
    ran = subprocess.run([sys.executable, "-m", "engine", "run", str(spec)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "loss (total) = " in ran.stdout
    assert ran.stderr.startswith(f"warning: {spec}:4:3: inputs.spare:")
    strict = subprocess.run([sys.executable, "-m", "engine", "run", "--strict", str(spec)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert strict.returncode == 1 and strict.stdout == ""
    assert f"error: {spec}:4:3: inputs.spare:" in strict.stderr


def test_max_bytes_is_checked_before_allocation(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "big.yaml", "name: big\ndims: {n: 1000}\ninputs:\n"
                 "  x: {shape: [n, 1000], dtype: float32, init: zeros}\n"
                 "nodes:\n  e: {op: Exp, inputs: [x]}\noutputs: [e]\n")
    # x and e: 2 x 10^6 float32 = 8,000,000 bytes.
    assert main(["check", "--max-bytes", "8MB", str(spec)]) == 0
    capsys.readouterr()
    assert main(["check", "--max-bytes", "7.9MB", str(spec)]) == 1
    assert "take 7.6 MiB (8,000,000 bytes)" in capsys.readouterr().err
    with pytest.raises(engine.SpecError, match=r"over the budget of 97\.7 KiB"):
        engine.load(spec, max_bytes=100_000)


def test_unknown_dimensions_are_reported_not_guessed(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "n.yaml", "name: n\ninputs:\n  x: {shape: [n, 3]}\n"
                 "nodes:\n  e: {op: Exp, inputs: [x]}\noutputs: [e]\n")
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "at least 0 bytes (unknown: n)" in out
    assert out.splitlines()[2].split()[-1] == "?"


@pytest.mark.parametrize(("text", "expected"), [
    ("4GiB", 4 * 2**30), ("512MB", 512 * 10**6), ("1e9", 10**9), ("100", 100), ("1.5 KiB", 1536)])
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "many", "-1", "4 XB", "inf", "nan"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_bytes(text)


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 3 * 2**30 // 2, 2**60)] == [
        "0 bytes", "1023 bytes", "1.0 KiB", "1.5 GiB", "1024.0 PiB"]
    # Past float64's range (shapes of 10^200): a power of two, not an OverflowError.
    assert human_bytes(10**400) == "about 2^1328 bytes"


def test_bad_max_bytes_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--max-bytes", "lots", str(GRAPHS / "mlp.yaml")])
    assert info.value.code == 2
    assert "expected a size such as 4GiB" in capsys.readouterr().err


# -- snippets ------------------------------------------------------------------------------

def test_snippet_puts_a_caret_under_the_column() -> None:
    problem = Problem("s.yaml", 2, 25, "nodes.e.inputs[0]", "input 'xx' names nothing")
    lines = ["nodes:", "  e: {op: Exp, inputs: [xx]}"]
    assert snippet(problem, lines) == (" 2 |   e: {op: Exp, inputs: [xx]}\n"
                                       "   |                         ^")
    caret_line = snippet(problem, lines).splitlines()[1]
    assert caret_line.index("^") - len("   | ") == 24 == lines[1].index("xx")


def test_snippet_keeps_tabs_so_the_caret_lines_up() -> None:
    problem = Problem("s.yaml", 1, 4, "", "m")
    assert snippet(problem, ["\tab"]) == " 1 | \tab\n   | \t  ^"


def test_render_without_snippet_or_source_is_one_line() -> None:
    problem = Problem("gone.yaml", 3, 1, "loss", "bad")
    assert render(problem, "error", False) == "error: gone.yaml:3:1: loss: bad"
    assert render(problem, "error", True, read=lambda f: None) == "error: gone.yaml:3:1: loss: bad"
    assert render(problem, "warning", True, read=lambda f: ["a", "b"]) == \
        "warning: gone.yaml:3:1: loss: bad"  # line 3 of a 2-line file: no snippet


def test_snippets_forced_on_and_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", "name: t\nnodes:\n  e: {op: Exp, inputs: [x]}\n")
    assert main(["--snippets", "always", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert " 3 |   e: {op: Exp, inputs: [x]}\n   |                         ^\n" in err
    assert main(["--snippets", "never", "check", str(bad)]) == 1
    assert " | " not in capsys.readouterr().err
    assert main(["run", str(bad), "--snippets", "always"]) == 1  # after the verb too
    assert "   |                         ^\n" in capsys.readouterr().err


def test_snippets_appear_on_a_terminal_only(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "name: t\nnodes:\n  e: {op: Exp, inputs: [x]}\n")
    command = [sys.executable, "-m", "engine", "run", str(bad)]
    piped = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 1 and " | " not in piped.stderr
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=follower, close_fds=True)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closes when the process exits
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 1
    finally:
        os.close(leader)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "error: " + str(bad) + ":3:25:" in text
    assert " 3 |   e: {op: Exp, inputs: [x]}\n   |                         ^" in text


def test_dtypes_follow_numpy_promotion(tmp_path: Path) -> None:
    import numpy as np

    graph = engine.loads(textwrap.dedent("""\
        name: promote
        inputs:
          h: {shape: [3], dtype: float16, init: ones}
          s: {shape: [3], dtype: float32, init: ones}
          d: {shape: [3], dtype: float64, init: ones}
        constants:
          two: 2.0
        nodes:
          hs: {op: Add, inputs: [h, s]}
          sd: {op: Mul, inputs: [s, d]}
          s2: {op: Mul, inputs: [s, two]}
          h2: {op: Pow, inputs: [h, 2]}
        outputs: [hs, sd, s2, h2]
    """))
    dtypes = {name: graph.values[name].dtype for name in ("hs", "sd", "s2", "h2")}
    assert dtypes == {
        "hs": str(np.result_type(np.float16, np.float32)),
        "sd": str(np.result_type(np.float32, np.float64)),
        "s2": str((np.ones(3, np.float32) * 2.0).dtype),  # a Python scalar is weak in NumPy
        "h2": str((np.ones(3, np.float16) ** 2.0).dtype),
    }


def test_fed_shape_conflict_names_the_node_that_bound_the_dimension(tmp_path: Path) -> None:
    import numpy as np

    spec = write(tmp_path, "bound.yaml", textwrap.dedent("""\
        name: bound
        inputs:
          x: {shape: [batch, 3]}
          a: {shape: [7, 3], init: ones}
        nodes:
          s: {op: Add, inputs: [x, a]}
        outputs: [s]
    """))
    executor = engine.Executor(engine.load(spec))
    with pytest.raises(engine.DataError) as info:
        executor.forward({"x": np.zeros((5, 3))})
    assert str(info.value) == (
        f"input 'x' ({spec}:3:3): expected shape [batch, 3] (batch = 7 was bound at {spec}:6:3 "
        "by node 's' (Add)), fed [5, 3]: axis 0 differs; feed data of the declared shape, or "
        "change the shape in the spec")


def test_allowed_nonfinite_values_reach_the_executor() -> None:
    import numpy as np

    graph = engine.loads(textwrap.dedent("""\
        name: nonfinite
        inputs:
          x: {shape: [2], init: {value: [1.0, .inf], allow_nonfinite: true}}
        constants:
          c: {value: [.nan, 2.0], allow_nonfinite: true}
        nodes:
          s: {op: Add, inputs: [x, c]}
        outputs: [s]
    """))
    out = engine.Executor(graph).forward()
    np.testing.assert_array_equal(out["s"], [np.nan, np.inf])


@pytest.mark.parametrize(("verb", "options"), [
    ("check", ["--json", "--strict", "--max-bytes"]), ("schema", ["--output"]),
    ("run", ["--strict"])])
def test_help_describes_the_options(verb: str, options: list[str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([verb, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert all(option in out for option in options), out
    assert "example" in out
