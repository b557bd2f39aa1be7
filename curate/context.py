"""What a stage receives besides its input frame: the base of every stage config (``StageConfig``), the
run context (``Context``: work folder, seed, stats, progress), the drop marker (``mark_drop``) and the
executor seam (``Kernel``, ``Context.map``): the one place where an engine decides where row-wise work runs.

A leaf module (polars, pydantic and the column contract only), so that domain packages (verify, audit,
sampling) can use it without importing the stages that use them. ``curate.stages.base`` re-exports it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

import polars as pl
from pydantic import BaseModel, ConfigDict

from .columns import DROP_REASON as DROP
from .errors import CurateError


class StageConfig(BaseModel):
    """Base of every stage config. Subclasses declare ``type: Literal["<name>"] = "<name>"``."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    """Optional display name (defaults to the type, suffixed when a type repeats)."""


class Progress:
    """A tiny handle around a rich progress task, or around plain periodic log lines
    (:class:`curate.progress.Ticker`) when the output is not a terminal."""

    def __init__(self, bar: Any = None, task: Any = None, ticker: Any = None):
        self._bar, self._task, self._ticker = bar, task, ticker

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)
        if self._ticker is not None:
            self._ticker.advance(n)

    def update(self, **kw: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, **kw)
        if self._ticker is not None:
            self._ticker.update(**kw)


@runtime_checkable
class Kernel(Protocol):
    """A stage's row-wise work: a picklable callable ``batch -> frame`` of new columns, one row per input
    row, in order; pure (the same batch gives the same rows, wherever and in whatever batching it runs),
    with its setup (config, benchmark index, MinHash parameters) carried in its fields. ``inputs``: the
    columns it reads (only these travel to the workers). Optional ``local(df, ctx) -> frame``: how the
    local engine runs it over the whole frame (verify: its worker pool with per-item CPU-time limits);
    it must give the rows that ``__call__`` gives. Run it with :meth:`Context.map`."""

    inputs: tuple[str, ...]

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame: ...


class Executor(Protocol):
    """Where kernels run: an engine sets ``Context.executor`` (None: in this process). An executor may
    also offer ``find_duplicates`` (same contract as :func:`curate.dedup.find_duplicates`), which the
    dedup stage then uses for its global MinHash/LSH step."""

    def map_kernel(self, kernel: Kernel, df: pl.DataFrame, ctx: "Context") -> pl.DataFrame: ...


@dataclass
class Context:
    """What a stage may use besides its input frame and its config."""

    work_dir: Path
    """Persistent state for this recipe (``.curate/<recipe name>/``): durable request logs etc."""
    base_dir: Path = field(default_factory=Path.cwd)
    """The recipe's directory: relative paths in stage configs resolve against it."""
    seed: int = 0
    num_proc: int = field(default_factory=lambda: os.cpu_count() or 1)
    limit: int | None = None
    stage_label: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    """Stage-specific numbers/tables (JSON-able): shown in the funnel, stored in the manifest."""
    show_progress: bool = field(default_factory=lambda: sys.stderr.isatty())
    resume: bool = True
    """False under ``curate run --no-resume``: stages with their own logs (sampling) start afresh."""
    cacheable: bool = True
    """A stage sets this False when its output should not be reused as is (e.g. failed teacher
    requests that a re-run should retry); the runner then does not cache it."""
    executor: Any = field(default=None, repr=False, compare=False)
    """The engine's :class:`Executor` for :meth:`map` (None: this process); never pickled."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "executor": None}

    def map(self, kernel: Kernel, df: pl.DataFrame) -> pl.DataFrame:
        """The executor seam: ``kernel`` over every row of ``df``; returns the kernel's columns (one row
        per row of ``df``, in order). Locally in this process (``kernel.local`` when it has one, else in
        batches of ``kernel.batch_rows`` rows when set); on the ``ray`` engine in Ray Data ``map_batches``."""
        cols = [c for c in kernel.inputs if c in df.columns]
        if not cols:
            raise CurateError(f"{type(kernel).__name__}: none of its input columns {kernel.inputs} is in the frame")
        inputs = df.select(cols)
        if self.executor is not None:
            out = self.executor.map_kernel(kernel, inputs, self)
        elif callable(getattr(kernel, "local", None)):
            out = kernel.local(inputs, self)  # type: ignore[attr-defined]
        else:
            out = _map_local(kernel, inputs, self)
        if out.height != df.height:
            raise CurateError(f"{type(kernel).__name__} returned {out.height} rows for {df.height}")
        return out

    def resolve(self, path: str | os.PathLike) -> Path:
        p = Path(os.path.expanduser(str(path)))
        return p if p.is_absolute() else (self.base_dir / p)

    def stage_dir(self) -> Path:
        """A persistent folder for the current stage (created on demand)."""
        d = self.work_dir / "stages" / (self.stage_label or "stage")
        d.mkdir(parents=True, exist_ok=True)
        return d

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Progress]:
        """A progress bar with rows/s and ETA (rich) on a terminal, else plain periodic log lines."""
        if not self.show_progress:
            from .progress import Ticker

            ticker = Ticker(total, description)
            yield Progress(ticker=ticker)
            ticker.close()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress as RichProgress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from .progress import RateColumn

        with RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,  # the stage's end line (rows, drops, seconds) stays instead
        ) as bar:
            task = bar.add_task(description, total=total)
            yield Progress(bar, task)

    @classmethod
    def for_test(cls, tmp_path: Path, **kw: Any) -> "Context":
        return cls(work_dir=Path(tmp_path) / ".curate", base_dir=Path(tmp_path), show_progress=False, **kw)


def _map_local(kernel: Kernel, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    size = getattr(kernel, "batch_rows", None)
    if not size or df.height <= size:
        return kernel(df)
    parts = []
    with ctx.progress(df.height, f"{ctx.stage_label or type(kernel).__name__}") as bar:
        for start in range(0, df.height, size):
            parts.append(kernel(df.slice(start, size)))
            bar.advance(min(size, df.height - start))
    return pl.concat(parts, how="vertical_relaxed")


def mark_drop(df: pl.DataFrame, mask: pl.Expr, reason: str | pl.Expr) -> pl.DataFrame:
    """Set ``drop_reason`` where ``mask`` is true (keeping an earlier reason if already set)."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    new = pl.when(mask).then(reason_expr).otherwise(pl.lit(None, dtype=pl.Utf8))
    if DROP in df.columns:
        return df.with_columns(pl.coalesce(pl.col(DROP), new).alias(DROP))
    return df.with_columns(new.cast(pl.Utf8).alias(DROP))
