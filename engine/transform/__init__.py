"""Transformations of graphs into graphs: ``grad`` (the backward pass as a graph)."""
