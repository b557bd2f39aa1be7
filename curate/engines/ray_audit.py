"""``audit`` on Ray: the per-row measures (:func:`curate.audit.flags.measure`: lengths, repetition and
compression scans, token counts, script mix) run over Ray Data ``map_batches``; what needs the whole
frame (the length reference for ``length_outlier``, the flags, the counts) stays the audit's own
code on the driver."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from ..audit.config import AuditConfig
from ..audit.flags import audit_frame, measure
from ..stages.base import Context, Stage

if TYPE_CHECKING:
    from .ray_engine import RayEngine
from .ray_common import ROW, distributed, rebind

INPUTS = ("reasoning", "answer_text", "problem")


def _measure_batch(batch: pa.Table, cfg: AuditConfig | None) -> pa.Table:
    df = pl.from_arrow(batch)
    assert isinstance(df, pl.DataFrame)
    out = measure(df, cfg)
    return out.select(ROW, *[c for c in out.columns if c not in df.columns]).to_arrow()


def ray_measure(df: pl.DataFrame, cfg: AuditConfig | None = None, *, engine: RayEngine) -> pl.DataFrame:
    """Same contract and result as :func:`curate.audit.flags.measure`, computed on the Ray cluster."""
    cols = [c for c in INPUTS if c in df.columns]
    res = pl.from_arrow(engine.map_arrow(df.select(cols).to_arrow(), _measure_batch, cfg))
    assert isinstance(res, pl.DataFrame)
    return pl.concat([df, res.drop(ROW)], how="horizontal")


@distributed("audit")
def run_audit(engine: RayEngine, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    frame = rebind(audit_frame, measure=partial(ray_measure, engine=engine))
    return rebind(type(stage).run, audit_frame=frame)(stage, df, ctx)
