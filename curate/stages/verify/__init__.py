"""The ``verify`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import VerifyStageConfig
from .stage import VerifyStage, check_gold, merge_counts, missing_gold

__all__ = ['VerifyStage', 'VerifyStageConfig', 'check_gold', 'merge_counts', 'missing_gold']
