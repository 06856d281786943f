"""The corpus of bad specs: each file in tests/bad_specs/ says, in its first lines, what
``engine`` must report about it.

    # what the file shows
    # expect: LINE:COL: REGEX        (one or more; REGEX is searched in the message)
    # expect: REGEX                  (an error with no position: a data file, a checkpoint)
    # args: --strict                 (extra arguments; {dir} is the corpus folder)
    # verb: run                      (the verb to run; check when absent)
    # exit: 2                        (the exit code; 1 when absent)

Each case runs the verb in-process (fast) and asserts the exit code, an
``error: FILE:LINE:COL: ...`` line whose text matches (or, without a position,
an ``error: ...`` line naming the data file), and no traceback.  A few
run as real subprocesses too, so that "no traceback" holds for the installed
command and not only for ``main``.  The expected positions were written by
hand from the files; regexes were written from what each message must say.
Data files the specs name live in tests/bad_specs/data/, made by
tests/bad_specs/make_data.py (committed, so that the corpus needs no script to run).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

from engine.cli.main import main

CORPUS = ROOT / "tests" / "bad_specs"
FILES = sorted(CORPUS.glob("*.yaml"))


@dataclass(frozen=True)
class Expectation:
    line: int | None
    col: int | None
    pattern: str


@dataclass(frozen=True)
class Header:
    expects: list[Expectation]
    args: list[str]
    verb: str = "check"
    exit: int = 1


def header(path: Path) -> Header:
    """What a corpus file declares in its leading comments."""
    expects: list[Expectation] = []
    args: list[str] = []
    verb, code = "check", 1
    for text in path.read_text().splitlines():
        if not text.startswith("#"):
            break
        if match := re.fullmatch(r"# expect: (\d+):(\d+): (.+)", text):
            expects.append(Expectation(int(match[1]), int(match[2]), match[3]))
        elif match := re.fullmatch(r"# expect: (.+)", text):
            expects.append(Expectation(None, None, match[1]))
        elif text.startswith("# args:"):
            args = [a.replace("{dir}", str(CORPUS))
                    for a in shlex.split(text.removeprefix("# args:"))]
        elif text.startswith("# verb:"):
            verb = text.removeprefix("# verb:").strip()
        elif text.startswith("# exit:"):
            code = int(text.removeprefix("# exit:"))
    return Header(expects, args, verb, code)


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
        assert declared.expects, f"{path.name} declares no '# expect:' line"
        for want in declared.expects:
            re.compile(want.pattern)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec_is_reported_where_it_is(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    declared = header(path)
    code = main([declared.verb, *declared.args, str(path)])
    out, err = capsys.readouterr()
    assert code == declared.exit, out + err
    assert_reported(path, err, declared.expects)
    assert "Traceback" not in out + err
    if declared.verb == "check":
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
    assert f"{len(FILES)} specs in {readme.count(chr(10) + '| ') - 1} groups" in readme
    rows = re.findall(r"^\| ([^|]+) \| (\d+) \| (.+) \|$", readme, flags=re.M)
    listed = []
    for _group, number, specs in rows:
        names = re.findall(r"`([a-z0-9_]+)`", specs)
        assert len(names) == int(number)
        listed += names
    assert sorted(listed) == sorted(p.stem for p in FILES)
