"""Evaluation metrics over a verified sample frame (one row per sample).

Definitions (also in docs/eval.md):

* **pass@1**: per problem, the fraction of its samples that are correct (c / n); the benchmark
  score is the mean over problems. With n samples per problem this is the unbiased pass@1.
* **pass@k** (unbiased, Chen et al. 2021): per problem ``1 - C(n-c, k) / C(n, k)``, the chance that
  at least one of k samples drawn without replacement from the n is correct; mean over problems.
  Defined only where n >= k; problems with fewer samples are left out of that k and counted in
  ``n_problems_lt_k``.
* **maj@k**: per problem, the first k samples (by ``sample_index``) vote with their extracted answer
  (``pred_answer``, grouped by curate.verify's normalised answer key; samples without an answer do
  not vote). The problem scores the correctness of the winning answer. **Ties**: when several answers share the top count, the
  score is the fraction of the tied answers that are correct, i.e. the expected score of a uniform
  random tie break (deterministic, no seed). A problem where no sample produced an answer scores 0.
  Correct answers vote as one answer (they all equal the gold answer, whatever their spelling).
* **Confidence intervals**: percentile bootstrap over problems (numpy), resampling problems with
  replacement; ``paired_bootstrap_diff`` resamples the same problem indices for both runs.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

import numpy as np
import polars as pl

from ..verify.metrics import majority_score, pass_at_k_array  # the one definition (funnel and eval)

# ----------------------------------------------------------------------------- estimators


# ----------------------------------------------------------------------------- bootstrap


def bootstrap_means(values: np.ndarray, *, n_boot: int = 10000, seed: int = 0) -> np.ndarray:
    """``n_boot`` means of ``values`` resampled with replacement (chunked to bound memory)."""
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, min(n_boot, 5_000_000 // max(1, v.size)))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    return means


def _percentiles(boots: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    return _percentiles(bootstrap_means(v, n_boot=n_boot, seed=seed), level)


def paired_bootstrap_diff(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Paired bootstrap of mean(b) - mean(a) over aligned problems (same index = same problem).

    Resampling a problem takes its A and B scores together, i.e. it resamples d = b - a.
    Returns ``diff`` (the observed difference), ``lo``/``hi`` (percentile interval at ``level``) and
    ``p_le_0`` (the share of bootstrap differences <= 0, a one-sided bootstrap p-value for B > A).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.shape} vs {b.shape}")
    d = b - a
    if d.size == 0:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "p_le_0": math.nan}
    boots = bootstrap_means(d, n_boot=n_boot, seed=seed)
    lo, hi = _percentiles(boots, level)
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "p_le_0": float((boots <= 0).mean())}


# ----------------------------------------------------------------------------- frames

REQUIRED_COLUMNS = ("problem_id", "sample_index", "correct")


def _meta_fields(meta: str | None, fields: Iterable[str]) -> dict[str, Any]:
    try:
        m = json.loads(meta) if meta else {}
    except (TypeError, ValueError):
        m = {}
    if not isinstance(m, dict):
        m = {}
    return {f: (None if m.get(f) is None else str(m.get(f))) for f in fields}


def _with_metrics(g: pl.DataFrame, ks: Sequence[int], maj_ks: Sequence[int]) -> pl.DataFrame:
    """pass@k and maj@k columns from the grouped ``_oks``/``_answers`` lists (curate.verify.metrics)."""
    n = g["n_samples"].to_numpy()
    c = g["n_correct"].to_numpy()
    cols: dict[str, Any] = {"pass@1": c / n}
    for k in sorted(set(ks)):
        if k != 1:
            cols[f"pass@{k}"] = pass_at_k_array(n, c, k)
    if maj_ks:
        answers = g["_answers"].to_list()
        oks = g["_oks"].to_list()
        for k in sorted(set(maj_ks)):
            vals = []
            for ans, ok, ni in zip(answers, oks, n.tolist()):
                vals.append(majority_score(ans[:k], ok[:k])[0] if ni >= k else math.nan)
            cols[f"maj@{k}"] = np.asarray(vals, dtype=np.float64)
        cols["maj_answer"] = [majority_score(a, o)[1] for a, o in zip(answers, oks)]
    return g.drop([x for x in ("_oks", "_answers") if x in g.columns]).with_columns(
        [pl.Series(name, vals, dtype=pl.Float64 if name != "maj_answer" else pl.Utf8) for name, vals in cols.items()]
    )


def per_problem(
    samples: pl.DataFrame,
    *,
    ks: Sequence[int] = (1,),
    maj_ks: Sequence[int] = (),
    breakdown: Sequence[str] = (),
) -> pl.DataFrame:
    """One row per problem: n_samples, n_correct, pass@1, pass@k..., maj@k..., token and truncation stats.

    ``samples`` needs ``problem_id, sample_index, correct`` (+ ``pred_answer`` for maj@k;
    ``completion_tokens``, ``finish_reason``/``verdict``, ``reasoning_tokens`` and ``meta`` when present).
    ``breakdown`` names meta fields (e.g. subject, level) copied as columns.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"sample frame lacks column(s) {missing}")
    if maj_ks and "pred_answer" not in samples.columns:
        raise ValueError("maj@k needs a 'pred_answer' column (run verify first)")
    df = samples.sort(["problem_id", "sample_index"])
    has = set(df.columns)
    trunc_expr = pl.lit(False)
    if "finish_reason" in has:
        trunc_expr = trunc_expr | (pl.col("finish_reason").cast(pl.Utf8) == "length").fill_null(False)
    if "verdict" in has:
        trunc_expr = trunc_expr | (pl.col("verdict").cast(pl.Utf8) == "truncated").fill_null(False)
    df = df.with_columns(
        pl.col("correct").cast(pl.Boolean).fill_null(False).alias("_ok"),
        trunc_expr.alias("_trunc"),
    )
    aggs = [
        pl.len().alias("n_samples"),
        pl.col("_ok").sum().cast(pl.Int64).alias("n_correct"),
        pl.col("_trunc").mean().alias("truncated_rate"),
        pl.col("_ok").alias("_oks"),
    ]
    if "completion_tokens" in has:
        aggs.append(pl.col("completion_tokens").cast(pl.Float64).mean().alias("mean_completion_tokens"))
    if "reasoning_tokens" in has:
        aggs.append(pl.col("reasoning_tokens").cast(pl.Float64).mean().alias("mean_reasoning_tokens"))
    if "pred_answer" in has:
        aggs.append(pl.col("pred_answer").cast(pl.Utf8).alias("_answers"))
    if "meta" in has:
        aggs.append(pl.col("meta").cast(pl.Utf8).first().alias("_meta"))
    g = df.group_by("problem_id", maintain_order=True).agg(aggs)

    out = _with_metrics(g, ks, maj_ks)
    if breakdown:
        metas = out["_meta"].to_list() if "_meta" in out.columns else [None] * out.height
        rows = [_meta_fields(m, breakdown) for m in metas]
        out = out.with_columns([pl.Series(f, [r[f] for r in rows], dtype=pl.Utf8) for f in breakdown])
    if "_meta" in out.columns:
        out = out.drop("_meta")
    return out


def metric_columns(problems: pl.DataFrame) -> list[str]:
    """The score columns of a per-problem frame, in report order (pass@1, pass@k..., maj@k...)."""

    def key(c: str) -> tuple[int, int]:
        kind, _, k = c.partition("@")
        return ({"pass": 0, "maj": 1}[kind], int(k))

    return sorted((c for c in problems.columns if c.startswith(("pass@", "maj@"))), key=key)


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def summarize(
    problems: pl.DataFrame, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95, breakdown: Sequence[str] = ()
) -> dict[str, Any]:
    """Benchmark-level numbers from a per-problem frame: each metric with a bootstrap CI, plus
    token/truncation means and a per-group breakdown for each ``breakdown`` column."""
    out: dict[str, Any] = {
        "n_problems": problems.height,
        "n_samples": int(problems["n_samples"].sum()) if problems.height else 0,
        "metrics": {},
    }
    n = problems["n_samples"].to_numpy() if problems.height else np.zeros(0)
    for col in metric_columns(problems):
        vals = problems[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed, level=level)
        k = int(col.partition("@")[2])
        out["metrics"][col] = {
            "value": _nanmean(vals),
            "ci_low": None if math.isnan(lo) else lo,
            "ci_high": None if math.isnan(hi) else hi,
            "n_problems": int((~np.isnan(vals)).sum()),
            "n_problems_lt_k": int((n < k).sum()),
        }
    out["ci_level"] = level
    # sample-weighted means (every sample counts once)
    w = n.astype(np.float64)
    for col in ("mean_completion_tokens", "mean_reasoning_tokens", "truncated_rate"):
        if col in problems.columns and problems.height:
            v = problems[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
            ok = ~np.isnan(v)
            out[col] = float(np.average(v[ok], weights=w[ok])) if ok.any() else None
    if breakdown:
        out["breakdown"] = {}
        mcols = metric_columns(problems)
        for field in breakdown:
            if field not in problems.columns or problems[field].null_count() == problems.height:
                continue
            groups = (
                problems.group_by(field)
                .agg([pl.len().alias("n_problems")] + [pl.col(m).fill_nan(None).mean().alias(m) for m in mcols])
                .sort(field, nulls_last=True)
            )
            out["breakdown"][field] = groups.to_dicts()
    return out
