"""Run ONNX's node tests for the ops engine import maps, and print the table of the README.

    python scripts/onnx_node_tests.py            # the markdown table, per ONNX op
    python scripts/onnx_node_tests.py --cases    # also one line per case

Needs the onnx extra (pip install -e ".[onnx]"); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import unittest
import warnings
from typing import Any

from engine.testing.onnx_conformance import node_cases, node_test_classes, tally


class _Result(unittest.TestResult):
    """Each case's outcome and, for a skip or a failure, the reason in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, tuple[str, str]] = {}

    def _add(self, test: unittest.TestCase, outcome: str, reason: str) -> None:
        name = test.id().rsplit(".", 1)[-1]
        if name.endswith("_cpu") and name.removesuffix("_cpu") in node_cases():
            self.outcomes[name.removesuffix("_cpu")] = (outcome, reason)

    def addSuccess(self, test: unittest.TestCase) -> None:
        self._add(test, "passed", "")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self._add(test, "skipped", reason)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        self._add(test, "failed", _last_line(self._exc_info_to_string(err, test)))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        self._add(test, "failed", _last_line(self._exc_info_to_string(err, test)))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", action="store_true", help="also print one line per case")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    result = _Result()
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(case)
                               for case in node_test_classes(__name__).values())
    suite.run(result)
    if args.cases:
        for name, (outcome, reason) in sorted(result.outcomes.items()):
            print(f"{outcome:8} {name}  {reason}")
        print()
    print(tally(result.outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
