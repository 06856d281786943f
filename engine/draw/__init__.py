"""Pictures of a graph: what the forward and backward pictures show, and drawing them as
DOT, Mermaid, SVG, PNG or PDF."""
