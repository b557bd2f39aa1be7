"""``verify`` on Ray: :func:`curate.verify.verify_frame` over Ray Data ``map_batches``.

Only the columns verification reads travel to the workers; each Ray task judges its batch in its own
process (``num_proc: 0``: one Ray task = one CPU, per-item CPU-time signal timeouts on the worker's main
thread and the same one retry at twice the budget, so verdicts match the local engine at any load).
The per-problem aggregates, stats and drop marking stay the ``verify`` stage's own code, on the driver.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from ..stages.base import Context, Stage
from ..verify import VERDICTS, VerifyConfig, verify_frame

if TYPE_CHECKING:
    from .ray_engine import RayEngine
from .ray_common import ROW, distributed, rebind

INPUTS = ("gold_answer", "problem", "answer_text", "reasoning", "finish_reason", "problem_id")
OUTPUTS = ("pred_answer", "verdict", "correct")


def _verify_batch(batch: pa.Table, cfg: VerifyConfig) -> pa.Table:
    df = pl.from_arrow(batch)
    assert isinstance(df, pl.DataFrame)
    out = verify_frame(df, cfg, None)
    return out.select(ROW, *OUTPUTS).to_arrow()


def ray_verify_frame(df: pl.DataFrame, cfg: VerifyConfig | None = None, ctx: Any = None, *, engine: RayEngine) -> pl.DataFrame:
    """Same contract and result as :func:`curate.verify.verify_frame`, judged on the Ray cluster."""
    cfg = cfg or VerifyConfig()
    verify_frame(df.head(0), cfg, None)  # the same input errors as the local path, before any work
    cols = [c for c in INPUTS if c in df.columns]
    worker_cfg = cfg.model_copy(update={"num_proc": 0})
    res = pl.from_arrow(engine.map_arrow(df.select(cols).to_arrow(), _verify_batch, worker_cfg))
    assert isinstance(res, pl.DataFrame)
    verdicts = res.get_column("verdict").to_list()
    if ctx is not None and hasattr(ctx, "stats"):
        counts = Counter(verdicts)
        ctx.stats.setdefault("verdicts", {}).update({v: counts.get(v, 0) for v in VERDICTS})
        ctx.stats["pool"] = {"engine": "ray", "batches": -(-df.height // engine.batch_size)}
    return df.with_columns(res.get_column(c) for c in OUTPUTS)


@distributed("verify")
def run_verify(engine: RayEngine, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    run = rebind(type(stage).run, verify_frame=partial(ray_verify_frame, engine=engine))
    return run(stage, df, ctx)
