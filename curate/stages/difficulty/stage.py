"""``difficulty``: score each problem, bucket it, and filter traces by pass rate.

Methods (combined by weighted rank, higher = harder):
  * ``pass_rate``: share of correct samples, from the teacher's own verdicts (``source: teacher``)
    or from a probe model sampled ``probe.n`` times per problem (``source: probe``), with a
    Wilson score interval so 1/2 and 50/100 are not treated alike (``estimate: lower`` ranks by the
    pessimistic bound);
  * ``length``: median tokens of the correct teacher traces: ``completion_tokens`` where the sampler
    recorded them, else counted (``tokenizer:`` when given, else the audit's documented
    approximation ``approx-regex``), so existing traces (``traces`` sources) have a length too;
  * ``judge``: an LLM rates difficulty 1-10; unparseable replies are counted in the stats.

Ties (e.g. most problems at 8/8) are broken by the other signals: the median correct-trace length,
then the mean length of all traces (longer = harder), so equal-count buckets are not left empty. A
bucket that still comes out empty, and a method without signal (every problem scores the same, or
none has a value), are reported in ``stats["warnings"]`` (printed under the funnel).

Filters (all optional, rows are marked, never deleted): a pass-rate window, unsolved problems,
incorrect traces, at most m correct traces per problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

import numpy as np
import polars as pl

from ... import difficulty as D
from ...columns import PROBLEM_COLUMNS  # noqa: E402  (the data contract)
from ...errors import RecipeError
from ...verify import VerifyConfig
from ..base import DROP, ORDER, Context, Planned, Stage, StageConfig, mark_drop
from .config import (  # noqa: F401
    DEFAULT_JUDGE_PROMPT,
    UNGRADED_VERDICTS,
    Buckets,
    DifficultyConfig,
    JudgeMethod,
    LengthMethod,
    PassRateMethod,
)

TOKENS = "__difficulty_tokens"
"""Hidden Float64 that ``map_shard`` adds: each row's tokens (completion_tokens, else counted from its
text; null where neither exists), so the global ``run`` does not read the traces. ``run`` drops it."""
TEXT_COLUMNS = ("reasoning", "answer_text")

OUT_COLUMNS = ("n_samples", "pass_rate", "pass_rate_low", "pass_rate_high", "difficulty", "difficulty_bucket")


class DifficultyStage(Planned, Stage):
    name: ClassVar[str] = "difficulty"
    Config: ClassVar[type[StageConfig]] = DifficultyConfig
    version: ClassVar[str] = "3"  # 2: row keys without frame positions; map_shard token counts (shard contract);
    # 3: planned (per-problem summaries per shard); prefer: random by a per-row keyed hash, not a rank over all rows
    requires: ClassVar[tuple[str, ...]] = ("problem_id",)
    produces: ClassVar[tuple[str, ...]] = OUT_COLUMNS

    config: DifficultyConfig

    # ------------------------------------------------------------------ shard contract
    def reads(self, columns: list[str]) -> list[str] | None:
        """problem_id, the verdict columns, a stale judge_score (run removes it), the token counts (``__difficulty_tokens`` after ``map_shard``, else
        completion_tokens and the trace text to count from), the row keys when traces are capped, and the
        problem's own columns only when a probe or judge samples it or unsolved problems are written out."""
        cfg = self.config
        want = ["problem_id", "correct", "verdict", "finish_reason", DROP, "completion_tokens", "judge_score"]
        want += [TOKENS] if TOKENS in columns else list(TEXT_COLUMNS)
        if cfg.max_correct_per_problem is not None:
            want += D.key_columns(columns)
        samples = any(isinstance(m, JudgeMethod) or (isinstance(m, PassRateMethod) and m.source == "probe")
                      for m in cfg.methods)
        if samples or cfg.unsolved == "resample":
            want += list(PROBLEM_COLUMNS)
        return [c for c in dict.fromkeys(want) if c in columns]

    def map_shard(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """Phase 1 (per shard, every column): each row's token count in ``__difficulty_tokens``."""
        tokens, _ = self._with_lengths(df.drop([c for c in (TOKENS, "_tokens") if c in df.columns]))
        return df.with_columns(tokens["_tokens"].alias(TOKENS))

    # ------------------------------------------------------------------ run: summarize, plan, apply
    # (Planned: per shard one row per problem goes to ``plan``, which scores and buckets the problems;
    # ``apply`` joins the scores onto each shard's rows and filters them; no step holds every row)

    def _prepare(self, df: pl.DataFrame, label: str) -> pl.DataFrame:
        if "problem_id" not in df.columns:
            raise RecipeError(f"stage '{label}': the input has no 'problem_id' column")
        return df.drop([c for c in (*OUT_COLUMNS, "judge_score") if c in df.columns])

    def summarize(self, df: pl.DataFrame, ctx: Context) -> dict[str, Any]:
        """One row per problem of this shard (its columns, first position, verdict tallies and length
        signals) and the rows' token-count tallies."""
        label = ctx.stage_label or self.name
        df = self._prepare(df, label)
        self._check_methods(df, label)
        order = pl.col(ORDER) if ORDER in df.columns else pl.int_range(pl.len(), dtype=pl.Int64)
        df = df.with_columns(order.alias(ORDER))
        probs = self._problems(df).join(df.group_by("problem_id").agg(pl.col(ORDER).min()), on="problem_id",
                                        how="left", maintain_order="left")
        df, counts = self._with_lengths(df)
        if "correct" in df.columns:
            probs = probs.join(_aggregate(df), on="problem_id", how="left", maintain_order="left")
        probs = probs.join(D.length_signals(df), on="problem_id", how="left", maintain_order="left")
        return {"problems": probs, "counts": counts, "correct": "correct" in df.columns}

    def plan(self, parts: list[dict[str, Any]], ctx: Context) -> pl.DataFrame:
        """Score, tie-break and bucket every problem (in the dataset's order); the unsolved ones."""
        cfg = self.config
        probs = pl.concat([p["problems"] for p in parts], how="diagonal_relaxed").sort(ORDER).drop(ORDER)
        has_correct = any(p["correct"] for p in parts)
        n_missing, counted, height = (sum(p["counts"][k] for p in parts) for k in range(3))
        stats: dict[str, Any] = {"problems": probs.height,
                                 "length_tokens": self._how(n_missing, height) if counted else "completion_tokens"}
        warnings: list[str] = []
        pass_src = next((m.source for m in cfg.methods if isinstance(m, PassRateMethod)), "teacher")
        if any(isinstance(m, PassRateMethod) and m.source == "probe" for m in cfg.methods):
            probe = self._probe(probs, ctx, stats)
            probs = probs.join(probe.with_columns(pl.col("problem_id").cast(probs.schema["problem_id"])),
                               on="problem_id", how="left", maintain_order="left")
        if any(isinstance(m, JudgeMethod) for m in cfg.methods):
            judge = self._judge(probs, ctx, stats)
            probs = probs.join(judge.with_columns(pl.col("problem_id").cast(probs.schema["problem_id"])),
                               on="problem_id", how="left", maintain_order="left")
        probs = D.pass_rate_columns(probs, pass_src, cfg.confidence)
        combined = self._combine(probs, warnings)
        probs = probs.with_columns(pl.Series("difficulty", D.break_ties(combined, probs, stats), dtype=pl.Float64))
        probs = self._bucket(probs, stats, warnings)
        unsolved = pl.lit(False)
        if has_correct and cfg.unsolved != "keep":
            unsolved = (pl.col("teacher_n") > 0) & (pl.col("teacher_c") == 0)
            self._unsolved(probs.filter(unsolved), ctx, stats)
        pr = probs["pass_rate"].drop_nulls()
        stats["pass_rate_source"] = pass_src
        stats["pass_rate_mean"] = round(float(pr.mean()), 4) if pr.len() else None
        stats["methods"] = [m.model_dump() for m in cfg.methods]
        if warnings:
            stats["warnings"] = warnings
        ctx.stats.update(stats)
        keep_cols = ["problem_id", *OUT_COLUMNS, *(["judge_score"] if "judge_score" in probs.columns else [])]
        return probs.select(*keep_cols, unsolved.fill_null(False).alias("_unsolved"))

    def apply(self, df: pl.DataFrame, plan: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """The problems' scores on each row, and the row filters."""
        df = self._prepare(df, ctx.stage_label or self.name)
        df, _ = self._with_lengths(df)
        plan = plan.with_columns(pl.col("problem_id").cast(df.schema["problem_id"]))
        out = df.join(plan, on="problem_id", how="left", maintain_order="left")
        out = self._filter(out, ctx).drop([c for c in ("_tokens", TOKENS, "_unsolved") if c in out.columns])
        return out

    def _check_methods(self, df: pl.DataFrame, label: str) -> None:
        """Each method's input columns are there (a clear recipe error before any work)."""
        cfg = self.config
        has_correct = "correct" in df.columns
        for m in cfg.methods:
            if isinstance(m, PassRateMethod) and m.source == "teacher" and not has_correct:
                raise RecipeError(
                    f"stage '{label}': methods: pass_rate with source: teacher needs verified samples (column 'correct'); "
                    "add a verify stage before it or use source: probe"
                )
            if isinstance(m, LengthMethod) and not (
                has_correct and ({"completion_tokens", "reasoning", "answer_text"} & set(df.columns))
            ):
                raise RecipeError(
                    f"stage '{label}': methods: length needs column 'correct' and the traces "
                    "('completion_tokens', or 'reasoning'/'answer_text' to count)"
                )

    def _with_lengths(self, df: pl.DataFrame) -> tuple[pl.DataFrame, tuple[int, int, int]]:
        """``_tokens`` per row: completion_tokens, else counted from reasoning + answer_text; and (rows
        without completion_tokens, rows counted from text, rows)."""
        from ...audit.flags import count_tokens

        if TOKENS in df.columns:  # counted by map_shard: the same numbers
            df = df.with_columns(pl.col(TOKENS).cast(pl.Float64).alias("_tokens"))
            given = df["completion_tokens"].is_not_null() if "completion_tokens" in df.columns else pl.Series([False] * df.height)
            n_missing = df.height - int(given.sum())
            return df, (n_missing, int((~given & df["_tokens"].is_not_null()).sum()), df.height)
        have = (
            pl.col("completion_tokens").cast(pl.Float64)
            if "completion_tokens" in df.columns
            else pl.lit(None, dtype=pl.Float64)
        )
        df = df.with_columns(have.alias("_tokens"))
        missing = df["_tokens"].is_null()
        n_missing = int(missing.sum())
        text_cols = [c for c in ("reasoning", "answer_text") if c in df.columns]
        if n_missing == 0 or not text_cols or df.height == 0:
            return df, (n_missing, 0, df.height)
        texts = df.select(
            pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in text_cols], separator="\n")
        ).to_series()
        counted = count_tokens(texts.filter(missing), self.config.tokenizer).astype("float64")
        vals = df["_tokens"].to_numpy().astype("float64").copy()
        vals[missing.to_numpy()] = counted
        return df.with_columns(pl.Series("_tokens", vals, dtype=pl.Float64)), (n_missing, n_missing, df.height)

    def _how(self, n_missing: int, height: int) -> str:
        how = f"tokenizer:{self.config.tokenizer}" if self.config.tokenizer else "approx-regex"
        if n_missing < height:
            how = f"completion_tokens + {how} ({n_missing} rows counted)"
        return how

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _problems(df: pl.DataFrame) -> pl.DataFrame:
        cols = [c for c in PROBLEM_COLUMNS if c in df.columns]
        probs = df.select(cols).unique(subset="problem_id", keep="first", maintain_order=True)
        # one row per problem now: problem-constant text handed over as Categorical becomes plain text
        return probs.with_columns(pl.col(c).cast(pl.Utf8) for c in cols
                                  if c != "problem_id" and probs.schema[c] == pl.Categorical)

    def _probe(self, probs: pl.DataFrame, ctx: Context, stats: dict) -> pl.DataFrame:
        from ...sampling import finish_stage_sampling, sample_rows
        from ...verify import verify_frame

        cfg = self.config
        src = probs.select([c for c in PROBLEM_COLUMNS if c in probs.columns])
        if src.height == 0:
            return pl.DataFrame(schema={"problem_id": probs.schema["problem_id"], "probe_n": pl.Int64, "probe_c": pl.Int64})
        if "gold_answer" not in src.columns:
            raise RecipeError(f"stage '{ctx.stage_label or self.name}': probe: source: probe needs a 'gold_answer' column to verify against")
        rows = finish_stage_sampling(sample_rows(src, cfg.probe, ctx, log_name="difficulty_probe"), ctx, "difficulty_probe")
        sub = dataclasses.replace(ctx, stats={})  # verify's own stats go under probe_verify
        rows = verify_frame(rows, cfg.probe_verify or VerifyConfig(), sub)
        agg = _aggregate(rows).rename({"teacher_n": "probe_n", "teacher_c": "probe_c"})
        stats["probe_samples"] = rows.height
        stats["probe_verify"] = sub.stats
        return agg

    def _judge(self, probs: pl.DataFrame, ctx: Context, stats: dict) -> pl.DataFrame:
        from ...sampling import finish_stage_sampling, sample_rows

        cfg = self.config
        src = probs.select([c for c in PROBLEM_COLUMNS if c in probs.columns])
        if src.height == 0:
            return pl.DataFrame(schema={"problem_id": probs.schema["problem_id"], "judge_score": pl.Float64})
        judge_cfg = cfg.judge
        if "user_template" not in judge_cfg.model_fields_set:
            judge_cfg = judge_cfg.model_copy(update={"user_template": DEFAULT_JUDGE_PROMPT})
        rows = finish_stage_sampling(sample_rows(src, judge_cfg, ctx, log_name="difficulty_judge"), ctx, "difficulty_judge")
        texts = rows["answer_text"].to_list() if "answer_text" in rows.columns else [None] * rows.height
        scores = [D.parse_judge_score(t) for t in texts]
        scored = rows.select("problem_id").with_columns(pl.Series("_judge", scores, dtype=pl.Float64))
        failed = rows["finish_reason"].to_list() if "finish_reason" in rows.columns else [None] * rows.height
        stats["judge_replies"] = len(scores)
        stats["judge_unparseable"] = sum(s is None for s in scores)
        stats["judge_failed_requests"] = sum(f == "error" for f in failed)
        return scored.group_by("problem_id").agg(pl.col("_judge").mean().alias("judge_score"))

    def _combine(self, probs: pl.DataFrame, warnings: list[str]) -> np.ndarray:
        cfg = self.config
        raws: list[list[float | None]] = []
        weights: list[float] = []
        for m in cfg.methods:
            if isinstance(m, PassRateMethod):
                n, c = probs[f"{m.source}_n"].to_list(), probs[f"{m.source}_c"].to_list()
                vals: list[float | None] = []
                for ni, ci in zip(n, c):
                    if not ni:
                        vals.append(None)
                        continue
                    if m.estimate == "point":
                        p = ci / ni
                    else:
                        lo, hi = D.wilson_interval(int(ci), int(ni), cfg.confidence)
                        p = lo if m.estimate == "lower" else hi
                    vals.append(1.0 - p)
            elif isinstance(m, LengthMethod):
                toks = probs["median_correct_tokens"].to_list()
                vals = [None if t is None else math.log1p(float(t)) for t in toks]
                if cfg.combine == "score":
                    vals = D.minmax(vals)
            else:
                js = probs["judge_score"].to_list()
                vals = [None if s is None else (float(s) - 1.0) / 9.0 for s in js]
            present = {round(v, 12) for v in vals if v is not None}
            if probs.height > 1 and len(present) <= 1:
                why = "no problem has a value" if not present else f"all {sum(v is not None for v in vals)} problems score the same"
                warnings.append(f"method {m.method}: no signal ({why}); it does not separate problems")
            raws.append(vals)
            weights.append(m.weight)
        if cfg.combine == "rank":
            return D.combine_ranks(raws, weights)
        num = np.zeros(probs.height)
        den = np.zeros(probs.height)
        for vals, w in zip(raws, weights):
            arr = np.array([np.nan if v is None else v for v in vals], dtype=float)
            ok = ~np.isnan(arr)
            num[ok] += w * arr[ok]
            den[ok] += w
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def _bucket(self, probs: pl.DataFrame, stats: dict, warnings: list[str]) -> pl.DataFrame:
        b = self.config.buckets
        diff = probs["difficulty"].to_list()
        diff = [None if d is None or math.isnan(d) else d for d in diff]
        probs = probs.with_columns(pl.Series("difficulty", diff, dtype=pl.Float64))
        edges = list(b.edges) if b.edges is not None else D.quantile_edges([d for d in diff if d is not None], b.count)
        names = b.names()
        idx = D.assign_buckets(diff, edges)
        labels = [None if i is None else names[i] for i in idx]
        stats["bucket_edges"] = [round(e, 6) for e in edges]
        stats["bucket_counts"] = {n: labels.count(n) for n in names}
        stats["no_difficulty_signal"] = sum(d is None for d in diff)
        scored = sum(d is not None for d in diff)
        empty = [n for n in names if stats["bucket_counts"][n] == 0]
        if empty and scored >= len(names):
            warnings.append(
                f"buckets: {', '.join(empty)} empty ({scored} problems, "
                f"{len({d for d in diff if d is not None})} distinct difficulties): nothing separates the tied problems"
            )
        return probs.with_columns(pl.Series("difficulty_bucket", labels, dtype=pl.Utf8))

    def _unsolved(self, rows: pl.DataFrame, ctx: Context, stats: dict) -> None:
        """Count the unsolved problems (graded teacher samples, none correct); with ``resample``, write them."""
        stats["unsolved_problems"] = rows.height
        if self.config.unsolved == "resample":
            path = ctx.stage_dir() / "unsolved.jsonl"
            rows = rows.select([c for c in PROBLEM_COLUMNS if c in rows.columns])
            with open(path, "w", encoding="utf-8") as f:
                for r in rows.iter_rows(named=True):
                    f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
            stats["unsolved_file"] = str(path)

    def _filter(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg = self.config
        has_correct = "correct" in df.columns
        if DROP not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias(DROP))
        graded = _graded_expr(df)
        if has_correct and cfg.unsolved != "keep":  # decided per problem by the plan
            df = mark_drop(df, pl.col("_unsolved").fill_null(False), "unsolved")
        # pass-rate window
        if cfg.min_pass_rate is not None:
            test = pl.col("pass_rate") if cfg.window == "point" else pl.col("pass_rate_high")
            df = mark_drop(df, test.is_not_null() & (test < cfg.min_pass_rate), "pass_rate_below_window")
        if cfg.max_pass_rate is not None:
            test = pl.col("pass_rate") if cfg.window == "point" else pl.col("pass_rate_low")
            df = mark_drop(df, test.is_not_null() & (test > cfg.max_pass_rate), "pass_rate_above_window")
        # trace-level filters
        if has_correct:
            if not cfg.keep_incorrect:
                df = mark_drop(df, graded & (pl.col("correct") == False), "incorrect_trace")  # noqa: E712
            if not cfg.keep_ungraded:
                df = mark_drop(df, ~graded, "ungraded_trace")
            if cfg.max_correct_per_problem is not None:
                df = self._cap_correct(df, graded, ctx)
        return df

    def _cap_correct(self, df: pl.DataFrame, graded: pl.Expr, ctx: Context) -> pl.DataFrame:
        cfg = self.config
        seed = ctx.seed if cfg.seed is None else cfg.seed
        df = df.with_row_index("_row")
        stable = D.stable_row_key_series(df)
        rand = D.keyed_random(stable, seed, "max_correct_per_problem")  # per row: the same in any shard
        length = pl.col("_tokens") if "_tokens" in df.columns else pl.lit(0.0)
        df = df.with_columns(pl.Series("_rand", rand), stable.alias("_stable"), length.fill_null(float("inf")).alias("_len"))
        elig = df.filter(pl.col(DROP).is_null() & graded & (pl.col("correct") == True))  # noqa: E712
        if cfg.prefer == "random":
            elig = elig.sort(["problem_id", "_rand", "_stable"])
        else:
            elig = elig.sort(["problem_id", "_len", "_stable"], descending=[False, cfg.prefer == "longest", False])
        over = elig.with_columns(pl.int_range(pl.len()).over("problem_id").alias("_k")).filter(
            pl.col("_k") >= cfg.max_correct_per_problem
        )["_row"]
        df = mark_drop(df, pl.col("_row").is_in(over.implode()), "max_correct_per_problem")
        return df.drop(["_row", "_rand", "_stable", "_len"])


# ---------------------------------------------------------------------- helpers


def _graded_expr(df: pl.DataFrame) -> pl.Expr:
    g = pl.col("correct").is_not_null()
    if "verdict" in df.columns:
        g = g & ~pl.col("verdict").is_in(list(UNGRADED_VERDICTS)).fill_null(False)
    if "finish_reason" in df.columns:  # a failed request says nothing about the problem
        g = g & (pl.col("finish_reason") != "error").fill_null(True)
    return g


def _aggregate(rows: pl.DataFrame) -> pl.DataFrame:
    """Per problem: graded samples (teacher_n) and correct ones (teacher_c)."""
    g = _graded_expr(rows)
    return rows.group_by("problem_id").agg(
        g.cast(pl.Int64).sum().alias("teacher_n"),
        (g & pl.col("correct").fill_null(False)).cast(pl.Int64).sum().alias("teacher_c"),
    )
