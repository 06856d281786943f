"""The corpus of bad specs: each file in tests/bad_specs/ says, in its first lines, what
``engine check`` must report about it.

    # what the file shows
    # expect: LINE:COL: REGEX        (one or more; REGEX is searched in the message)
    # expect: REGEX                  (an error that no line of the spec causes: bad data)
    # warns: REGEX                   (a warning the run must print, besides succeeding)
    # args: --strict                 (extra arguments of the verb; may be empty; {here} is
    #                                 this folder, for --feed data/FILE)
    # verb: run                      (default check; run, train, graph, explain)
    # exit: 0                        (default 1)

Each case runs the verb in-process (fast) and asserts the exit code, an
``error: FILE:LINE:COL: ...`` (or ``error: ...``) line whose text matches, and no
traceback.  A few run as real subprocesses too, so that "no traceback" holds for
the installed command and not only for ``main``.  The expected positions were
written by hand from the files; regexes were written from what each message must
say.  Data files the specs read (``data/``) are bad inputs too: each is read by
at least one spec.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT

from engine.cli.main import main

CORPUS = ROOT / "tests" / "bad_specs"
FILES = sorted(CORPUS.glob("*.yaml"))
DATA = sorted(p for p in (CORPUS / "data").glob("*") if p.is_file())


@dataclass(frozen=True)
class Expectation:
    line: int | None  # None: an error without a place in the spec (bad data)
    col: int | None
    pattern: str


@dataclass
class Header:
    """What a corpus file declares in its leading comments."""

    expects: list[Expectation] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    verb: str = "check"
    exit: int = 1


def header(path: Path) -> Header:
    """The expectations, verb and arguments a corpus file declares in its leading comments."""
    found = Header()
    for text in path.read_text().splitlines():
        if not text.startswith("#"):
            break
        if match := re.fullmatch(r"# expect: (\d+):(\d+): (.+)", text):
            found.expects.append(Expectation(int(match[1]), int(match[2]), match[3]))
        elif match := re.fullmatch(r"# expect: (.+)", text):
            found.expects.append(Expectation(None, None, match[1]))
        elif match := re.fullmatch(r"# warns: (.+)", text):
            found.warns.append(match[1])
        elif text.startswith("# args:"):
            found.args = [arg.replace("{here}", str(CORPUS))
                          for arg in shlex.split(text.removeprefix("# args:"))]
        elif match := re.fullmatch(r"# verb: (\w+)", text):
            found.verb = match[1]
        elif match := re.fullmatch(r"# exit: (\d+)", text):
            found.exit = int(match[1])
    return found


def assert_reported(path: Path, stderr: str, expects: list[Expectation]) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    for want in expects:
        if want.line is None:
            assert any(re.search(want.pattern, line) for line in errors), \
                f"no error matches {want.pattern!r}; stderr was:\n{stderr}"
            continue
        prefix = f"error: {path}:{want.line}:{want.col}: "
        at = [line for line in errors if line.startswith(prefix)]
        assert at, f"no error at {want.line}:{want.col}; stderr was:\n{stderr}"
        assert any(re.search(want.pattern, line) for line in at), \
            f"no error at {want.line}:{want.col} matches {want.pattern!r}; got {at}"


def test_corpus_is_large_and_every_file_declares_an_expectation() -> None:
    assert len(FILES) >= 40
    for path in FILES:
        declared = header(path)
        assert declared.expects or declared.warns, f"{path.name} declares no '# expect:' line"
        for pattern in [*(want.pattern for want in declared.expects), *declared.warns]:
            re.compile(pattern)


def test_every_data_file_is_read_by_a_spec() -> None:
    texts = "".join(path.read_text() for path in FILES)
    for data in DATA:
        assert f"data/{data.name}" in texts, f"no spec reads {data.name}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec_is_reported_where_it_is(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    declared = header(path)
    code = main([declared.verb, *declared.args, str(path)])
    out, err = capsys.readouterr()
    assert code == declared.exit, out + err
    assert_reported(path, err, declared.expects)
    for pattern in declared.warns:
        assert any(line.startswith("warning: ") and re.search(pattern, line)
                   for line in err.splitlines()), f"no warning matches {pattern!r}:\n{err}"
    assert "Traceback" not in out + err
    if declared.verb == "check" and declared.exit == 1:
        assert f"{path}: " in out and " error" in out  # the summary line names the file


@pytest.mark.parametrize(("name", "verb"), [
    ("alias_bomb", "check"), ("python_tag_apply", "run"), ("over_budget_default", "run"),
    ("matmul_inner", "check"), ("yaml_tab_indentation", "check"), ("cycle", "run")])
def test_real_process_prints_no_traceback(name: str, verb: str) -> None:
    path = CORPUS / f"{name}.yaml"
    declared = header(path)
    result = subprocess.run([sys.executable, "-m", "engine", verb, *declared.args, str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert_reported(path, result.stderr, declared.expects)


def test_corpus_readme_lists_every_file_once_with_true_counts() -> None:
    readme = (CORPUS / "README.md").read_text()
    groups = readme.count(chr(10) + "| ") - 1
    assert f"{len(FILES)} specs in {groups} groups, with {len(DATA)} data files" in readme
    rows = re.findall(r"^\| ([^|]+) \| (\d+) \| (.+) \|$", readme, flags=re.M)
    listed = []
    for _group, number, specs in rows:
        names = re.findall(r"`([a-z0-9_]+)`", specs)
        assert len(names) == int(number)
        listed += names
    assert sorted(listed) == sorted(p.stem for p in FILES)
