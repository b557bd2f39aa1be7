"""The ``audit`` stage's config: the flags' thresholds. It is defined with the trace-quality code in
:mod:`curate.audit.config` because the version's audit report (publish, ``curate audit``) uses it too."""

from ...audit.config import AuditConfig

__all__ = ["AuditConfig"]
