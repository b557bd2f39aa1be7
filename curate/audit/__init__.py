"""Trace-quality audit: per-row flags, aggregates, and a self-contained HTML report.

Public API (kept stable for the runner, the publisher and the CLI):
``AuditConfig``, ``audit_frame(df, cfg)``, ``write_report(out_dir, train, rejected, manifest, config)`` (DataFrames
or LazyFrames, e.g. ``pl.scan_parquet`` over a version's split files: bounded memory),
``audit_dataset(target, out_dir, mapping, config)``.
"""

from .config import ALL_FLAGS, FLAG_HELP, AuditConfig
from .flags import audit_frame
from .load import audit_dataset, load_target
from .report import write_report
from .summary import summarize

__all__ = ["ALL_FLAGS", "FLAG_HELP", "AuditConfig", "audit_frame", "audit_dataset", "load_target",
           "summarize", "write_report"]
