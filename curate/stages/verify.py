"""The ``verify`` stage: did each teacher sample reach the gold answer?

    - type: verify
      mode: annotate          # or filter: non-correct rows go to `rejected` (reason = verdict)
      timeout_s: 5            # CPU seconds per item (one retry at 2x); wall clock only as a backstop
      num_proc: 2             # default: the run's num_proc
      extract: [choice, final_answer, boxed, answer_tag, answer, hash, whole, math_verify, last_number]
      rules: {units: true, unordered: auto}   # every normalisation can be switched off

Adds ``pred_answer, verdict, correct`` and, per problem (broadcast to its rows), ``n_correct,
maj_answer, maj_score, maj_correct``; puts verdict counts, pass@k (k <= samples) and maj@k into
``ctx.stats`` (one definition with `curate eval`: curate/verify/metrics.py).
See docs/verify.md.
"""

from __future__ import annotations

import polars as pl

from ..errors import RecipeError
from ..verify import VERDICTS, VerifyConfig, problem_aggregates
from ..verify.frame import VerifyKernel, check_columns
from .base import Context, Stage, mark_drop


class VerifyStageConfig(VerifyConfig):
    allow_missing_gold: bool = False
    """Run when most rows have no gold answer (their verdict is ``no_gold``). Default: stop, since a
    source whose ``fields`` map misses the gold column would otherwise pass every trace ungraded."""


def check_gold(df: pl.DataFrame, allow: bool, label: str) -> None:
    """RecipeError when more than half of the rows have no gold answer (unless ``allow``)."""
    if allow or df.height == 0:
        return
    gold = df["gold_answer"].cast(pl.Utf8) if "gold_answer" in df.columns else pl.Series([None] * df.height, dtype=pl.Utf8)
    missing = int((gold.is_null() | (gold.str.strip_chars() == "")).sum())
    if 2 * missing > df.height:
        raise RecipeError(
            f"stage '{label}': {missing} of {df.height} rows ({100 * missing / df.height:.0f}%) have no gold answer, "
            "so every verdict would be no_gold; map the gold column in the source (fields: {gold_answer: COLUMN}) "
            "or set allow_missing_gold: true on the verify stage"
        )


class VerifyStage(Stage):
    name = "verify"
    Config = VerifyStageConfig
    version = "3"
    requires = ("gold_answer",)
    produces = ("pred_answer", "verdict", "correct", "n_correct", "maj_answer", "maj_score", "maj_correct")

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg: VerifyConfig = self.config  # type: ignore[assignment]
        check_gold(df, getattr(cfg, "allow_missing_gold", False), ctx.stage_label or self.name)
        check_columns(df)
        # the per-row judging is the kernel (an engine may run it anywhere); the aggregates: here
        judged = ctx.map(VerifyKernel(cfg), df)
        counts = judged.get_column("verdict").value_counts()
        n_of = dict(zip(counts["verdict"].to_list(), counts["count"].to_list()))
        ctx.stats.setdefault("verdicts", {}).update({v: int(n_of.get(v, 0)) for v in VERDICTS})
        out = df.with_columns(judged.get_columns())
        if out.height == 0:
            return out.with_columns(
                pl.lit(None, dtype=pl.Int64).alias("n_correct"),
                pl.lit(None, dtype=pl.Utf8).alias("maj_answer"),
                pl.lit(None, dtype=pl.Float64).alias("maj_score"),
                pl.lit(None, dtype=pl.Boolean).alias("maj_correct"),
            )
        pid = "problem_id" if "problem_id" in out.columns else None
        if pid is None:
            out = out.with_columns(pl.col("gold_answer").cast(pl.Utf8).fill_null("").alias("problem_id"))
        agg = problem_aggregates(out, cfg.pass_k)
        ctx.stats["problems"] = agg.height
        # pass@k only for k <= the samples per problem (the median, so one problem with extra samples,
        # e.g. an exact duplicate merged at load, does not put pass@8 in a 4-sample funnel)
        n_typical = float(agg["n_samples"].median()) if agg.height else 0.0
        for k in cfg.pass_k:  # computed over the problems with k samples (curate.verify.metrics)
            vals = agg[f"pass@{k}"].drop_nans().drop_nulls()
            if vals.len() and k <= n_typical:
                ctx.stats[f"pass@{k}"] = round(float(vals.mean()), 6)
        ctx.stats["maj@k"] = round(float(agg["maj_score"].mean()), 6)
        ctx.stats["mean_samples_per_problem"] = round(float(agg["n_samples"].mean()), 3)
        drop = [c for c in ("n_correct", "maj_answer", "maj_score", "maj_correct") if c in out.columns]
        out = out.drop(drop).join(
            agg.select("problem_id", "n_correct", "maj_answer", "maj_score", "maj_correct"),
            on="problem_id",
            how="left",
            maintain_order="left",  # polars 2 does not keep the left order of a join by default
        )
        if pid is None:
            out = out.drop("problem_id")
        if cfg.mode == "filter":
            out = mark_drop(out, ~pl.col("correct"), pl.col("verdict"))
        return out
