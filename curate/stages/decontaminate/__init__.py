"""The ``decontaminate`` stage: ``config.py`` (its YAML config), ``kernels.py`` (its row-wise kernel), ``stage.py`` (the stage class: what it reads, adds and drops)."""

from .config import BenchmarkSpec, DecontaminateConfig
from .kernels import ContamKernel, matches_of
from .stage import DecontaminateStage, load_benchmark, load_benchmark_texts

__all__ = ['ContamKernel', 'matches_of', 'BenchmarkSpec', 'DecontaminateConfig', 'DecontaminateStage', 'load_benchmark', 'load_benchmark_texts']
