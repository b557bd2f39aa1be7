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

Extra numbers and tables a stage wants in the funnel/manifest/card go into ``ctx.stats`` (JSON-able).
"""

from __future__ import annotations

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
