"""The ``audit`` stage: per-row trace-quality flags. It never drops rows.

Adds ``flags`` (list of strings), ``reasoning_tokens`` and ``reflections_per_1k``; the per-flag counts
go to ``ctx.stats`` (the funnel/manifest). The publisher writes the HTML report with the same config.
"""

from __future__ import annotations

import polars as pl

from ..audit.config import AuditConfig
from ..audit.flags import MeasureKernel, audit_frame
from ..audit.summary import flag_counts
from ..errors import RecipeError, require
from .base import Context, Stage


class AuditStage(Stage):
    name = "audit"
    CHUNK = 50_000
    """Rows per local batch of the measures (a progress bar with rows/s; the same flags)."""
    Config = AuditConfig
    version = "1"
    requires = ("reasoning",)
    produces = ("flags", "reasoning_tokens", "reflections_per_1k")

    def check(self, ctx: Context) -> None:
        if self.config.tokenizer:  # type: ignore[attr-defined]
            require("transformers", "train", "audit.tokenizer")

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg: AuditConfig = self.config  # type: ignore[assignment]
        if "reasoning" not in df.columns:
            raise RecipeError(
                f"stages.{ctx.stage_label or 'audit'}: the audit needs a 'reasoning' column "
                "(put it after a sample stage or use a traces source)"
            )
        # the per-row measures are the kernel (an engine may run it anywhere); the flags need the
        # whole frame's length reference: here
        measured = ctx.map(MeasureKernel(cfg, batch_rows=self.CHUNK), df) if df.height else None
        out = audit_frame(df, cfg, measured=measured)
        counts = flag_counts(out, cfg.enabled())
        ctx.stats["flag_counts"] = counts
        ctx.stats["rows_flagged"] = int((out["flags"].list.len() > 0).sum()) if out.height else 0
        if out.height:
            ctx.stats["reasoning_tokens_p50"] = float(out["reasoning_tokens"].median())
        return out
