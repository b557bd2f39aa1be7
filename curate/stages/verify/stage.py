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

import math
from typing import Any

import polars as pl

from ...columns import ROW_ID
from ...errors import CurateError, RecipeError
from ...verify import VERDICTS, VerifyConfig, problem_aggregates
from ..base import Context, Stage, mark_drop
from .config import VerifyStageConfig  # noqa: F401
from .kernels import VerifyKernel, check_columns


def missing_gold(df: pl.DataFrame) -> int:
    """Rows without a gold answer (null or blank)."""
    gold = df["gold_answer"].cast(pl.Utf8) if "gold_answer" in df.columns else pl.Series([None] * df.height, dtype=pl.Utf8)
    return int((gold.is_null() | (gold.str.strip_chars() == "")).sum())


def check_gold(df: pl.DataFrame, allow: bool, label: str) -> None:
    """RecipeError when more than half of the rows have no gold answer (unless ``allow``)."""
    if not allow and df.height:
        _refuse_missing_gold(missing_gold(df), df.height, label)


def _refuse_missing_gold(missing: int, rows: int, label: str) -> None:
    if 2 * missing > rows:
        raise RecipeError(
            f"stage '{label}': {missing} of {rows} rows ({100 * missing / rows:.0f}%) have no gold answer, "
            "so every verdict would be no_gold; map the gold column in the source (fields: {gold_answer: COLUMN}) "
            "or set allow_missing_gold: true on the verify stage"
        )


class VerifyStage(Stage):
    name = "verify"
    Config = VerifyStageConfig
    version = "3"
    requires = ("gold_answer",)
    produces = ("pred_answer", "verdict", "correct", "n_correct", "maj_answer", "maj_score", "maj_correct")
    scope = "problem"  # verdicts are per row, the aggregates per problem; the frame-wide stats merge exactly

    def merge_stats(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Counts add (verdicts, pool counters); problems, pass@k (k <= the median samples per problem),
        maj@k and the mean samples per problem are recomputed from the parts' per-problem tallies."""
        tallies = [p.get("_merge") or {} for p in parts]
        golds = [t["gold"] for t in tallies if "gold" in t]
        if golds and not golds[0]["allow"]:
            _refuse_missing_gold(sum(g["missing_gold"] for g in golds), sum(g["rows"] for g in golds), golds[0]["label"])
        out = merge_counts([{k: v for k, v in p.items() if k != "_merge"} for p in parts])
        if len(parts) == 1:
            return out
        if any("problems" in p and "n_c" not in t for p, t in zip(parts, tallies)):
            raise CurateError(f"stage {self.name}: a shard's stats lack the per-problem tallies (_merge) to merge")
        for k in [k for k in out if k == "problems" or k.startswith("pass@") or k in ("maj@k", "mean_samples_per_problem")]:
            del out[k]
        tally: dict[str, dict[str, int]] = {"n_c": {}, "maj": {}}
        for t in tallies:
            for part in ("n_c", "maj"):
                for key, n in (t or {}).get(part, {}).items():
                    tally[part][key] = tally[part].get(key, 0) + int(n)
        out.update(_summary(tally, self.config.pass_k))  # type: ignore[attr-defined]
        return out

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg: VerifyConfig = self.config  # type: ignore[assignment]
        label, allow = ctx.stage_label or self.name, bool(getattr(cfg, "allow_missing_gold", False))
        if ROW_ID not in df.columns:
            check_gold(df, allow, label)
        # under the sharded runner (rows carry __rid) a shard is only part of the frame: the share of rows
        # without gold is judged over every shard in merge_stats (a shard alone may be mostly ungraded)
        gold = {"missing_gold": missing_gold(df), "rows": df.height, "allow": allow, "label": label}
        check_columns(df)
        # the per-row judging is the kernel (an engine may run it anywhere); the aggregates: here
        judged = ctx.map(VerifyKernel(cfg), df)
        counts = judged.get_column("verdict").value_counts()
        n_of = dict(zip(counts["verdict"].to_list(), counts["count"].to_list()))
        ctx.stats.setdefault("verdicts", {}).update({v: int(n_of.get(v, 0)) for v in VERDICTS})
        ctx.stats["_merge"] = {"gold": gold}
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
        # the frame-wide numbers come from per-problem tallies (carried in "_merge"), so the stats of a
        # sharded run (merge_stats) are exactly those of one run over the whole frame
        tally = _tally(agg)
        ctx.stats.update(_summary(tally, cfg.pass_k))
        ctx.stats["_merge"].update(tally)
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


def _tally(agg: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Per-problem tallies of a verified frame: problems per (n_samples, n_correct) pair ("n,c") and per
    majority score (its repr); everything the frame-wide stats need, and they add over shards."""
    nc = agg.group_by("n_samples", "n_correct").len().sort("n_samples", "n_correct")
    maj = agg.group_by("maj_score").len().sort("maj_score")
    return {
        "n_c": {f"{n},{c}": int(k) for n, c, k in nc.iter_rows()},
        "maj": {repr(float(m)): int(k) for m, k in maj.iter_rows()},
    }


def _summary(tally: dict[str, dict[str, int]], ks: Any) -> dict[str, Any]:
    """problems, pass@k, maj@k and mean_samples_per_problem from the per-problem tallies (deterministic:
    exact sums rounded once, so a sharded run's merged stats equal the whole run's)."""
    from ...verify.metrics import pass_at_k

    pairs = sorted(((tuple(int(x) for x in key.split(",")), n) for key, n in tally["n_c"].items()))
    problems = sum(n for _, n in pairs)
    if problems == 0:
        return {}
    out: dict[str, Any] = {"problems": problems}
    # pass@k only for k <= the samples per problem (the median, so one problem with extra samples,
    # e.g. an exact duplicate merged at load, does not put pass@8 in a 4-sample funnel)
    lo, hi = (problems - 1) // 2, problems // 2  # the median of n_samples, as polars computes it
    seen, a, b = 0, None, None
    for (ns, _), n in pairs:
        if a is None and seen + n > lo:
            a = ns
        if b is None and seen + n > hi:
            b = ns
        seen += n
    n_typical = (float(a) + float(b)) / 2.0
    for k in ks:  # over the problems with k samples or more (curate.verify.metrics)
        terms = [n * pass_at_k(ns, c, k) for (ns, c), n in pairs if ns >= k]
        if terms and k <= n_typical:
            out[f"pass@{k}"] = round(math.fsum(terms) / sum(n for (ns, _), n in pairs if ns >= k), 6)
    out["maj@k"] = round(math.fsum(float(m) * n for m, n in tally["maj"].items()) / problems, 6)
    out["mean_samples_per_problem"] = round(sum(ns * n for (ns, _), n in pairs) / problems, 3)
    return out


def merge_counts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Stats of disjoint parts combined key by key (first-seen key order): numbers add, dicts merge the same
    way, and anything else is kept when every part agrees (else the first part's value)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for p in parts for k in p):
        vals = [p[key] for p in parts if key in p]
        if all(isinstance(v, bool) for v in vals) or not all(isinstance(v, (int, float, dict)) for v in vals):
            out[key] = vals[0]
        elif all(isinstance(v, dict) for v in vals):
            out[key] = merge_counts(vals)
        elif all(isinstance(v, (int, float)) for v in vals):
            out[key] = sum(vals)
        else:
            out[key] = vals[0]
    return out
