"""ONNX's own node tests for the ops engine import maps, run through the onnx Backend adapter.

The cases come from ``onnx.backend.test.loader.load_model_tests(kind="node")``, built
in memory by onnx (nothing is downloaded); ONNX's runner compares each output's shape,
dtype and numbers with ONNX's reference.  A case the engine refuses is skipped with the
refusal as its reason (``pytest -rs`` lists them); ``python scripts/onnx_node_tests.py``
prints the per-op table of the README.
"""

from __future__ import annotations

import pytest

pytest.importorskip("onnx", reason='the onnx extra is not installed: pip install -e ".[onnx]"')

from engine.testing.onnx_conformance import node_cases, node_test_classes

globals().update(node_test_classes(__name__))


def test_the_node_tests_cover_every_op_engine_import_maps() -> None:
    from engine.onnx.convert import CONVERTERS
    from engine.testing.onnx_conformance import SHAPE_OPS

    assert set(node_cases().values()) == set(CONVERTERS) - SHAPE_OPS
