"""The ``select`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..base import StageConfig


class SelectConfig(StageConfig):
    type: Literal["select"] = "select"
    n: int = Field(ge=1)
    """The budget."""
    unit: Literal["problems", "rows"] = "problems"
    """What ``n`` counts: problems (all their kept rows go along) or rows."""
    by: str = "difficulty"
    """The numeric column to favour (higher is preferred)."""
    strength: float = Field(4.0, ge=0, le=1000)
    """How strongly to favour ``by``: 0 = uniform random, large = strictly highest first."""
    category: str | None = None
    """Column (or key of the ``meta`` JSON) to spread the selection across, e.g. subject."""
    spread: Literal["balanced", "proportional"] = "balanced"
    seed: int | None = None
    """Default: the run seed."""
