"""The ``audit`` stage: per-row trace-quality flags. It never drops rows.

Adds ``flags`` (list of strings), ``reasoning_tokens`` and ``reflections_per_1k``; the per-flag counts
go to ``ctx.stats`` (the funnel/manifest). The publisher writes the HTML report with the same config.

Scale: the per-row measures (:class:`~curate.audit.flags.MeasureKernel`: numbers and booleans, no text)
are ``map_shard``, run shard by shard on the full rows; they become hidden ``__audit.*`` columns. The
flags need the frame-wide length reference, so ``run`` is global, but it ``reads`` only those measures
and the few plain columns the flags look at (never the traces), and then does not measure again.
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import polars as pl

import numpy as np

from ...audit.flags import FLAG_INPUTS, audit_frame, length_stats
from ...audit.summary import flag_counts
from ...errors import RecipeError, require
from ..base import ORDER, Context, Planned, Stage
from .config import AuditConfig
from .kernels import MeasureKernel

MEASURE_PREFIX = "__audit."
"""map_shard's columns: ``__audit.<config key>.<measure>`` (hidden: not for publishing). The key is a hash
of the audit's settings, so a second audit stage with other settings never reads the first one's."""


class AuditStage(Planned, Stage):
    name = "audit"
    CHUNK = 20_000
    """Rows per local batch of the measures (a progress bar with rows/s; the same flags). Measuring holds
    about 7x the batch's text: 20k traces of 2.1k characters peak near +0.3 GiB (50k: +0.75 GiB)."""
    Config = AuditConfig
    version = "1"
    requires = ("reasoning",)
    produces = ("flags", "reasoning_tokens", "reflections_per_1k")
    scope: ClassVar = "global"

    def check(self, ctx: Context) -> None:
        if self.config.tokenizer:  # type: ignore[attr-defined]
            require("transformers", "train", "audit.tokenizer")

    def _prefix(self) -> str:
        cfg = self.config.model_dump(mode="json", exclude={"label"})
        return f"{MEASURE_PREFIX}{hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]}."

    def _kernel(self) -> MeasureKernel:
        return MeasureKernel(self.config, batch_rows=self.CHUNK)  # type: ignore[arg-type]

    @staticmethod
    def _need_reasoning(df: pl.DataFrame, ctx: Context) -> None:
        if "reasoning" not in df.columns:
            raise RecipeError(
                f"stages.{ctx.stage_label or 'audit'}: the audit needs a 'reasoning' column "
                "(put it after a sample stage or use a traces source)"
            )

    def map_shard(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """Phase 1 (per shard, all columns): ``df`` with the per-row measures added as ``__audit.*``
        columns (a pure function of each row)."""
        self._need_reasoning(df, ctx)
        m = ctx.map(self._kernel(), df) if df.height else self._kernel()(df)
        m = m.rename(lambda c: self._prefix() + c)
        return pl.concat([df.drop(m.columns, strict=False), m], how="horizontal")

    def reads(self, columns: list[str]) -> list[str] | None:
        """With map_shard's measures among ``columns``: those and the flags' plain inputs (no text).
        Without them (no map phase ran): None, every column (``run`` measures the traces itself)."""
        pre = self._prefix()
        if not any(c.startswith(pre) for c in columns):
            return None
        return [c for c in columns if c.startswith(pre) or c in FLAG_INPUTS]

    def _measured(self, df: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``df`` without any audit's hidden measures, and this audit's measures of its rows (map_shard's
        columns where they are there, else measured now)."""
        prefix = self._prefix()
        pre = [c for c in df.columns if c.startswith(prefix)]
        measured = df.select(pre).rename(lambda c: c[len(prefix):]) if pre else None
        df = df.drop([c for c in df.columns if c.startswith(MEASURE_PREFIX) or c == ORDER])  # hidden: never returned
        if measured is None:
            self._need_reasoning(df, ctx)
            measured = ctx.map(self._kernel(), df) if df.height else self._kernel()(df)
        return df, measured

    def summarize(self, df: pl.DataFrame, ctx: Context) -> np.ndarray:
        """A shard's rows' reasoning tokens (the length reference is taken over every row)."""
        return self._measured(df, ctx)[1]["reasoning_tokens"].to_numpy()

    def plan(self, parts: list[np.ndarray], ctx: Context) -> dict:
        """The length reference (median, MAD of log tokens) over all rows, none below ``length_min_rows``."""
        cfg: AuditConfig = self.config  # type: ignore[assignment]
        tokens = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        if len(tokens):
            ctx.stats["reasoning_tokens_p50"] = float(np.median(tokens))
        return {"length_ref": length_stats(tokens) if len(tokens) >= cfg.length_min_rows else None}

    def apply(self, df: pl.DataFrame, plan: dict, ctx: Context) -> pl.DataFrame:
        cfg: AuditConfig = self.config  # type: ignore[assignment]
        df, measured = self._measured(df, ctx)
        out = audit_frame(df, cfg, measured=measured if df.height else None, length_ref=plan["length_ref"])
        ctx.stats["flag_counts"] = flag_counts(out, cfg.enabled())
        ctx.stats["rows_flagged"] = int((out["flags"].list.len() > 0).sum()) if out.height else 0
        return out

    def merge_applied(self, plan_stats: dict, parts: list[dict]) -> dict:
        """Flag counts and flagged rows summed over the shards; the median tokens from ``plan``."""
        enabled = list(self.config.enabled())  # type: ignore[attr-defined]
        total: dict[str, int] = {}
        for p in parts:
            for f, n in p["flag_counts"].items():
                total[f] = total.get(f, 0) + n
        names = enabled + sorted(f for f in total if f not in enabled)
        return {"flag_counts": {f: total.get(f, 0) for f in names},
                "rows_flagged": sum(p["rows_flagged"] for p in parts), **plan_stats}
