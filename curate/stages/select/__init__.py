"""The ``select`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import SelectConfig
from .stage import SelectStage

__all__ = ['SelectConfig', 'SelectStage']
