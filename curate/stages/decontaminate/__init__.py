"""The ``decontaminate`` stage: ``config.py`` (its YAML config), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import BenchmarkSpec, DecontaminateConfig
from .stage import DecontaminateStage, load_benchmark, load_benchmark_texts

__all__ = ['BenchmarkSpec', 'DecontaminateConfig', 'DecontaminateStage', 'load_benchmark', 'load_benchmark_texts']
