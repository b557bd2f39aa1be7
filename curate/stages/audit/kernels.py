"""The ``audit`` stage's kernel: per-row measures of a trace (numbers and booleans, no text). It lives with
the flags in :mod:`curate.audit.flags` because the version's audit report measures unaudited splits with it."""

from ...audit.flags import MeasureKernel

__all__ = ["MeasureKernel"]
