"""Misuse of the Python API raises the engine's own errors, with a message that says what was
expected: never an AttributeError or a TypeError from inside NumPy or the executor.

``engine.ArgumentError`` is also a TypeError, so code that catches Python's error for a
wrong argument still works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import GRAPHS

import engine

GRAPH = engine.load(GRAPHS / "softmax.yaml")
X = np.zeros((5, 3))


def ran(ex: engine.Executor) -> engine.Executor:
    ex.forward()
    return ex


CASES: dict[str, tuple[Callable[[engine.Executor], Any], type[Exception], str]] = {
    "feeds as a list": (lambda ex: ex.forward([X]), engine.ArgumentError,
                        r"feeds is a mapping of names to arrays, such as \{'x': array\}; found "
                        r"list"),
    "feeds as a string": (lambda ex: ex.forward("x"), engine.ArgumentError, "found str"),
    "a key that is not a string": (lambda ex: ex.forward({1: X}), engine.ArgumentError,
                                   "every key is a name \\(a string\\); found int 1"),
    "a ragged list": (lambda ex: ex.forward({"x": [[1.0, 2.0], [3.0]]}), engine.DataError,
                      "input 'x' .*: not a rectangular array of numbers \\(ragged"),
    "keep= as a string": (lambda ex: ran(ex).backward(keep="raised"), engine.ArgumentError,
                          r"keep= takes a list of node names, found str: write "
                          r"keep=\['raised'\]"),
    "keep= as a number": (lambda ex: ran(ex).backward(keep=3), engine.ArgumentError,
                          "found int"),
    "keep= holding a number": (lambda ex: ran(ex).backward(keep=[3]), engine.ArgumentError,
                               "a node is named by a string, found int 3"),
    "backward's upstream as a list": (lambda ex: ran(ex).backward(["softmax"]),
                                  engine.ArgumentError, "backward's upstream is a mapping"),
    "a ragged upstream gradient": (lambda ex: ran(ex).backward({"softmax": [[1.0], [1, 2]]}),
                                   engine.DataError, "upstream gradient for 'softmax': not a "
                                                     "rectangular array"),
    "value() of a number": (lambda ex: ran(ex).value(3), engine.ArgumentError,
                            "value\\(\\) takes a name"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_misuse_raises_the_engines_errors(case: str) -> None:
    call, kind, message = CASES[case]
    with pytest.raises(kind, match=message):
        call(engine.Executor(GRAPH))


@pytest.mark.parametrize("seed", ["3", [3], 3.5, -1, 2**64, True])
def test_a_seed_must_be_a_whole_number_in_range(seed: Any) -> None:
    with pytest.raises(engine.ArgumentError, match="a seed is a whole number from 0 to 2\\^64"):
        engine.Executor(GRAPH, seed=seed)


def test_seed_none_means_the_specs_seed_and_numpy_integers_are_seeds() -> None:
    spec_seed = engine.Executor(GRAPH, seed=None).forward()["softmax"]
    np.testing.assert_array_equal(spec_seed, engine.Executor(GRAPH).forward()["softmax"])
    assert engine.Executor(GRAPH, seed=np.int64(3)).seed == 3


def test_argument_errors_are_type_errors_too() -> None:
    assert issubclass(engine.ArgumentError, TypeError)
    assert issubclass(engine.ArgumentError, engine.EngineError)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: engine.load(3), "load\\(\\) takes the path of a spec file, found int"),
    (lambda: engine.load(None), "found NoneType"),
    (lambda: engine.loads(b"name: t"), "loads\\(\\) takes spec text \\(a str\\), found bytes"),
    (lambda: engine.load(GRAPHS / "softmax.yaml", max_bytes="4GiB"),
     "max_bytes is a whole number of bytes"),
    (lambda: engine.Executor(str(GRAPHS / "softmax.yaml")),
     "Executor takes the Graph that engine.load returns, found str"),
])
def test_loading_misuse_raises_argument_errors(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(engine.ArgumentError, match=message):
        call()
