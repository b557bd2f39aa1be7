"""``sample``: problems -> teacher traces (one row per sample). A thin wrapper over
:func:`curate.sampling.sample_rows`; see that module for durability, retries and budgets.

Requests that failed after their retries stay as rows (``finish_reason: error``, ``error`` text)
and are moved to the ``rejected`` split with ``drop_reason: teacher_error``, never silently dropped.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl

from ..sampling import SAMPLE_COLUMNS, SampleConfig
from .base import Context, Stage, StageConfig, mark_drop


class SampleStageConfig(StageConfig, SampleConfig):
    type: Literal["sample"] = "sample"


class SampleStage(Stage):
    name: ClassVar[str] = "sample"
    Config: ClassVar[type[StageConfig]] = SampleStageConfig
    version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ("problem_id", "problem")
    produces: ClassVar[tuple[str, ...]] = SAMPLE_COLUMNS

    config: SampleStageConfig

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        from ..sampling import sample_rows

        cfg = SampleConfig.model_validate(self.config.model_dump(exclude={"type", "label"}))
        out = sample_rows(df, cfg, ctx, log_name="sample")
        # flat numbers show in the funnel (token totals, requests from the log / sent / failed)
        stats = ctx.stats.pop("sample", {})
        stats.pop("log", None)  # a local path: not for the published manifest
        ctx.stats.update(stats)
        if out.height and bool((out["finish_reason"] == "error").any()):
            ctx.cacheable = False  # a re-run retries the failed requests (finished ones come from the log)
        return mark_drop(out, pl.col("finish_reason") == "error", "teacher_error")
