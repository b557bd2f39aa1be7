"""curate: declarative curation of reasoning-distillation datasets."""

__version__ = "0.1.0"
