"""The ``dedup`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import DedupConfig
from .stage import DedupStage, answer_key, numbers_of

__all__ = ['DedupConfig', 'DedupStage', 'answer_key', 'numbers_of']
