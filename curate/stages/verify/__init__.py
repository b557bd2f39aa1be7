"""The ``verify`` stage: ``config.py`` (its YAML config), ``kernels.py`` (its row-wise kernel), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import VerifyStageConfig
from .kernels import VerifyKernel
from .stage import VerifyStage, check_gold, merge_counts, missing_gold

__all__ = ['VerifyKernel', 'VerifyStage', 'VerifyStageConfig', 'check_gold', 'merge_counts', 'missing_gold']
