"""The stage contract, on one screen.

A stage is a class with:
  * ``name``      the YAML ``type:``
  * ``Config``    a pydantic model (extra="forbid") with ``type: Literal[name]``, next to the code
  * ``version``   bump it to invalidate cached outputs when behaviour changes
  * ``requires`` / ``produces``  column names (checked by the runner / documented in the card)
  * ``run(df, ctx) -> df``  over a polars DataFrame

Dropping rows: a stage never deletes a row. It returns the frame with a ``drop_reason`` column
(Utf8; null = keep). The runner moves rows with a reason to the ``rejected`` split, adding
``dropped_by`` (the stage label), and counts them by reason in the funnel. ``mark_drop`` helps.

Per-row failures are data (status/reason columns). Only recipe, config, input and backend faults
raise, as ``curate.errors.CurateError`` subclasses.

Row-wise work goes into a *kernel* (``curate.context.Kernel``: a picklable callable over a batch that
returns new columns, its setup in its fields) run with ``ctx.map(kernel, df)``; whatever needs the whole
frame (aggregates, clustering, drop marking, stats) is the stage's own code around that call. The engine
decides where kernels run (local: this process, with the kernel's own ``local`` pool if it has one; ray:
Ray Data ``map_batches``), so ``run`` is the one definition of the stage for every engine.

Scale (how the runner may run it): rows live in parquet shards, each holding whole problems, and every
row carries the hidden ``__rid`` column (``columns.ROW_ID``; keep it). ``scope = "problem"``: ``run`` on
any set of whole problems gives exactly those rows of ``run`` on the whole frame, so the runner runs it
shard by shard and combines the per-shard ``ctx.stats`` with ``merge_stats``. ``scope = "global"`` (the
default): ``run`` sees every live row at once, but only the columns ``reads`` names (None: all); what it
returns is joined back onto the full rows by ``__rid``; an optional ``map_shard`` is a per-shard first
phase (row-wise columns such as audit's measures) whose columns ``run`` may then read.

A global stage whose whole-frame part is small (per-problem aggregates, a length reference) can instead be
*planned* (:class:`Planned`), so no step holds a column of every row: ``summarize`` runs per shard on
the ``reads`` columns and returns something small (a frame of one row per problem); ``plan`` runs once on
the list of those (one per shard) and decides (sets the stage's global ``ctx.stats``); ``apply`` runs per
shard with that plan and returns the shard's rows, like ``run``; ``merge_applied`` adds the shards' stats.
``run`` on a whole frame is the same three steps, so both give the same rows.

Extra numbers and tables a stage wants in the funnel/manifest/card go into ``ctx.stats`` (JSON-able).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import polars as pl

from ..context import DROP, Context, Kernel, Progress, StageConfig, mark_drop  # noqa: F401  (re-exported)


class Stage:
    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]]
    version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()
    scope: ClassVar[Literal["global", "problem"]] = "global"
    """problem: run() may be called shard by shard (sets of whole problems); global: on every row at once."""

    def __init__(self, config: StageConfig):
        self.config = config

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self, ctx: Context) -> str | None:
        """Content fingerprint of inputs the stage reads besides its frame (benchmark files, hub
        revisions); it joins the stage's cache key, so an edited reference file recomputes the stage."""
        return None

    def reads(self, columns: list[str]) -> list[str] | None:
        """A global stage's input columns, given the available ones (None: all). The runner passes ``run``
        only these (plus ``__rid``) and joins the columns ``run`` returns back onto the full rows."""
        return None

    def merge_stats(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """A problem-scope stage's ``ctx.stats`` over the whole frame from its stats over disjoint sets of
        whole problems (in order). Hidden helper keys a part carries (``_merge``) are consumed here."""
        if len(parts) == 1:
            return {k: v for k, v in parts[0].items() if k != "_merge"}
        raise NotImplementedError(f"stage {self.name}: scope 'problem' needs merge_stats for several shards")

    def check(self, ctx: Context) -> None:
        """Semantic checks for ``curate validate`` (files exist, ...); raise RecipeError. No work."""


ORDER = "__order"
"""Given to ``summarize`` by the runner: each row's position in the dataset's order (``__pos`` or ``__rid``),
so ``plan`` can restore that order across shards (a frame without it: the row's index)."""


class Planned:
    """Mixin: a global stage in three steps, so the whole-frame step sees aggregates, not rows (issue 18).

    ``summarize(df, ctx)`` per shard (the ``reads`` columns of whole problems, with :data:`ORDER`) ->
    something small and picklable; ``plan(parts, ctx)`` once, on the list of those -> the plan (picklable),
    setting the stage's global ``ctx.stats``; ``apply(df, plan, ctx)`` per shard -> that shard's rows (the
    same rows, same order; new columns and drop marks) and per-shard ``ctx.stats``;
    ``merge_applied(plan_stats, parts)`` -> the stage's stats. ``run`` is the three steps on one frame."""

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        given = df if ORDER in df.columns else df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER))
        plan = self.plan([self.summarize(given, ctx)], ctx)  # type: ignore[attr-defined]
        applied = dataclasses.replace(ctx, stats={})
        out = self.apply(df, plan, applied)  # type: ignore[attr-defined]
        stats = self.merge_applied(dict(ctx.stats), [applied.stats])
        ctx.stats.clear()
        ctx.stats.update(stats)
        ctx.cacheable = ctx.cacheable and applied.cacheable
        return out

    def planned(self) -> bool:
        """Whether the runner runs this configuration planned (else ``run`` on the ``reads`` columns of every row)."""
        return True

    def merge_applied(self, plan_stats: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
        """The stats of ``plan`` with the shards' ``apply`` stats (default: ``plan``'s alone)."""
        return plan_stats
