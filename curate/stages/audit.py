"""The ``audit`` stage: per-row trace-quality flags. It never drops rows.

Adds ``flags`` (list of strings), ``reasoning_tokens`` and ``reflections_per_1k``; the per-flag counts
go to ``ctx.stats`` (the funnel/manifest). The publisher writes the HTML report with the same config.
"""

from __future__ import annotations

import polars as pl

from ..audit.config import AuditConfig
from ..audit.flags import audit_frame
from ..audit.summary import flag_counts
from ..errors import RecipeError, require
from .base import Context, Stage


def _length_ref(df: pl.DataFrame, cfg: AuditConfig):
    from ..audit.flags import count_tokens, length_stats

    if df.height < cfg.length_min_rows:
        return None
    return length_stats(count_tokens(df["reasoning"].cast(pl.Utf8), cfg.tokenizer))


class AuditStage(Stage):
    name = "audit"
    CHUNK = 50_000
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
        if df.height <= self.CHUNK:
            out = audit_frame(df, cfg)
        else:  # in chunks, for a progress bar with rows/s; the length reference is the whole frame's
            ref = _length_ref(df, cfg)
            parts = []
            with ctx.progress(df.height, f"{ctx.stage_label or self.name}: flags") as bar:
                for start in range(0, df.height, self.CHUNK):
                    part = df.slice(start, self.CHUNK)
                    parts.append(audit_frame(part, cfg, length_ref=ref))
                    bar.advance(part.height)
            out = pl.concat(parts, how="vertical_relaxed")
        counts = flag_counts(out, cfg.enabled())
        ctx.stats["flag_counts"] = counts
        ctx.stats["rows_flagged"] = int((out["flags"].list.len() > 0).sum()) if out.height else 0
        if out.height:
            ctx.stats["reasoning_tokens_p50"] = float(out["reasoning_tokens"].median())
        return out
