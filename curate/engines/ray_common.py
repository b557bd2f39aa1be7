"""What the Ray engine and its per-stage distributed implementations share: the row index column, the
registry of distributed implementations (``distributed``) and the
pyarrow <-> polars batch adapters. Imported by ``ray_engine`` and every ``ray_*`` module, importing
neither (no cycle between the engine and its parts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import polars as pl
import pyarrow as pa

from ..errors import CurateError
from ..stages.base import Context, Stage

if TYPE_CHECKING:
    from .ray_engine import RayEngine

ROW = "_ray_row"
"""Row index carried through every distributed map, so results line up with the input rows."""
ERROR = "_ray_curate_error"

DISTRIBUTED: dict[str, Callable[["RayEngine", Stage, pl.DataFrame, Context], pl.DataFrame]] = {}
"""Stage type -> distributed implementation ``fn(engine, stage, df, ctx) -> df``."""


def distributed(stage_type: str):
    """Register a distributed implementation for a stage type."""

    def deco(fn):
        DISTRIBUTED[stage_type] = fn
        return fn

    return deco


class _ArrowMap:
    """The picklable callable handed to ``map_batches``: pyarrow batch -> ``fn(batch, *args)``."""

    def __init__(self, fn: Callable[..., pa.Table], args: tuple):
        self.fn, self.args = fn, args

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            return self.fn(batch, *self.args)
        except CurateError as e:  # Ray Data drops the cause of a UDF's exception: send it back as data
            return pa.table({ERROR: [type(e).__name__], "message": [str(e)]})


def _polars_batch(batch: pa.Table, fn: Callable, *args: Any) -> pa.Table:
    """Adapter: a polars batch function (the stage-side view) over a pyarrow batch (Ray's view)."""
    df = pl.from_arrow(batch)
    assert isinstance(df, pl.DataFrame)
    out = fn(df, *args)
    if ROW not in out.columns:
        raise CurateError(f"engine ray: the batch function {getattr(fn, '__qualname__', fn)} dropped the row index")
    return out.to_arrow()
