"""The spec's models with the ops filled in: what a spec file is validated against.

``schemas/`` holds the models apart from the ops and imports nothing from the
engine; this module builds each op's node model from the op registry and the
``OpSpec`` model from them, so the engine imports ``schemas`` and never the
other way round.  The JSON Schema (``schemas/graph.schema.json``) is generated
from ``OpSpec``.
"""

from __future__ import annotations

from engine.ops import REGISTRY
from schemas import spec as models

#: Each op's node model: the common node fields plus the op's attributes.
NODE_MODELS: dict[str, type[models.NodeFields]] = {
    name: models.node_model(name, op.doc, op.attrs) for name, op in REGISTRY.items()}

#: A spec whose nodes are checked against their ops (any other ``op`` is a call).
OpSpec: type[models.Spec] = models.spec_model(NODE_MODELS)


def schema_text() -> str:
    """The JSON Schema of a spec file, as committed in ``schemas/graph.schema.json``."""
    return models.schema_text(OpSpec)
