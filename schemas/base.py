"""The one strict base model of every spec section, train config and op attribute set.

A typo in a spec must be an error, not silently ignored, and ``true`` is not the
number 1 (``shape: [true, 2]``): every model the user's YAML meets refuses
unknown keys and converts nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Refuses unknown keys and converts nothing."""

    model_config = ConfigDict(extra="forbid", strict=True)
