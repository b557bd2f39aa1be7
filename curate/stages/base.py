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

Extra numbers and tables a stage wants in the funnel/manifest/card go into ``ctx.stats`` (JSON-able).
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl

from ..context import DROP, Context, Kernel, Progress, StageConfig, mark_drop  # noqa: F401  (re-exported)


class Stage:
    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]]
    version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: StageConfig):
        self.config = config

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self, ctx: Context) -> str | None:
        """Content fingerprint of inputs the stage reads besides its frame (benchmark files, hub
        revisions); it joins the stage's cache key, so an edited reference file recomputes the stage."""
        return None

    def check(self, ctx: Context) -> None:
        """Semantic checks for ``curate validate`` (files exist, ...); raise RecipeError. No work."""
