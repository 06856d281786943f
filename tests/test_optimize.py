"""``engine optimize``: the passes on engine grad's joint graph give the executor's numbers.

The executor's own backward (its loop over the vjp rules, not the gradient graph)
is the reference: every example graph and random graphs, forward values and
gradients, to 1e-12 in float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import GRAPHS
from test_grad import EXAMPLES, skip_without_graph_derivative
from test_optimized_path import random_spec

import engine
from engine.cli.main import main
from engine.transform.optimize import optimize, optimize_spec


def assert_optimized_matches_backward(graph: engine.Graph,
                                      feeds: dict[str, np.ndarray] | None = None) -> None:
    ex = engine.Executor(graph, optimize=False)  # the graph as written
    outputs = ex.forward(feeds)
    want = ex.backward()
    optimized = optimize(graph)
    got = engine.Executor(optimized).forward(feeds)
    for tensor, array in want.items():
        if tensor not in optimized.gradients:
            assert not np.any(array), tensor
            continue
        np.testing.assert_allclose(got[optimized.gradients[tensor]], array, rtol=1e-12,
                                   atol=1e-12, err_msg=tensor)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], outputs[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if engine.load(p).loss is not None],
                         ids=lambda p: p.name)
def test_every_example_graph_optimized_gives_the_executors_numbers(path: Path) -> None:
    graph = engine.load(path)
    skip_without_graph_derivative(graph)
    assert_optimized_matches_backward(graph)


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_optimized_give_the_executors_numbers(seed: int) -> None:
    assert_optimized_matches_backward(engine.loads(random_spec(seed), file=f"r{seed}.yaml"))


def test_the_lessons_softmax_loses_its_constant_nodes() -> None:
    made = optimize_spec(engine.load(GRAPHS / "softmax.yaml"), ["fold", "simplify", "cse", "dce"])
    counts = {r.name: (r.before, r.after) for r in made.reports}
    # engine grad writes Neg(1) for the seed of NLL and Sub(-1, 1) for Pow's exponent - 1;
    # 17 nodes of the lesson's graph and 3 of NLL's -y/p reading p only where y is not 0.
    # Sub(-1, 1) reads bare numbers only, so loading made it the bare number -2 already
    assert counts["fold"] == (20, 19)
    constants = made.stage.spec["constants"]
    assert constants["loss_grad1"] == {"value": -1.0, "dtype": "float64"}
    assert constants["inverted_grad2"] == -2.0
    assert "d_loss" not in constants  # the seed 1 was read only by the folded Neg


def test_cli_writes_a_spec_that_engine_run_runs_with_the_same_numbers(tmp_path: Path,
                                                                      capsys) -> None:
    out = tmp_path / "opt.yaml"
    assert main(["optimize", str(GRAPHS / "mlp.yaml"), "-o", str(out), "--report"]) == 0
    report = capsys.readouterr().err
    assert "fuse: 7 -> 4 nodes, 4 rewrites" in report
    assert "loss_grad1 (graphs/mlp.yaml:29, in the derivative of loss): Softmax " \
           "computes what probs computes" in report.replace(str(GRAPHS.parent) + "/", "")
    assert yaml.safe_load(out.read_text())["name"] == "mlp_optimized"
    graph = engine.load(GRAPHS / "mlp.yaml")
    ex = engine.Executor(graph, optimize=False)
    ex.forward()
    want = ex.backward()
    assert main(["run", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["outputs"]
    for tensor in ("w1", "b1", "w2", "b2"):
        np.testing.assert_allclose(np.asarray(got[f"d_{tensor}"]), want[tensor], rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("passes, message", [
    ("fold,dcee", "unknown pass 'dcee' (did you mean 'dce'?)"),
    (",", "no pass named"),
])
def test_bad_pass_names_are_usage_errors(passes: str, message: str, capsys) -> None:
    assert main(["optimize", str(GRAPHS / "softmax.yaml"), "--passes", passes]) == 2
    assert message in capsys.readouterr().err


def test_passes_run_in_the_order_given(capsys) -> None:
    assert main(["optimize", str(GRAPHS / "softmax.yaml"), "--passes", "dce,fold",
                 "--report"]) == 0
    err = capsys.readouterr().err
    assert err.index("dce:") < err.index("fold:")


def test_graph_optimized_draws_the_optimized_graph(tmp_path: Path) -> None:
    out = tmp_path / "opt.dot"
    assert main(["graph", str(GRAPHS / "softmax.yaml"), "--optimized", "-o", str(out)]) == 0
    text = out.read_text()
    assert "softmax_optimized" in text and "d_x" in text and "CrossEntropy" in text
    assert main(["graph", str(GRAPHS / "softmax.yaml"), "--optimized", "--backward",
                 "-o", str(out)]) == 2


def test_readme_shows_the_report_engine_optimize_prints(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    readme = (GRAPHS.parent / "README.md").read_text()
    block = readme.split("$ python -m engine optimize graphs/softmax.yaml -o opt.yaml --report\n",
                         1)[1].split("```", 1)[0]
    monkeypatch.chdir(GRAPHS.parent)
    out = tmp_path / "opt.yaml"
    assert main(["optimize", "graphs/softmax.yaml", "-o", str(out), "--report"]) == 0
    assert capsys.readouterr().err.replace(str(out), "opt.yaml") == block
