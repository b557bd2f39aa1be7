"""The ``difficulty`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import (
    DEFAULT_JUDGE_PROMPT,
    UNGRADED_VERDICTS,
    Buckets,
    DifficultyConfig,
    JudgeMethod,
    LengthMethod,
    PassRateMethod,
)
from .stage import OUT_COLUMNS, DifficultyStage

__all__ = ['Buckets', 'DEFAULT_JUDGE_PROMPT', 'DifficultyConfig', 'DifficultyStage', 'JudgeMethod', 'LengthMethod', 'OUT_COLUMNS', 'PassRateMethod', 'UNGRADED_VERDICTS']
