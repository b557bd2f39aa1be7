"""Built-in stages, one module each. See ``base.py`` for the contract."""

from .base import DROP, Context, Stage, StageConfig, mark_drop

__all__ = ["DROP", "Context", "Stage", "StageConfig", "mark_drop"]
