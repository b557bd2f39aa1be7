"""``select``: budgeted selection (s1 / LIMO style): N problems (or rows) favouring difficulty, spread
across a category column, deterministic for a seed.

Inside each category, problems get a seeded random order in which harder problems come earlier:
a Gumbel-top-k draw, i.e. sampling without replacement with probability proportional to
``exp(strength * difficulty)`` (strength 0: uniform; large: hardest first). Categories then share
the budget: ``balanced`` takes one problem per category in turn (small categories give their unused
share to the others), ``proportional`` gives each category a quota proportional to its size. Rows
are only marked (``drop_reason: not_selected``); the frame order is kept.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from ... import difficulty as D
from ...errors import RecipeError
from ..base import DROP, Context, Stage, StageConfig, mark_drop
from .config import SelectConfig  # noqa: F401

UNKNOWN = "unknown"


class SelectStage(Stage):
    name: ClassVar[str] = "select"
    Config: ClassVar[type[StageConfig]] = SelectConfig
    version: ClassVar[str] = "2"  # 2: row keys without frame positions (shard contract)
    requires: ClassVar[tuple[str, ...]] = ("problem_id",)
    produces: ClassVar[tuple[str, ...]] = ()

    config: SelectConfig

    def reads(self, columns: list[str]) -> list[str] | None:
        """problem_id, ``by``, the category column (or ``meta`` for a meta key), drop marks and the row keys."""
        cfg = self.config
        want = ["problem_id", cfg.by, DROP]
        if cfg.category is not None:
            want.append(cfg.category if cfg.category in columns else "meta")
        return [c for c in dict.fromkeys([*want, *D.key_columns(columns)]) if c in columns]

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg = self.config
        label = ctx.stage_label or self.name
        seed = ctx.seed if cfg.seed is None else cfg.seed
        self._check_columns(df, label)
        probs, pids, key = self._problems(df, label, seed)

        queues: dict[str, list[int]] = {}
        for i, c in enumerate(probs["_cat"].to_list()):
            queues.setdefault(c, []).append(i)
        cats = sorted(queues)
        for c in cats:
            queues[c].sort(key=lambda i: (-key[i], pids[i]))
        rows_per = probs["_rows"].to_list()
        chosen = self._allocate(queues, cats, rows_per, cfg.n, seed)
        take_rows, used = self._take_rows(chosen, pids, rows_per)
        out = _mark_unselected(df, take_rows)
        ctx.stats.update(self._stats(probs, take_rows, used))
        return out

    def _check_columns(self, df: pl.DataFrame, label: str) -> None:
        cfg = self.config
        if "problem_id" not in df.columns:
            raise RecipeError(f"stage '{label}': the input has no 'problem_id' column")
        if cfg.by not in df.columns:
            raise RecipeError(f"stage '{label}': by: column '{cfg.by}' is not in the frame (add a difficulty stage before select)")
        if not df.schema[cfg.by].is_numeric():
            raise RecipeError(f"stage '{label}': by: column '{cfg.by}' is {df.schema[cfg.by]}, not numeric")

    def _problems(self, df: pl.DataFrame, label: str, seed: int) -> tuple[pl.DataFrame, list[str], np.ndarray]:
        """One row per live problem (score, category, row count, Gumbel-top-k key), its ids and keys."""
        cfg = self.config
        live = df.filter(pl.col(DROP).is_null()) if DROP in df.columns else df
        src = _category_source(df, cfg.category, label)
        first = pl.col(src).first() if src is not None else pl.lit(None, dtype=pl.Utf8)
        probs = (
            live.group_by("problem_id", maintain_order=True)
            .agg(pl.col(cfg.by).cast(pl.Float64).max().alias("_score"), first.alias("_cat"), pl.len().alias("_rows"))
        )
        # one row per problem now: the category (a Categorical column, a key of meta) as plain text
        probs = probs.with_columns(_category_expr(cfg.category, src))
        pids = [str(p) for p in probs["problem_id"].to_list()]
        # Gumbel-top-k keys: seeded per problem content, independent of the input order
        rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, 0x5E1EC7))
        gumbel_sorted = rng.gumbel(size=len(pids))
        order = sorted(range(len(pids)), key=lambda i: pids[i])
        gumbel = np.empty(len(pids))
        gumbel[np.array(order, dtype=np.int64)] = gumbel_sorted
        scores = probs["_score"].to_numpy().astype(float) if probs.height else np.array([])
        scores = np.where(np.isnan(scores), -np.inf, scores) if scores.size else scores
        with np.errstate(invalid="ignore"):
            key = cfg.strength * scores + gumbel if cfg.strength > 0 else gumbel
        key = np.where(np.isnan(key), -np.inf, key)
        probs = probs.with_columns(pl.Series("_key", key), pl.Series("_pid", pids))
        return probs, pids, key

    def _take_rows(self, chosen: list[int], pids: list[str], rows_per: list[int]) -> tuple[dict[str, int], int]:
        """Rows to keep per chosen problem (all kept rows; with unit rows the last problem may be cut), and their total."""
        cfg = self.config
        take_rows: dict[str, int] = {}
        used = 0
        for i in chosen:
            if cfg.unit == "rows":
                k = min(rows_per[i], cfg.n - used)
            else:
                k = rows_per[i]
            if k <= 0:
                break
            take_rows[pids[i]] = k
            used += k
        return take_rows, used

    def _stats(self, probs: pl.DataFrame, take_rows: dict[str, int], used: int) -> dict:
        cfg = self.config
        sel = probs.filter(pl.col("_pid").is_in(list(take_rows)))
        avail = probs.group_by("_cat").len()
        got = sel.group_by("_cat").len()
        per_cat = {
            c: {"available": int(a), "selected": int(dict(got.iter_rows()).get(c, 0))} for c, a in avail.sort("_cat").iter_rows()
        }
        return {
            "budget": cfg.n,
            "unit": cfg.unit,
            "selected_problems": len(take_rows),
            "selected_rows": used,
            "categories": per_cat,
            "mean_selected_" + cfg.by: (round(float(sel["_score"].mean()), 4) if sel.height else None),
            "mean_available_" + cfg.by: (round(float(probs["_score"].mean()), 4) if probs.height else None),
        }

    def _allocate(self, queues: dict[str, list[int]], cats: list[str], rows_per: list[int], budget: int, seed: int) -> list[int]:
        """The chosen problem indices, in selection order."""
        cfg = self.config
        spent = 0
        chosen: list[int] = []

        def cost(i: int) -> int:
            return rows_per[i] if cfg.unit == "rows" else 1

        if cfg.spread == "balanced":
            # seeded category order for the rounds, so no category is always served first
            perm = D.random_keys(cats, seed, "select:categories")
            turn = [c for _, c in sorted(zip(perm.tolist(), cats))]
            pos = {c: 0 for c in cats}
            while spent < budget:
                progressed = False
                for c in turn:
                    if spent >= budget:
                        break
                    if pos[c] < len(queues[c]):
                        i = queues[c][pos[c]]
                        pos[c] += 1
                        chosen.append(i)
                        spent += cost(i)
                        progressed = True
                if not progressed:
                    break
            return chosen
        # proportional: largest-remainder quotas by category size (in problems), unused quota passed on
        sizes = {c: len(queues[c]) for c in cats}
        total = sum(sizes.values())
        if total == 0:
            return []
        n_probs = budget if cfg.unit == "problems" else total
        target = min(n_probs, total)
        raw = {c: target * sizes[c] / total for c in cats}
        quota = {c: int(raw[c]) for c in cats}
        rem = target - sum(quota.values())
        for c in sorted(cats, key=lambda c: (-(raw[c] - quota[c]), c))[:rem]:
            quota[c] += 1
        if cfg.unit == "problems":
            for c in cats:
                chosen.extend(queues[c][: quota[c]])
            # interleave by each problem's position inside its category so rows mode can cut fairly
            return chosen
        # rows: walk categories in proportion to their size until the row budget is spent
        ordered = D.weighted_interleave([queues[c] for c in cats], [sizes[c] for c in cats])
        for i in ordered:
            if spent >= budget:
                break
            chosen.append(i)
            spent += cost(i)
        return chosen


def _category_source(df: pl.DataFrame, category: str | None, label: str) -> str | None:
    """The column the category is read from (the category column itself, or ``meta``); None: no category."""
    if category is None:
        return None
    if category in df.columns:
        return category
    if "meta" in df.columns and df.schema["meta"] in (pl.Utf8, pl.Categorical):
        return "meta"
    raise RecipeError(f"stage '{label}': category: '{category}' is neither a column nor a key of 'meta'")


def _category_expr(category: str | None, src: str | None) -> pl.Expr:
    """The category of a problem row whose ``_cat`` holds the value of ``src`` (see _category_source)."""
    if src is None:
        return pl.lit(UNKNOWN).alias("_cat")
    text = pl.col("_cat").cast(pl.Utf8)
    if src == "meta" and category != "meta":
        key = str(category).replace('"', "")
        text = text.str.json_path_match(f"$.{key}")
    return text.fill_null(UNKNOWN).alias("_cat")


def _mark_unselected(df: pl.DataFrame, take_rows: dict[str, int]) -> pl.DataFrame:
    """Mark ``not_selected`` every live row beyond its problem's allowance (rows in stable key order)."""
    tmp = df.with_columns(D.stable_row_key_series(df).alias("_rk"), pl.int_range(pl.len()).alias("_ix"))
    live_mask = pl.col(DROP).is_null() if DROP in df.columns else pl.lit(True)
    ranked = (
        tmp.filter(live_mask)
        .with_columns(pl.col("problem_id").cast(pl.Utf8).alias("_p"))
        .sort(["_p", "_rk"])
        .with_columns(pl.int_range(pl.len()).over("_p").alias("_k"))
    )
    limits = pl.DataFrame({"_p": list(take_rows), "_lim": list(take_rows.values())}, schema={"_p": pl.Utf8, "_lim": pl.Int64})
    keep_ix = ranked.join(limits, on="_p", how="inner").filter(pl.col("_k") < pl.col("_lim"))["_ix"]
    return mark_drop(tmp, live_mask & ~pl.col("_ix").is_in(keep_ix.implode()), "not_selected").drop(["_rk", "_ix"])
