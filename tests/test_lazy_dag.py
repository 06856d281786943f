"""The values' DAG built on first use (``Graph.dag``), and the collector pause around loading.

Expected edges are read off the spec by hand: one edge from each input a node reads.
"""

from __future__ import annotations

import gc

import engine
from engine.gcpause import collector_paused
from engine.graph.subgraph import needed_by

SPEC = """
name: t
inputs:
  x: {shape: [2], dtype: float32}
  y: {shape: [2]}
constants: {k: 2.0}
nodes:
  a: {op: Mul, inputs: [x, k]}
  b: {op: Mul, inputs: [y, k]}
  s: {op: Add, inputs: [b, 3]}
  loss: {op: Sum, inputs: [s]}
outputs: [a]
loss: loss
"""


def test_dag_has_every_value_and_one_edge_per_input_read():
    graph = engine.loads(SPEC)
    # k meets float32 in a and float64 in b: b reads its own float64 copy of k, and the
    # bare 3 of s is an inline constant of its own
    assert set(graph.dag.nodes) == {"x", "y", "k", "k.float64", "s.inputs[1]", "a", "b", "s",
                                    "loss"}
    assert set(graph.dag.edges) == {("x", "a"), ("k", "a"), ("y", "b"), ("k.float64", "b"),
                                    ("b", "s"), ("s.inputs[1]", "s"), ("s", "loss")}
    assert graph.dag is graph.dag  # built once


def test_dag_of_a_subgraph_has_only_what_its_outputs_read():
    part = needed_by(engine.loads(SPEC), ["a"])
    assert set(part.dag.nodes) == {"x", "k", "a"}
    assert set(part.dag.edges) == {("x", "a"), ("k", "a")}


def test_pause_restores_the_collector_and_leaves_frozen_objects_frozen():
    assert gc.isenabled()
    gc.freeze()  # a program that froze its objects (as before forking workers)
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with collector_paused():
            assert not gc.isenabled()
            made = [[i] for i in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() == frozen and len(made) == 1000
    finally:
        gc.unfreeze()
    with collector_paused():
        made = [[i] for i in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() == 0
    # promoted at once to the oldest generation, not left for a young collection to walk
    assert any(o is made[0] for o in gc.get_objects(2))
