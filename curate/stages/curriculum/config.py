"""The ``curriculum`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..base import StageConfig

ORDERS = ("easy_to_hard", "hard_to_easy", "staged", "interleaved", "random")


class CurriculumConfig(StageConfig):
    type: Literal["curriculum"] = "curriculum"
    order: Literal["easy_to_hard", "hard_to_easy", "staged", "interleaved", "random"] = "easy_to_hard"
    stages: int | None = Field(None, ge=1, le=1000)
    """staged: the number of stages (equal-count groups of problems by difficulty);
    default: one stage per difficulty bucket."""
    ratio: dict[str, float] | list[float] | None = None
    """interleaved: weight per difficulty bucket, as {label: weight} or a list from easiest to hardest
    bucket (default: equal weights). E.g. {easy: 1, medium: 2, hard: 1}."""
    seed: int | None = None
    """Seed of the shuffles and tie-breaks (default: the run seed)."""

    @model_validator(mode="after")
    def _check(self) -> "CurriculumConfig":
        if self.ratio is not None:
            if self.order != "interleaved":
                raise ValueError("curriculum.ratio applies to order: interleaved only")
            ws = list(self.ratio.values()) if isinstance(self.ratio, dict) else list(self.ratio)
            if not ws or any(w < 0 for w in ws) or sum(ws) <= 0:
                raise ValueError("curriculum.ratio: weights must be >= 0 with a positive sum")
        if self.stages is not None and self.order != "staged":
            raise ValueError("curriculum.stages applies to order: staged only")
        return self
