"""``sample``: problems -> teacher traces (one row per sample). A thin wrapper over
:func:`curate.sampling.sample_rows`; see that module for durability, retries and budgets.

Requests that failed after their retries stay as rows (``finish_reason: error``, ``error`` text)
and are moved to the ``rejected`` split with ``drop_reason: teacher_error``, never silently dropped.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl

from ...sampling import SAMPLE_COLUMNS, SampleConfig
from ..base import Context, Stage, StageConfig
from .config import SampleStageConfig  # noqa: F401


class SampleStage(Stage):
    name: ClassVar[str] = "sample"
    Config: ClassVar[type[StageConfig]] = SampleStageConfig
    version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ("problem_id", "problem")
    produces: ClassVar[tuple[str, ...]] = SAMPLE_COLUMNS

    config: SampleStageConfig

    def fingerprint(self, ctx: Context) -> str | None:
        """The teacher's identity by content (a local model folder's files), so that a teacher retrained
        in place recomputes the stage instead of serving the old samples from the cache."""
        from ...sampling import teacher_fingerprint

        return teacher_fingerprint(self.config.teacher)

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        from ...sampling import finish_stage_sampling, sample_rows

        cfg = SampleConfig.model_validate(self.config.model_dump(exclude={"type", "label"}))
        out = sample_rows(df, cfg, ctx, log_name="sample")
        # flat numbers in the funnel; failed requests -> teacher_error, not cached (a re-run retries them)
        return finish_stage_sampling(out, ctx, "sample", flatten=True)
