"""pass@k (unbiased estimator) and per-problem aggregates: n_correct, majority vote."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from .normalize import normalize, string_key


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"):
    1 - C(n-c, k) / C(n, k), computed as a stable product. Needs 0 <= c <= n and k >= 1;
    k > n is answered for k = n."""
    if n < 0 or c < 0 or c > n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (got n={n}, c={c}, k={k})")
    if n == 0:
        return 0.0
    k = min(k, n)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def answer_key(ans: str | None) -> str | None:
    """The key majority voting groups answers by: the normalised answer string."""
    if ans is None:
        return None
    if len(ans) > 1000:  # never normalise huge strings here (no timeout in this process)
        return ans
    return string_key(normalize(ans))


def problem_aggregates(df: pl.DataFrame, ks: Sequence[int] = (1, 4, 8)) -> pl.DataFrame:
    """One row per ``problem_id``: n_samples, n_correct, maj_answer, maj_count, maj_correct,
    ``pass@k`` for each k (k larger than n_samples uses k = n_samples)."""
    need = {"problem_id", "pred_answer", "correct"}
    missing = need - set(df.columns)
    if missing:
        from ..errors import SourceError

        raise SourceError(f"problem_aggregates: frame lacks column(s) {', '.join(sorted(missing))}")
    keyed = df.select("problem_id", "pred_answer", "correct").with_columns(
        pl.col("pred_answer").map_elements(answer_key, return_dtype=pl.Utf8).alias("_key"),
        pl.int_range(pl.len()).alias("_order"),
    )
    base = keyed.group_by("problem_id", maintain_order=True).agg(
        pl.len().alias("n_samples"), pl.col("correct").fill_null(False).sum().cast(pl.Int64).alias("n_correct")
    )
    votes = (
        keyed.filter(pl.col("_key").is_not_null())
        .group_by("problem_id", "_key")
        .agg(
            pl.len().alias("maj_count"),
            pl.col("_order").min().alias("_first"),
            pl.col("pred_answer").first().alias("maj_answer"),
            pl.col("correct").fill_null(False).any().alias("maj_correct"),
        )
        .sort(["problem_id", "maj_count", "_first"], descending=[False, True, False])
        .group_by("problem_id", maintain_order=True)
        .first()
        .select("problem_id", "maj_answer", "maj_count", "maj_correct")
    )
    out = base.join(votes, on="problem_id", how="left").with_columns(
        pl.col("maj_correct").fill_null(False), pl.col("maj_count").fill_null(0).cast(pl.Int64)
    )
    for k in ks:
        out = out.with_columns(
            pl.struct("n_samples", "n_correct")
            .map_elements(lambda s, k=k: pass_at_k(s["n_samples"], s["n_correct"], k), return_dtype=pl.Float64)
            .alias(f"pass@{k}")
        )
    return out
