"""Run a :class:`curate.stages.base.Planned` stage the way the runner does on shards: ``summarize`` each
shard (its ``reads`` columns, with ``__order``), one ``plan`` over the summaries, ``apply`` each shard with
the plan, ``merge_applied`` the stats. Returns the rows (every shard's, by ``__rid``), the stats and the
summaries (what the whole-frame step held)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from curate.columns import ROW_ID
from curate.stages.base import ORDER, Context


def run_planned(stage: Any, parts: list[pl.DataFrame], ctx: Callable[[], Context]) -> tuple[pl.DataFrame, dict, list]:
    given = []
    for p in parts:
        cols = stage.reads([c for c in p.columns if c != ROW_ID])
        given.append(p if cols is None else p.select([*cols, ROW_ID]))
    sums = [stage.summarize(g.with_columns(pl.col(ROW_ID).alias(ORDER)), ctx()) for g in given]
    pctx = ctx()
    plan = stage.plan(sums, pctx)
    outs, stats = [], []
    for g in given:
        c = ctx()
        out = stage.apply(g, plan, c)
        assert out[ROW_ID].equals(g[ROW_ID]), "apply keeps the shard's rows in order"
        outs.append(out)
        stats.append(c.stats)
    return pl.concat(outs, how="diagonal_relaxed").sort(ROW_ID), stage.merge_applied(dict(pctx.stats), stats), sums
