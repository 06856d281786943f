"""graphs/attention.yaml: a transformer block learns to sort 8 tokens, in CI, with a fixed seed.

The accuracy is asserted, never the time (the README gives the time measured).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import GRAPHS

from engine.cli.main import main
from engine.spec.loader import load

SPEC = GRAPHS / "attention.yaml"


def test_the_committed_data_is_what_its_script_makes() -> None:
    spec = importlib.util.spec_from_file_location("make_sort", GRAPHS / "data" / "make_sort.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tokens, ordered = script.make()
    with np.load(GRAPHS / "data" / "sort.npz") as data:
        np.testing.assert_array_equal(data["tokens"], tokens)
        np.testing.assert_array_equal(data["sorted"], ordered)
    assert tokens.shape == (4000, 8) and tokens.max() == 9 and tokens.min() == 0
    assert (np.diff(ordered.astype(int), axis=1) >= 0).all()
    np.testing.assert_array_equal(np.bincount(tokens[5], minlength=10),
                                  np.bincount(ordered[5], minlength=10))


def test_the_block_uses_embeddings_attention_layer_norm_and_dropout() -> None:
    ops = {node.op.name for node in load(SPEC).nodes.values()}
    assert {"Gather", "LayerNorm", "Softmax", "Dropout", "Transpose", "Reshape"} <= ops


def test_attention_learns_to_sort_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(SPEC), "--json", "--seed", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert result["val_accuracy"] >= 0.95, result  # token accuracy on held-out sequences
    assert result["val_rows"] == 400
