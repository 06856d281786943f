"""Stage 2, primitive nodes to a checked ``Graph``: names resolved, order fixed, shapes and
dtypes inferred, memory sized, warnings found; and what can be read off a graph
without running it (derivative chains)."""
