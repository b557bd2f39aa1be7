"""The ``sample`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from typing import Literal

from ...sampling import SampleConfig
from ..base import StageConfig


class SampleStageConfig(StageConfig, SampleConfig):
    type: Literal["sample"] = "sample"
