"""The ``audit`` stage: ``config.py`` (its YAML config), ``kernels.py`` (its per-row measures), ``stage.py``
(the stage class: per-row flags, never drops)."""

from .config import AuditConfig
from .kernels import MeasureKernel
from .stage import MEASURE_PREFIX, AuditStage

__all__ = ["MEASURE_PREFIX", "AuditConfig", "AuditStage", "MeasureKernel"]
