"""The ``sample`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import SampleStageConfig
from .stage import SampleStage

__all__ = ['SampleStage', 'SampleStageConfig']
