"""ONNX's own node tests, run through the engine's backend adapter, and their tally per op.

The cases are those of ``onnx.backend.test.loader.load_model_tests(kind="node")``
(built in memory by onnx; nothing is downloaded) whose model is one node of an ONNX
op that ``engine import`` maps (``engine.onnx.convert.CONVERTERS``, Constant aside).
A case the engine refuses is skipped with the refusal's message as its reason, so a
skip always says why; a failure is a wrong number, a wrong dtype or shape, or an error
that is not a refusal.  ``tests/test_onnx_node.py`` runs them under pytest;
``python scripts/onnx_node_tests.py`` writes the table of the README.
"""

from __future__ import annotations

import functools
import re
import unittest
from collections import Counter, defaultdict
from typing import Any

from onnx.backend.test import BackendTest
from onnx.backend.test.loader import load_model_tests

from engine.onnx.backend import EngineBackend, EngineRep
from engine.onnx.convert import CONVERTERS
from engine.onnx.types import Unsupported

#: ONNX ops imported only as the shape patterns of engine export (Count, BroadcastTo,
#: ReshapeLike) or folded into constants: no engine op of their own, so no node tests.
SHAPE_OPS = frozenset({"Constant", "Shape", "Expand", "ReduceProd"})


class RefusingRep(EngineRep):
    """A refusal is a skip whose reason is the refusal's message."""

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        try:
            return super().run(inputs, **kwargs)
        except Unsupported as exc:
            raise unittest.SkipTest(_reason(str(exc))) from None


class RefusingBackend(EngineBackend):
    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> RefusingRep:
        super().prepare(model, device, **kwargs)
        return RefusingRep(model, model.graph.name or "model")


def _reason(message: str) -> str:
    """The refusal in a few words: without the model's name (the test's own), the node, the
    input's name, the list of engine dtypes."""
    message = re.sub(r"^[^:]*: (node \d+ (\S+ )?\(\w+, opset \d+\): )?", "", message)
    message = re.sub(r"^the imported spec does not load: .*?: node '[^']*' \((\w+)\): ",
                     r"the engine's \1 refuses it: ", message)
    message = re.sub(r"^(input|value) (\d+ )?'[^']*' is (\w+), which is not an engine dtype.*",
                     r"\3 is not an engine dtype", message)
    return re.sub(r"^Cast to (\w+): the engine casts to .*", r"\1 is not an engine dtype",
                  message)


@functools.cache
def node_cases() -> dict[str, str]:
    """{test name: ONNX op} of the node tests of the ops engine import maps."""
    ops = set(CONVERTERS) - SHAPE_OPS
    cases = {}
    for case in load_model_tests(kind="node"):
        nodes = case.model.graph.node if case.model is not None else []
        if len(nodes) == 1 and nodes[0].op_type in ops and nodes[0].domain in ("", "ai.onnx") \
                and not case.name.endswith("_expanded"):  # another op's function body
            cases[case.name] = nodes[0].op_type
    return cases


def node_test_classes(module: str) -> dict[str, type[unittest.TestCase]]:
    """ONNX's runner over ``node_cases()`` on the CPU, refusals as skips: unittest classes
    holding only those tests (the runner also lists every other case, as skipped)."""
    runner = BackendTest(RefusingBackend, module)
    names = "|".join(re.escape(name) for name in sorted(node_cases()))
    runner.include(rf"^({names})_cpu$")
    cases = runner.test_cases
    for case in cases.values():
        for attribute in list(vars(case)):
            if attribute.startswith("test_") and not (
                    attribute.endswith("_cpu") and attribute[:-4] in node_cases()):
                delattr(case, attribute)
    return cases


def tally(results: dict[str, tuple[str, str]]) -> str:
    """The README's table: per op, passed / failed / skipped, and each skip's reason.

    ``results`` maps a test name to (outcome, reason)."""
    cases = node_cases()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, (outcome, reason) in results.items():
        op = cases[name]
        counts[op][outcome] += 1
        if outcome != "passed":
            reasons[op][reason].append(name.removeprefix("test_"))
    for why in reasons.values():  # the dtypes the engine lacks, in one reason
        lacking = {r: n for r, n in why.items() if r.endswith(" is not an engine dtype")}
        if lacking:
            dtypes = ", ".join(sorted(r.split()[0] for r in lacking))
            merged = [name for names in lacking.values() for name in names]
            for r in lacking:
                del why[r]
            why[f"not engine dtypes: {dtypes}"] = merged
    total = Counter[str]()
    rows = ["| ONNX op | passed | failed | skipped | why not passed |", "|---|---:|---:|---:|---|"]
    for op in sorted(counts):
        total.update(counts[op])
        why = "; ".join(f"{reason} ({_cases(names)})" for reason, names in
                        sorted(reasons[op].items(), key=lambda item: -len(item[1])))
        rows.append(f"| {op} | {counts[op]['passed']} | {counts[op]['failed']} | "
                    f"{counts[op]['skipped']} | {why.replace('|', '/')} |")
    rows.append(f"| **all {sum(total.values())}** | {total['passed']} | {total['failed']} | "
                f"{total['skipped']} | |")
    return "\n".join(rows)


def _cases(names: list[str]) -> str:
    return ", ".join(sorted(names)) if len(names) <= 3 else f"{len(names)} cases"
