"""``curriculum``: order the rows for training and return the frame sorted in that order.

Adds ``curriculum_rank`` (0-based position) and ``curriculum_stage`` (1-based training phase). The
publisher writes the train split in frame order, so the split *is* the curriculum; stages after this
one must keep the row order (filters only mark rows).

Orders:
  * ``easy_to_hard`` / ``hard_to_easy``: by ``difficulty`` (ties between problems broken by a seeded
    random key, rows of a problem kept together); stage = the difficulty bucket, in traversal order.
  * ``staged``: S stages from easy to hard (the difficulty buckets, or ``stages`` equal-count groups
    of problems), rows shuffled (seeded) inside a stage.
  * ``interleaved``: the buckets mixed by a ratio (smooth weighted round-robin over per-bucket
    queues, each shuffled with the seed); one stage.
  * ``random``: a seeded shuffle; one stage.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from ... import difficulty as D
from ...errors import RecipeError
from ...columns import ROW_POS
from ..base import Context, Planned, Stage, StageConfig
from .config import ORDERS, CurriculumConfig  # noqa: F401


class CurriculumStage(Planned, Stage):
    name: ClassVar[str] = "curriculum"
    Config: ClassVar[type[StageConfig]] = CurriculumConfig
    version: ClassVar[str] = "2"  # 2: row keys without frame positions (shard contract)
    # (easy_to_hard / hard_to_easy run planned: the same order, in bounded memory)
    requires: ClassVar[tuple[str, ...]] = ("difficulty",)
    produces: ClassVar[tuple[str, ...]] = ("curriculum_rank", "curriculum_stage")

    config: CurriculumConfig

    def reads(self, columns: list[str]) -> list[str] | None:
        """difficulty and its bucket (orders other than random), problem_id and the stable row keys' columns."""
        want = [] if self.config.order == "random" else ["problem_id", "difficulty", "difficulty_bucket"]
        return [c for c in dict.fromkeys([*want, *D.key_columns(columns)]) if c in columns]

    def planned(self) -> bool:
        """easy_to_hard / hard_to_easy keep each problem's rows together, so the runner runs them planned:
        per shard one row per problem goes to ``plan``, which orders the problems and gives each its first
        position; ``apply`` places each shard's rows (by their stable keys) after it. Other orders shuffle
        rows across problems: ``run`` on the narrow rows."""
        return self.config.order in ("easy_to_hard", "hard_to_easy")

    def _prepare(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg = self.config
        label = ctx.stage_label or self.name
        df = df.drop([c for c in ("curriculum_rank", "curriculum_stage") if c in df.columns])
        need = [] if cfg.order == "random" else ["difficulty"]
        if cfg.order == "interleaved" or (cfg.order == "staged" and cfg.stages is None):
            need.append("difficulty_bucket")
        if cfg.order != "random" and "problem_id" not in df.columns:
            need.append("problem_id")
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise RecipeError(
                f"stage '{label}': order: {cfg.order} needs column(s) {', '.join(missing)}; add a difficulty stage before it"
            )
        return df

    def _stats(self, sizes: pl.DataFrame, seed: int) -> dict:
        cfg = self.config
        return {"order": cfg.order, "seed": seed, "stage_sizes": {str(s): int(n) for s, n in sizes.iter_rows()},
                "description": describe(cfg, seed)}

    def summarize(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """This shard's problems: id, difficulty, bucket and row count."""
        df = self._prepare(df, ctx)
        bucket = [pl.col("difficulty_bucket").first()] if "difficulty_bucket" in df.columns else []
        return df.group_by("problem_id").agg(pl.col("difficulty").first(), *bucket, pl.len().alias("_n"))

    def plan(self, parts: list[pl.DataFrame], ctx: Context) -> pl.DataFrame:
        """The problems in curriculum order: each one's first position and its stage."""
        cfg = self.config
        seed = ctx.seed if cfg.seed is None else cfg.seed
        probs = pl.concat(parts, how="vertical_relaxed")
        text = probs["problem_id"].cast(pl.Utf8).fill_null("None")
        probs = probs.with_columns(pl.Series("_prob_rand", D.random_keys(text, seed, "curriculum:problem"), dtype=pl.Int64))
        probs = probs.sort(["difficulty", "_prob_rand", "problem_id"], descending=[cfg.order == "hard_to_easy", False, False],
                           nulls_last=True)
        probs = probs.with_columns((pl.col("_n").cum_sum() - pl.col("_n")).cast(pl.Int64).alias("_offset"))
        if "difficulty_bucket" in probs.columns:  # stage = the bucket's place in traversal order (null: one too)
            first = (probs.select("difficulty_bucket").with_row_index("_i").group_by("difficulty_bucket")
                     .agg(pl.col("_i").min()).sort("_i")
                     .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("curriculum_stage")))
            probs = probs.join(first.drop("_i"), on="difficulty_bucket", how="left", maintain_order="left", nulls_equal=True)
        else:
            probs = probs.with_columns(pl.lit(1, pl.Int32).alias("curriculum_stage"))
        sizes = probs.group_by("curriculum_stage").agg(pl.col("_n").sum()).sort("curriculum_stage")
        ctx.stats.update(self._stats(sizes, seed))
        return probs.select("problem_id", "_offset", "curriculum_stage")

    def apply(self, df: pl.DataFrame, plan: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """Each row's stage and position: its problem's first position + its place among the problem's
        rows by stable row key."""
        df = self._prepare(df, ctx)
        plan = plan.with_columns(pl.col("problem_id").cast(df.schema["problem_id"]))
        t = df.select("problem_id").with_columns(D.stable_row_key_series(df).alias("_row_key"),
                                                 pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"))
        t = t.join(plan, on="problem_id", how="left", maintain_order="left", nulls_equal=True)
        t = t.sort(["problem_id", "_row_key"], nulls_last=True).with_columns(
            (pl.col("_offset") + pl.int_range(pl.len(), dtype=pl.Int64).over("problem_id")).alias("_pos")).sort("_i")
        return df.with_columns(t["curriculum_stage"], t["_pos"].alias("curriculum_rank"), t["_pos"].alias(ROW_POS))

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        if self.planned():
            return Planned.run(self, df, ctx).sort(ROW_POS).drop(ROW_POS)
        cfg = self.config
        label = ctx.stage_label or self.name
        seed = ctx.seed if cfg.seed is None else cfg.seed
        df = self._prepare(df, ctx)

        keys = D.stable_row_key_series(df)
        tmp = df.with_columns(
            pl.Series("_row_rand", D.random_keys(keys, seed, "curriculum:row")),
            keys.alias("_row_key"),
        )
        if "problem_id" in tmp.columns:  # a seeded key per problem (computed once per problem, joined back)
            probs = tmp.select(pl.col("problem_id").unique())
            text = probs["problem_id"].cast(pl.Utf8).fill_null("None")
            probs = probs.with_columns(pl.Series("_prob_rand", D.random_keys(text, seed, "curriculum:problem"), dtype=pl.Int64))
            tmp = tmp.join(probs, on="problem_id", how="left", maintain_order="left", nulls_equal=True)

        if cfg.order in ("easy_to_hard", "hard_to_easy"):
            out = self._sorted(tmp, descending=cfg.order == "hard_to_easy")
        elif cfg.order == "staged":
            out = self._staged(tmp)
        elif cfg.order == "interleaved":
            out = self._interleaved(tmp, label)
        else:
            out = tmp.sort("_row_rand").with_columns(pl.lit(1, pl.Int32).alias("curriculum_stage"))

        out = out.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("curriculum_rank"))
        out = out.drop([c for c in ("_row_rand", "_row_key", "_prob_rand", "_stage_ord") if c in out.columns])
        ctx.stats.update(self._stats(out.group_by("curriculum_stage").len().sort("curriculum_stage"), seed))
        return out

    # ------------------------------------------------------------------ orders
    @staticmethod
    def _bucket_order(df: pl.DataFrame) -> list[str]:
        """Bucket labels from easiest to hardest (by their lowest, then mean, difficulty)."""
        b = (
            df.filter(pl.col("difficulty_bucket").is_not_null())
            .group_by("difficulty_bucket")
            .agg(pl.col("difficulty").min().alias("lo"), pl.col("difficulty").mean().alias("mu"))
            .sort(["lo", "mu", "difficulty_bucket"], nulls_last=True)
        )
        return b["difficulty_bucket"].to_list()

    def _sorted(self, df: pl.DataFrame, descending: bool) -> pl.DataFrame:
        out = df.sort(
            ["difficulty", "_prob_rand", "problem_id", "_row_key"],
            descending=[descending, False, False, False],
            nulls_last=True,
        )
        if "difficulty_bucket" in out.columns:
            # stage = position of the row's bucket in traversal order (a null bucket counts as one)
            first = (out.select("difficulty_bucket").with_row_index("_i").group_by("difficulty_bucket")
                     .agg(pl.col("_i").min()).sort("_i")
                     .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("curriculum_stage")))
            return out.join(first.drop("_i"), on="difficulty_bucket", how="left", maintain_order="left", nulls_equal=True)
        return out.with_columns(pl.lit(1, pl.Int32).alias("curriculum_stage"))

    def _staged(self, df: pl.DataFrame) -> pl.DataFrame:
        cfg = self.config
        if cfg.stages is None:
            order = self._bucket_order(df)
            rank = {b: i + 1 for i, b in enumerate(order)}
            stage = pl.col("difficulty_bucket").replace_strict(rank, default=len(order) + 1, return_dtype=pl.Int32)
            df = df.with_columns(stage.alias("curriculum_stage"))
        else:
            probs = df.select("problem_id", "difficulty", "_prob_rand").unique("problem_id").sort(
                ["difficulty", "_prob_rand", "problem_id"], nulls_last=True
            )
            n = probs.height
            # equal-count contiguous groups of problems by difficulty (ties split by the seeded key)
            st = [min(cfg.stages, (i * cfg.stages) // max(n, 1) + 1) for i in range(n)]
            probs = probs.with_columns(pl.Series("curriculum_stage", st, dtype=pl.Int32)).select(
                "problem_id", "curriculum_stage"
            )
            df = df.join(probs, on="problem_id", how="left", maintain_order="left")
        return df.sort(["curriculum_stage", "_row_rand", "_row_key"])

    def _interleaved(self, df: pl.DataFrame, label: str) -> pl.DataFrame:
        cfg = self.config
        order = self._bucket_order(df)
        if isinstance(cfg.ratio, dict):
            # a weight for a bucket the data does not have is fine (that bucket is empty)
            lacking = [b for b in order if b not in cfg.ratio]
            if lacking:
                raise RecipeError(
                    f"stage '{label}': ratio: has no weight for bucket(s) {', '.join(lacking)} "
                    f"(buckets: {', '.join(order)})"
                )
            weights = [float(cfg.ratio[b]) for b in order]
        elif isinstance(cfg.ratio, list):
            if len(cfg.ratio) != len(order):
                raise RecipeError(
                    f"stage '{label}': ratio: lists {len(cfg.ratio)} weights for {len(order)} buckets "
                    f"({', '.join(order)})"
                )
            weights = [float(w) for w in cfg.ratio]
        else:
            weights = [1.0] * len(order)
        df = df.with_row_index("_i")
        queues = []
        for b in order:
            q = df.filter(pl.col("difficulty_bucket") == b).sort(["_row_rand", "_row_key"])["_i"].to_list()
            queues.append(q)
        rest = df.filter(pl.col("difficulty_bucket").is_null()).sort(["_row_rand", "_row_key"])["_i"].to_list()
        seq = D.weighted_interleave(queues, weights) + rest
        idx = np.array(seq, dtype=np.int64)
        out = df[idx] if len(idx) else df.clear()
        return out.drop("_i").with_columns(pl.lit(1, pl.Int32).alias("curriculum_stage"))


def describe(cfg: CurriculumConfig, seed: int) -> str:
    """One sentence for the dataset card: how the train split is ordered."""
    if cfg.order == "easy_to_hard":
        return "Rows are ordered from easiest to hardest problem (difficulty ascending); curriculum_stage is the difficulty bucket."
    if cfg.order == "hard_to_easy":
        return "Rows are ordered from hardest to easiest problem (difficulty descending); curriculum_stage counts buckets in that order."
    if cfg.order == "staged":
        how = f"{cfg.stages} equal-count difficulty groups" if cfg.stages else "the difficulty buckets"
        return f"Rows come in stages from easy to hard ({how}), shuffled inside each stage with seed {seed}."
    if cfg.order == "interleaved":
        ratio = cfg.ratio if cfg.ratio is not None else "equal weights"
        return f"Rows interleave the difficulty buckets in the ratio {ratio} (each bucket shuffled with seed {seed})."
    return f"Rows are shuffled with seed {seed}."
