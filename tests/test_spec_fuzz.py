"""Property tests: whatever is done to a spec, loading raises SpecError or succeeds, promptly.

The example graphs are mutated the ways hand edits go wrong (a key dropped, a
value of the wrong type, names swapped, random YAML pasted in) and loaded.
Any exception other than SpecError, or a load that takes more than a few
seconds, is a bug: users must get a located message, never a traceback.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import GRAPHS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine

EXAMPLES = {p.name: p.read_text() for p in sorted(GRAPHS.glob("*.yaml"))}
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
SECONDS = 10


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (rather than hang the suite) when loading takes longer than ``seconds``."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"loading took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def load_or_spec_error(text: str) -> None:
    with time_limit(SECONDS):
        try:
            engine.loads(text, file="fuzz.yaml", base_dir=GRAPHS)
        except engine.SpecError as exc:
            assert exc.problems, "a SpecError must carry at least one problem"
            for problem in exc.problems:
                # A problem may sit in a file the spec imports (graphs/lib/nn.yaml).
                assert problem.file == "fuzz.yaml" or Path(problem.file).is_file()
                assert problem.line >= 1 and problem.col >= 1


def paths(data: Any) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists, parents before children."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        found.append(path)
        if isinstance(value, dict):
            stack.extend(((*path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in enumerate(value))
    return found


def parent_and_key(data: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    for part in path[:-1]:
        data = data[part]
    return data, path[-1]


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["x", "y", "loss", "Exp", "MatMul", "batch", "float16",
                                     "int64", "one_hot", "", "-1", "1e6"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
example = st.sampled_from(sorted(EXAMPLES))


def parsed(name: str) -> Any:
    return yaml.safe_load(EXAMPLES[name])


@SETTINGS
@given(name=example, data=st.data())
def test_dropping_any_key_or_item(name: str, data: st.DataObject) -> None:
    spec = parsed(name)
    path = data.draw(st.sampled_from(paths(spec)[1:]))
    parent, key = parent_and_key(spec, path)
    del parent[key]
    load_or_spec_error(yaml.safe_dump(spec))


@SETTINGS
@given(name=example, data=st.data(), value=values)
def test_replacing_any_value_with_anything(name: str, data: st.DataObject, value: Any) -> None:
    spec = parsed(name)
    path = data.draw(st.sampled_from(paths(spec)[1:]))
    parent, key = parent_and_key(spec, path)
    parent[key] = value
    load_or_spec_error(yaml.safe_dump(spec))


@SETTINGS
@given(name=example, data=st.data())
def test_swapping_names(name: str, data: st.DataObject) -> None:
    spec = parsed(name)
    strings = [p for p in paths(spec)[1:] if isinstance(parent_and_key(spec, p)[0][p[-1]], str)]
    first, second = data.draw(st.lists(st.sampled_from(strings), min_size=2, max_size=2))
    (a, ka), (b, kb) = parent_and_key(spec, first), parent_and_key(spec, second)
    a[ka], b[kb] = b[kb], a[ka]
    load_or_spec_error(yaml.safe_dump(spec))


@SETTINGS
@given(name=example, data=st.data())
def test_renaming_a_section_key(name: str, data: st.DataObject) -> None:
    spec = parsed(name)
    sections = [s for s in ("inputs", "parameters", "constants", "nodes") if spec.get(s)]
    section = data.draw(st.sampled_from(sections))
    old = data.draw(st.sampled_from(sorted(spec[section])))
    new = data.draw(st.one_of(st.sampled_from(sorted(paths(spec)[1:], key=str)).map(
        lambda p: str(p[-1])), st.text(max_size=6)))
    spec[section][new] = spec[section].pop(old)
    load_or_spec_error(yaml.safe_dump(spec))


yaml_noise = st.text(alphabet=st.sampled_from(list(":{}[],&*!|>-#'\"?%@`\t\n ab1.")),
                     max_size=20)


@SETTINGS
@given(name=example, data=st.data(), noise=yaml_noise)
def test_inserting_random_yaml_text(name: str, data: st.DataObject, noise: str) -> None:
    text = EXAMPLES[name]
    at = data.draw(st.integers(0, len(text)))
    load_or_spec_error(text[:at] + noise + text[at:])


@SETTINGS
@given(name=example, data=st.data())
def test_deleting_a_span_of_text(name: str, data: st.DataObject) -> None:
    text = EXAMPLES[name]
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    load_or_spec_error(text[:start] + text[end:])


@pytest.mark.parametrize("text", [
    "a: &a [*a, *a]\nname: t\nnodes: {}\n",
    "a: &a {b: &b {c: *a}}\nname: t\nnodes: {}\n",
    "name: t\nnodes: {}\n" + "k: " + "[" * 5000 + "]" * 5000 + "\n",
    "\x00\x01",
    "name: t\nnodes:\n  e: {op: Exp, inputs: [x]}\n" * 2,
])
def test_pathological_documents(text: str) -> None:
    load_or_spec_error(text)
