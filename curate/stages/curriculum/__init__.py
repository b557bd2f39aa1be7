"""The ``curriculum`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import ORDERS, CurriculumConfig
from .stage import CurriculumStage, describe

__all__ = ['CurriculumConfig', 'CurriculumStage', 'ORDERS', 'describe']
