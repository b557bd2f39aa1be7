"""``verify_frame``: judge every sample row of a polars frame (in worker processes); ``VerifyKernel``:
the same as the ``verify`` stage's kernel, for any engine."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

import polars as pl

from ..errors import SourceError
from .config import VerifyConfig
from .equiv import VERDICTS, Options
from .pool import run_tasks

_TEXT_COLS = ("answer_text", "reasoning")


def _col(df: pl.DataFrame, name: str) -> list:
    return df.get_column(name).cast(pl.Utf8).to_list() if name in df.columns else [None] * df.height


def check_columns(df: pl.DataFrame) -> None:
    """The input errors of :func:`verify_frame` (one line, SourceError), before any work."""
    if "gold_answer" not in df.columns:
        raise SourceError(f"verify: the input has no 'gold_answer' column (columns: {', '.join(df.columns)})")
    if not any(c in df.columns for c in _TEXT_COLS):
        raise SourceError("verify: the input has neither an 'answer_text' nor a 'reasoning' column")


def verify_frame(df: pl.DataFrame, cfg: VerifyConfig | None = None, ctx: Any = None) -> pl.DataFrame:
    """Add ``pred_answer`` (Utf8), ``verdict`` (one of VERDICTS) and ``correct`` (bool).

    Reads ``answer_text`` (falling back to the end of ``reasoning``), ``gold_answer``,
    ``finish_reason`` (``length`` -> ``truncated`` when no answer is found) and ``problem``
    (multiple-choice detection, unordered-list permission). Per-row failures are verdicts.
    """
    cfg = cfg or VerifyConfig()
    check_columns(df)
    opts = Options.from_config(cfg)
    n = df.height
    golds, problems = _col(df, "gold_answer"), _col(df, "problem")
    answers, reasonings, finishes = _col(df, "answer_text"), _col(df, "reasoning"), _col(df, "finish_reason")
    pids = _col(df, "problem_id") if "problem_id" in df.columns else golds
    # group a problem's samples together so each worker parses its gold once
    order = sorted(range(n), key=lambda i: (pids[i] is None, pids[i] or "", i))
    tasks = [(i, golds[i], problems[i], answers[i], reasonings[i], finishes[i]) for i in order]
    num_proc = cfg.num_proc if cfg.num_proc is not None else (getattr(ctx, "num_proc", None) or 1)
    if threading.current_thread() is not threading.main_thread() and num_proc == 0:
        num_proc = 1  # the in-process signal timeout needs the main thread
    if ctx is not None and hasattr(ctx, "progress"):
        with ctx.progress(n, "verify") as bar:
            res, pool_stats = run_tasks(tasks, opts, timeout_s=cfg.timeout_s, num_proc=num_proc, progress=bar,
                                          wall_limit_s=cfg.wall_limit_s)
    else:
        res, pool_stats = run_tasks(tasks, opts, timeout_s=cfg.timeout_s, num_proc=num_proc,
                                    wall_limit_s=cfg.wall_limit_s)
    pred: list[Optional[str]] = [None] * n
    verdict: list[str] = ["timeout"] * n
    for (i, *_), (p, v) in zip(tasks, res):
        pred[i], verdict[i] = p, v
    if ctx is not None and hasattr(ctx, "stats"):
        counts = Counter(verdict)
        ctx.stats.setdefault("verdicts", {}).update({v: counts.get(v, 0) for v in VERDICTS})
        ctx.stats["pool"] = pool_stats
    return df.with_columns(
        pl.Series("pred_answer", pred, dtype=pl.Utf8),
        pl.Series("verdict", verdict, dtype=pl.Utf8),
        pl.Series("correct", [v == "correct" for v in verdict], dtype=pl.Boolean),
    )


OUTPUTS = ("pred_answer", "verdict", "correct")


@dataclass(frozen=True)
class VerifyKernel:
    """The ``verify`` stage's kernel (:class:`curate.context.Kernel`): ``pred_answer, verdict, correct``
    per row. On an engine's worker (``__call__``) the batch is judged in that process (``num_proc: 0``:
    per-item CPU-time signal timeouts on the worker's main thread, the same one retry at twice the
    budget); the local engine (``local``) uses the worker pool with the same per-item limits. A row's
    verdict depends on that row only, so both give the same verdicts."""

    cfg: VerifyConfig
    inputs: tuple[str, ...] = ("gold_answer", "problem", "answer_text", "reasoning", "finish_reason", "problem_id")

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        return verify_frame(batch, self.cfg.model_copy(update={"num_proc": 0}), None).select(OUTPUTS)

    def local(self, df: pl.DataFrame, ctx: Any) -> pl.DataFrame:
        return verify_frame(df, self.cfg, ctx).select(OUTPUTS)
